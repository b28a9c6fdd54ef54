//! GPU setup for the integration tests. With `LFM_REQUIRE_GPU=1` (CI) a missing adapter fails
//! the test; otherwise the test prints why it skipped.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use lfm::ModelFile;
use lfm::gpu::{DeviceNeeds, Gpu, GpuOptions};
use lfm::model::GpuModel;
use lfm::session::{Session, SessionOptions};

pub fn require_gpu() -> bool {
    std::env::var("LFM_REQUIRE_GPU").is_ok_and(|v| v == "1")
}

/// A device, or `None` (test skipped) when there is none and the GPU is not required.
pub fn gpu_with(needs: &DeviceNeeds) -> Option<Arc<Gpu>> {
    match pollster::block_on(Gpu::new(&GpuOptions::default(), needs)) {
        Ok(g) => Some(Arc::new(g)),
        Err(e) if !require_gpu() => {
            eprintln!("skipping GPU test: {e}");
            None
        }
        Err(e) => panic!("LFM_REQUIRE_GPU=1 but no usable adapter: {e}"),
    }
}

pub fn gpu() -> Option<Arc<Gpu>> {
    gpu_with(&DeviceNeeds::default())
}

/// Backends the kernel tests run on: `LFM_TEST_BACKENDS` (comma list of vulkan, gl, metal,
/// dx12), default `vulkan,gl`: lavapipe's Vulkan and llvmpipe's GL on a machine with no GPU.
fn test_backends() -> Vec<(String, wgpu::Backends)> {
    let list = std::env::var("LFM_TEST_BACKENDS").unwrap_or_else(|_| "vulkan,gl".into());
    list.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            let b = match s.trim() {
                "vulkan" => wgpu::Backends::VULKAN,
                "gl" => wgpu::Backends::GL,
                "metal" => wgpu::Backends::METAL,
                "dx12" => wgpu::Backends::DX12,
                other => panic!("LFM_TEST_BACKENDS: unknown backend `{other}`"),
            };
            (s.trim().to_string(), b)
        })
        .collect()
}

/// One device per test backend. With `LFM_REQUIRE_GPU=1` every listed backend must exist.
pub fn gpus() -> Vec<(String, Arc<Gpu>)> {
    let mut out = Vec::new();
    for (name, b) in test_backends() {
        let opts = GpuOptions {
            backends: Some(b),
            adapter_name: None,
            ..Default::default()
        };
        match pollster::block_on(Gpu::new(&opts, &DeviceNeeds::default())) {
            Ok(g) => out.push((name, Arc::new(g))),
            Err(e) if !require_gpu() => eprintln!("skipping backend {name}: {e}"),
            Err(e) => panic!("LFM_REQUIRE_GPU=1 but backend {name} has no usable adapter: {e}"),
        }
    }
    out
}

/// Uploads `path` to `gpu` and makes a session.
pub fn session_on(gpu: Arc<Gpu>, path: &Path, opts: SessionOptions) -> Session {
    let file = ModelFile::open(path).unwrap_or_else(|e| panic!("{e}"));
    let model = GpuModel::upload(gpu, &file, |_, _| {}).unwrap_or_else(|e| panic!("{e}"));
    Session::new(Arc::new(model), opts).unwrap_or_else(|e| panic!("{e}"))
}

/// Opens `path`, uploads it, and makes a session.
pub fn session(path: &Path, opts: SessionOptions) -> Option<(ModelFile, Session)> {
    let file = ModelFile::open(path).unwrap_or_else(|e| panic!("{e}"));
    let needs = lfm::model::device_needs(&file).unwrap_or_else(|e| panic!("{e}"));
    let gpu = gpu_with(&needs)?;
    let model = GpuModel::upload(gpu, &file, |_, _| {}).unwrap_or_else(|e| panic!("{e}"));
    let s = Session::new(Arc::new(model), opts).unwrap_or_else(|e| panic!("{e}"));
    Some((file, s))
}

