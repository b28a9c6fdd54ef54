//! The device: adapter choice, limits, pipelines, buffers and readback. The rest of the crate
//! records dispatches against a [`Gpu`]; nothing here knows about LFM2.

pub mod buffers;
pub mod pipelines;
pub mod shader;

use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};

pub use buffers::{DeviceBytes, ReadbackSlot};
pub use pipelines::{Dispatch, KernelSpec, PipelineCache};

/// What the caller needs from the device, so we request exactly that from the adapter.
#[derive(Clone, Debug)]
pub struct DeviceNeeds {
    /// Largest single storage binding the model would use, in bytes (granted up to the
    /// adapter's limit).
    pub max_binding: u64,
    /// Largest single buffer, in bytes.
    pub max_buffer: u64,
    /// Storage buffers bound in one kernel (the most any kernel uses).
    pub storage_buffers_per_stage: u32,
}

impl Default for DeviceNeeds {
    fn default() -> Self {
        DeviceNeeds {
            max_binding: 128 << 20,
            max_buffer: 256 << 20,
            storage_buffers_per_stage: 8,
        }
    }
}

/// How to pick an adapter.
#[derive(Clone, Debug, Default)]
pub struct GpuOptions {
    /// Backends to try; `None` = `WGPU_BACKEND` from the environment, else all native ones.
    pub backends: Option<wgpu::Backends>,
    /// Substring of the adapter name to prefer (e.g. "llvmpipe"); `None` = high performance.
    pub adapter_name: Option<String>,
    /// Request `wgpu::Features::TIMESTAMP_QUERY` when the adapter has it (benchmarks); check
    /// `gpu.device.features()` for whether it was granted.
    pub timestamps: bool,
}

/// A device and its queue, with the adapter facts the engine and `lfm devices` report.
pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub features: wgpu::Features,
    pub limits: wgpu::Limits,
    pub pipelines: PipelineCache,
    pub bytes: DeviceBytes,
    /// Device loss and errors raised outside any error scope (checked by the scheduler).
    pub faults: Faults,
}

/// What the device reported on its own: its loss, and errors outside any error scope. Without
/// this wgpu's default handler would panic; here they become errors of the request running.
#[derive(Clone, Default)]
pub struct Faults {
    lost: Arc<Mutex<Option<String>>>,
    errors: Arc<Mutex<Vec<(bool, String)>>>,
    on_lost: Arc<Mutex<Option<LostHook>>>,
}

type LostHook = Box<dyn Fn(&str) + Send>;

impl std::fmt::Debug for Faults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Faults")
            .field("lost", &self.lost)
            .field("errors", &self.errors)
            .finish()
    }
}

impl Faults {
    /// Calls `f(message)` when the device is lost other than by being dropped (the browser
    /// tells the page at once, even while no request runs).
    pub fn on_lost(&self, f: impl Fn(&str) + Send + 'static) {
        if let Ok(mut h) = self.on_lost.lock() {
            *h = Some(Box::new(f));
        }
    }

    /// Routes `device`'s uncaptured errors and its loss here.
    fn attach(&self, device: &wgpu::Device) {
        let errors = self.errors.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            let oom = matches!(e, wgpu::Error::OutOfMemory { .. });
            if let Ok(mut v) = errors.lock() {
                v.push((oom, e.to_string()));
            }
        }));
        let lost = self.lost.clone();
        let hook = self.on_lost.clone();
        device.set_device_lost_callback(move |reason, msg| {
            let text = format!("{reason:?}: {msg}");
            if let Ok(mut l) = lost.lock() {
                l.get_or_insert_with(|| text.clone());
            }
            // Dropping the device (unloading a model) destroys it: nobody to tell.
            if reason != wgpu::DeviceLostReason::Destroyed
                && let Some(f) = hook.lock().ok().as_deref().and_then(Option::as_ref)
            {
                f(&text);
            }
        });
    }

    /// Whether the device was lost.
    pub fn is_lost(&self) -> bool {
        self.lost.lock().map(|l| l.is_some()).unwrap_or(true)
    }

    /// The device's loss, else the first error reported since the last check.
    pub fn check(&self) -> Result<()> {
        if let Some(msg) = self.lost.lock().ok().and_then(|l| l.clone()) {
            return Err(Error::DeviceLost(msg));
        }
        match self.errors.lock().ok().and_then(|mut v| v.drain(..).next()) {
            Some((true, m)) => Err(Error::OutOfMemory(m)),
            Some((false, m)) => Err(Error::Gpu(m)),
            None => Ok(()),
        }
    }
}

