//! GPU setup for the integration tests. With `LFM_REQUIRE_GPU=1` (CI) a missing adapter fails
//! the test; otherwise the test prints why it skipped.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use lfm::gpu::{DeviceNeeds, Gpu, GpuOptions};
use lfm::model::GpuModel;
use lfm::session::{Session, SessionOptions};
use lfm::ModelFile;

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

/// Opens `path`, uploads it, and makes a session.
pub fn session(path: &Path, opts: SessionOptions) -> Option<(ModelFile, Session)> {
    let file = ModelFile::open(path).unwrap_or_else(|e| panic!("{e}"));
    let needs = lfm::model::device_needs(&file).unwrap_or_else(|e| panic!("{e}"));
    let gpu = gpu_with(&needs)?;
    let model = GpuModel::upload(gpu, &file, |_, _| {}).unwrap_or_else(|e| panic!("{e}"));
    let s = Session::new(Arc::new(model), opts).unwrap_or_else(|e| panic!("{e}"));
    Some((file, s))
}