/// Deterministic test data (xorshift64*).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u32(&mut self) -> u32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32) as u32
    }
    /// Uniform in [-1, 1).
    pub fn f(&mut self) -> f32 {
        self.next_u32() as f32 / 2_147_483_648.0 - 1.0
    }
    pub fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.f() * scale).collect()
    }
}

/// Stores `values` in `format` and returns (bytes, the values the bytes decode to). Quantized
/// formats get random valid blocks instead (only `values.len()` is used): the kernels are
/// checked against a CPU dequantization of the same bytes.
pub fn encode(format: lfm::QuantFormat, values: &[f32]) -> (Vec<u8>, Vec<f32>) {
    use lfm::QuantFormat as Q;
    let mut rng = Rng::new(values.len() as u64 ^ format.ggml_type() as u64);
    let bytes: Vec<u8> = match format {
        Q::Q4_0 | Q::Q8_0 | Q::Q4K | Q::Q5K | Q::Q6K => {
            lfm::quantize::blocks::random_blocks(format, values.len(), || rng.next_u32())
        }
        Q::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        Q::F16 => values
            .iter()
            .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
            .collect(),
        Q::BF16 => values
            .iter()
            .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes())
            .collect(),
    };
    let mut back = Vec::new();
    format
        .dequantize(&bytes, &mut back)
        .unwrap_or_else(|e| panic!("{e}"));
    (bytes, back)
}

pub fn upload(gpu: &Gpu, values: &[f32]) -> wgpu::Buffer {
    gpu.storage_init("test", bytemuck::cast_slice(values))
}

pub fn upload_u32(gpu: &Gpu, values: &[u32]) -> wgpu::Buffer {
    gpu.storage_init("test", bytemuck::cast_slice(values))
}

/// A `Params` uniform holding `n_tokens`.
pub fn params(gpu: &Gpu, n_tokens: usize) -> wgpu::Buffer {
    let b = gpu.uniform("params", 16);
    set_params(gpu, &b, n_tokens);
    b
}

pub fn set_params(gpu: &Gpu, b: &wgpu::Buffer, n_tokens: usize) {
    let p = lfm::ops::Params {
        n_tokens: n_tokens as u32,
        _pad: [0; 3],
    };
    gpu.queue.write_buffer(b, 0, bytemuck::bytes_of(&p));
}

/// A `State` storage buffer at position `pos`.
pub fn state(gpu: &Gpu, pos: usize) -> wgpu::Buffer {
    let b = gpu.storage("state", 16);
    set_state(gpu, &b, pos);
    b
}

pub fn set_state(gpu: &Gpu, b: &wgpu::Buffer, pos: usize) {
    let s = lfm::ops::State {
        pos: pos as u32,
        ..Default::default()
    };
    gpu.queue.write_buffer(b, 0, bytemuck::bytes_of(&s));
}

pub fn read(gpu: &Gpu, b: &wgpu::Buffer, n: usize) -> Vec<f32> {
    gpu.read_f32(b, 0, n).unwrap_or_else(|e| panic!("{e}"))
}

/// Fails with the worst index unless every |got - want| <= tol * (1 + |want|).
pub fn assert_close(what: &str, got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    let mut worst = (0usize, 0.0f32);
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let d = (g - w).abs() / (1.0 + w.abs());
        if d.is_nan() || d > worst.1 {
            worst = (i, d);
        }
    }
    assert!(
        worst.1 <= tol,
        "{what}: element {} is {} but should be {} (relative diff {:.2e} > {tol:.0e})",
        worst.0,
        got[worst.0],
        want[worst.0],
        worst.1
    );
}

/// Uploads weight bytes in the file layout, repacked to the device layout as the model does.
pub fn upload_weights(gpu: &Gpu, format: lfm::QuantFormat, bytes: &[u8]) -> wgpu::Buffer {
    let mut packed = Vec::new();
    lfm::ops::layout::repack(format, bytes, &mut packed);
    gpu.storage_init("w", &packed)
}
