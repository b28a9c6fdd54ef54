//! GPU faults become errors, never panics or hangs: a device lost mid-generation (destroyed
//! from the token callback) ends the generation with `DeviceLost` and a new engine works
//! afterwards; a session too large for the device fails up front with the memory plan; a
//! pipeline that does not compile names its kernel and variant.

mod common;
mod gpu_common;

use std::sync::Arc;

use lfm::ModelFile;
use lfm::gpu::shader::Defines;
use lfm::gpu::{DeviceNeeds, Gpu, GpuOptions, KernelSpec};
use lfm::model::GpuModel;
use lfm::ops::attention::KvType;
use lfm::session::{Session, SessionOptions};

fn tiny() -> ModelFile {
    ModelFile::open(&common::fixtures_root().join("tiny-a-f16.gguf"))
        .unwrap_or_else(|e| panic!("{e}"))
}

fn engine(gpu: Arc<Gpu>, file: &ModelFile) -> lfm::Result<Session> {
    let m = GpuModel::upload(gpu, file, |_, _| {})?;
    Session::new(
        Arc::new(m),
        SessionOptions {
            ctx: 256,
            chunk: 16,
            ..Default::default()
        },
    )
}

#[test]
fn a_device_lost_mid_generation_is_an_error_and_a_new_engine_works() -> anyhow::Result<()> {
    let file = tiny();
    for (backend, gpu) in gpu_common::gpus() {
        let mut s = engine(gpu.clone(), &file)?;
        let mut n = 0;
        let r = s.generate(&[1, 20, 30, 40], 64, &|_| false, &mut |_| {
            n += 1;
            if n == 3 {
                gpu.device.destroy();
            }
            true
        });
        let err = match r {
            Ok(st) => {
                panic!("{backend}: generation went on after the device was destroyed: {st:?}")
            }
            Err(e) => e,
        };
        assert!(matches!(err, lfm::Error::DeviceLost(_)), "{backend}: {err}");
        assert!(err.to_string().contains("load the model again"), "{err}");
        assert!(gpu.faults.is_lost());
        // The dead session keeps saying so.
        assert!(s.generate(&[5], 4, &|_| false, &mut |_| true).is_err());
        drop(s);
        // A new device, model and session work.
        let fresh = gpu_common::gpus()
            .into_iter()
            .find(|(b, _)| *b == backend)
            .map(|(_, g)| g)
            .unwrap_or_else(|| panic!("{backend}: no second device"));
        let mut s = engine(fresh, &file)?;
        let st = s.generate(&[1, 20, 30, 40], 8, &|_| false, &mut |_| true)?;
        assert_eq!(st.generated.len(), 8, "{backend}: the new engine generates");
    }
    Ok(())
}

#[test]
fn a_session_larger_than_the_device_allows_fails_with_the_plan() -> anyhow::Result<()> {
    let file = tiny();
    let mut gpu = pollster::block_on(Gpu::new(&GpuOptions::default(), &DeviceNeeds::default()))?;
    // As if the device allowed 64 KiB per buffer: a 1024-token f32 ring is 128 KiB.
    gpu.limits.max_storage_buffer_binding_size = 64 << 10;
    let gpu = Arc::new(gpu);
    let m = Arc::new(GpuModel::upload(gpu.clone(), &file, |_, _| {})?);
    let opts = SessionOptions {
        ctx: 1024,
        chunk: 16,
        kv: KvType::F32,
        ..Default::default()
    };
    let err = match Session::new(m.clone(), opts) {
        Ok(_) => panic!("a 128 KiB ring was accepted under a 64 KiB limit"),
        Err(e) => e,
    };
    let msg = err.to_string();
    assert!(matches!(err, lfm::Error::OutOfMemory(_)), "{msg}");
    for needle in [
        "K or V ring",
        "128.0 KiB",
        "64.0 KiB",
        "kv rings",
        "weights",
        "total",
    ] {
        assert!(msg.contains(needle), "{needle:?} missing from: {msg}");
    }
    // What the plan suggests fits.
    let ok = SessionOptions {
        ctx: 1024,
        chunk: 16,
        kv: KvType::Int8,
        ..Default::default()
    };
    if let Err(e) = Session::new(m, ok) {
        panic!("int8 KV (40 KiB ring) should fit: {e}");
    }
    Ok(())
}

#[test]
fn a_pipeline_that_fails_to_compile_names_kernel_and_variant() {
    for (backend, gpu) in gpu_common::gpus() {
        // A value the shader's override cannot take: a workgroup of 0 lanes.
        let spec = KernelSpec::new("rms_norm.wgsl", Defines::default().flag("LAST_ROW", false))
            .u("H", 64)
            .c("EPS", 1e-5)
            .u("WG", 0);
        let err = match gpu.pipeline(&spec) {
            Ok(_) => panic!("{backend}: a 0-lane workgroup compiled"),
            Err(e) => e.to_string(),
        };
        assert!(
            err.contains("rms_norm") && err.contains("WG=0"),
            "{backend}: {err}"
        );
        assert!(
            gpu.faults.check().is_ok(),
            "{backend}: the failure was reported, not left behind"
        );
    }
}
