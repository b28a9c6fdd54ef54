//! Compute pipelines, created once per distinct kernel variant and cached, and the recorded
//! dispatch (pipeline + bind group + grid) that the scheduler replays.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::Gpu;
use super::shader::{self, Defines};
use crate::error::{Error, Result};

/// A fully specified kernel variant: source file, preprocessor defines, override constants.
/// It is the cache key and renders the debug label.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KernelSpec {
    pub file: &'static str,
    pub defines: Defines,
    /// WGSL `override` values (stored as f64 bits so the spec can be hashed).
    pub constants: Vec<(&'static str, u64)>,
}

impl KernelSpec {
    pub fn new(file: &'static str, defines: Defines) -> Self {
        KernelSpec {
            file,
            defines,
            constants: Vec::new(),
        }
    }
    pub fn c(mut self, name: &'static str, value: impl Into<f64>) -> Self {
        self.constants.push((name, value.into().to_bits()));
        self
    }
    /// Like `c` for sizes, which come as `usize`.
    pub fn u(self, name: &'static str, value: usize) -> Self {
        self.c(name, value as f64)
    }
    pub fn label(&self) -> String {
        let mut s = self.file.trim_end_matches(".wgsl").to_string();
        for (k, on) in &self.defines.flags {
            if *on {
                s.push_str(&format!(" {k}"));
            }
        }
        for (k, v) in &self.defines.vars {
            s.push_str(&format!(" {k}={v}"));
        }
        for (k, v) in &self.constants {
            s.push_str(&format!(" {k}={}", f64::from_bits(*v)));
        }
        s
    }
    /// The preprocessed WGSL source.
    pub fn source(&self) -> Result<String> {
        shader::preprocess(self.file, &self.defines)
    }
}

/// Pipelines by kernel variant, and compile errors that arrived after creation returned.
#[derive(Default)]
pub struct PipelineCache {
    map: Mutex<HashMap<KernelSpec, Arc<wgpu::ComputePipeline>>>,
    failed: Arc<Mutex<Vec<Error>>>,
    /// Error scopes not resolved yet (browser only; natively they resolve inside `pipeline`).
    pending: Arc<AtomicUsize>,
}

impl Gpu {
    /// The first pipeline error reported so far (and forgets it), as `Err`.
    fn take_pipeline_error(&self) -> Result<()> {
        let mut f = self.pipelines.failed.lock().map_err(|_| poisoned())?;
        match f.drain(..).next() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Waits until the device has finished the work submitted so far, then reports any
    /// pipeline that failed to compile. Natively failures are already returned by `pipeline`;
    /// in the browser the error scopes resolve on the event loop, so the web engine awaits this
    /// after building its plans (during load, before the first token).
    pub async fn check_pipelines(&self) -> Result<()> {
        loop {
            let (tx, rx) = futures_channel::oneshot::channel();
            self.queue.on_submitted_work_done(move || {
                let _ = tx.send(());
            });
            // Natively the callback runs inside this wait; in the browser it is a no-op and the
            // event loop runs the callback while `rx` is awaited.
            self.device
                .poll(wgpu::PollType::wait_indefinitely())
                .map_err(|e| Error::Gpu(format!("device poll: {e}")))?;
            let _ = rx.await;
            if self.pipelines.pending.load(Ordering::Acquire) == 0 {
                return self.take_pipeline_error();
            }
        }
    }

    /// The pipeline for `spec`, compiled on first use inside an error scope; a failure names the
    /// kernel and carries the preprocessed source.
    pub fn pipeline(&self, spec: &KernelSpec) -> Result<Arc<wgpu::ComputePipeline>> {
        if let Some(p) = self.pipelines.map.lock().map_err(|_| poisoned())?.get(spec) {
            return Ok(p.clone());
        }
        let label = spec.label();
        let src = spec.source()?;
        shader::validate(&label, &src)?;
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = self
            .device
            .create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(&label),
                source: wgpu::ShaderSource::Wgsl(src.as_str().into()),
            });
        let constants: Vec<(&str, f64)> = spec
            .constants
            .iter()
            .map(|(k, v)| (*k, f64::from_bits(*v)))
            .collect();
        let pipeline = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(&label),
                layout: None,
                module: &module,
                entry_point: Some("main"),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants: &constants,
                    zero_initialize_workgroup_memory: false,
                },
                cache: None,
            });
        // Natively the scope resolves at once and a failure is returned here. In the browser it
        // resolves on the event loop (nothing may block there); a failure is kept and reported
        // by `Gpu::check_pipelines`, which the web engine awaits after compiling every plan.
        let failed = self.pipelines.failed.clone();
        let pending = self.pipelines.pending.clone();
        pending.fetch_add(1, Ordering::AcqRel);
        let key = label.clone();
        // Popped now (scopes nest), awaited when it resolves.
        let popped = scope.pop();
        crate::platform::run_detached(async move {
            if let Some(err) = popped.await
                && let Ok(mut f) = failed.lock()
            {
                f.push(Error::Shader {
                    key,
                    msg: format!("{err}\n--- preprocessed source ---\n{src}"),
                });
            }
            pending.fetch_sub(1, Ordering::AcqRel);
        });
        self.take_pipeline_error()?;
        let p = Arc::new(pipeline);
        self.pipelines
            .map
            .lock()
            .map_err(|_| poisoned())?
            .insert(spec.clone(), p.clone());
        Ok(p)
    }

    /// A bind group for `pipeline` with `buffers` at bindings 0, 1, 2...
    pub fn bind(
        &self,
        label: &str,
        pipeline: &wgpu::ComputePipeline,
        buffers: &[&wgpu::Buffer],
    ) -> wgpu::BindGroup {
        let entries: Vec<wgpu::BindGroupEntry> = buffers
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: b.as_entire_binding(),
            })
            .collect();
        self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(label),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        })
    }

    /// Builds a [`Dispatch`]: pipeline for `spec`, bind group over `buffers`, grid `groups`.
    pub fn dispatch(
        &self,
        spec: &KernelSpec,
        buffers: &[&wgpu::Buffer],
        groups: [u32; 3],
    ) -> Result<Dispatch> {
        let pipeline = self.pipeline(spec)?;
        let bind_group = self.bind(&spec.label(), &pipeline, buffers);
        Ok(Dispatch {
            label: spec.label(),
            pipeline,
            bind_group,
            groups,
        })
    }
}

fn poisoned() -> Error {
    Error::Gpu("pipeline cache lock poisoned".into())
}

/// A recorded dispatch; built once, replayed every step.
pub struct Dispatch {
    pub label: String,
    pub pipeline: Arc<wgpu::ComputePipeline>,
    pub bind_group: wgpu::BindGroup,
    pub groups: [u32; 3],
}

impl Dispatch {
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.bind_group, &[]);
        pass.dispatch_workgroups(self.groups[0], self.groups[1], self.groups[2]);
    }
}

impl Gpu {
    /// Records `dispatches` into one compute pass, submits, and waits (tests and benchmarks).
    pub fn run_blocking(&self, dispatches: &[&Dispatch]) -> Result<()> {
        let mut enc = self.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            for d in dispatches {
                d.record(&mut pass);
            }
        }
        self.queue.submit([enc.finish()]);
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Gpu(format!("device poll: {e}")))?;
        Ok(())
    }
}