/// Backend sets to try in order: the caller's, else `WGPU_BACKEND`, else the primary native
/// APIs (Vulkan, Metal, DX12, browser WebGPU) and only then GL.
fn backend_sets(opts: &GpuOptions) -> Vec<wgpu::Backends> {
    if let Some(b) = opts.backends {
        vec![b]
    } else if let Some(b) = wgpu::Backends::from_env() {
        vec![b]
    } else {
        vec![wgpu::Backends::PRIMARY, wgpu::Backends::SECONDARY]
    }
}

fn instance(backends: wgpu::Backends) -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = backends;
    wgpu::Instance::new(desc)
}

/// Every adapter this machine offers (for `lfm devices`).
pub async fn list_adapters(opts: &GpuOptions) -> Vec<wgpu::Adapter> {
    let mut all = Vec::new();
    for b in backend_sets(opts) {
        all.extend(instance(b).enumerate_adapters(b).await);
    }
    all
}

async fn pick_adapter(opts: &GpuOptions) -> Result<wgpu::Adapter> {
    if let Some(name) = &opts.adapter_name {
        let wanted = name.to_lowercase();
        return list_adapters(opts)
            .await
            .into_iter()
            .find(|a| a.get_info().name.to_lowercase().contains(&wanted))
            .ok_or_else(|| Error::Gpu(format!("no adapter whose name contains `{name}`")));
    }
    let mut last = String::from("no backend enabled");
    for b in backend_sets(opts) {
        match instance(b)
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                ..Default::default()
            })
            .await
        {
            Ok(a) => return Ok(a),
            Err(e) => last = e.to_string(),
        }
    }
    Err(Error::Gpu(format!(
        "no GPU adapter found ({last}); install a Vulkan driver (e.g. Mesa lavapipe) or set WGPU_BACKEND"
    )))
}

impl Gpu {
    /// Opens a device with the limits in `needs`, capped at what the adapter offers (failing
    /// clearly only where nothing can make up for it: storage buffers per kernel).
    pub async fn new(opts: &GpuOptions, needs: &DeviceNeeds) -> Result<Gpu> {
        let adapter = pick_adapter(opts).await?;
        let info = adapter.get_info();
        let have = adapter.limits();
        // Core WebGPU defaults, raised only where the model needs more.
        let mut limits = wgpu::Limits::default();
        if needs.storage_buffers_per_stage > have.max_storage_buffers_per_shader_stage {
            return Err(Error::Gpu(format!(
                "adapter `{}` allows {} storage buffers per stage, kernels need {}",
                info.name,
                have.max_storage_buffers_per_shader_stage,
                needs.storage_buffers_per_stage
            )));
        }
        // Ask for what the model would like, as far as the adapter goes; a larger matrix is
        // split by rows across bindings (model.rs).
        limits.max_storage_buffer_binding_size = limits
            .max_storage_buffer_binding_size
            .max(needs.max_binding.min(have.max_storage_buffer_binding_size));
        limits.max_buffer_size = limits
            .max_buffer_size
            .max(needs.max_buffer.min(have.max_buffer_size))
            .max(limits.max_storage_buffer_binding_size);
        limits.max_storage_buffers_per_shader_stage = limits
            .max_storage_buffers_per_shader_stage
            .max(needs.storage_buffers_per_stage);
        let mut features = wgpu::Features::empty();
        if opts.timestamps && adapter.features().contains(wgpu::Features::TIMESTAMP_QUERY) {
            features |= wgpu::Features::TIMESTAMP_QUERY;
        }
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("lfm"),
                required_features: features,
                required_limits: limits.clone(),
                experimental_features: wgpu::ExperimentalFeatures::disabled(),
                memory_hints: wgpu::MemoryHints::Performance,
                trace: wgpu::Trace::Off,
            })
            .await
            .map_err(|e| Error::Gpu(format!("request_device on `{}`: {e}", info.name)))?;
        let faults = Faults::default();
        faults.attach(&device);
        Ok(Gpu {
            faults,
            device,
            queue,
            features: adapter.features(),
            info,
            limits,
            pipelines: PipelineCache::default(),
            bytes: DeviceBytes::default(),
        })
    }

    /// One line describing the adapter: name, backend, device type.
    pub fn describe(&self) -> String {
        format!(
            "{} ({:?}, {:?})",
            self.info.name, self.info.backend, self.info.device_type
        )
    }
}
