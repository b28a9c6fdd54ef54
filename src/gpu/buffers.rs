//! Buffer creation with byte accounting, uploads, and asynchronous readback.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use wgpu::util::DeviceExt;

use super::Gpu;
use crate::error::{Error, Result};

/// Running total of the bytes the engine has allocated on the device (sum of its buffers).
#[derive(Clone, Debug, Default)]
pub struct DeviceBytes(Arc<AtomicU64>);

impl DeviceBytes {
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
    fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
}

/// Rounds up to the copy alignment (4 bytes).
pub fn align4(n: u64) -> u64 {
    n.div_ceil(4) * 4
}

impl Gpu {
    /// A zeroed storage buffer of `size` bytes (rounded up to 4), readable and writable by kernels.
    pub fn storage(&self, label: &str, size: u64) -> wgpu::Buffer {
        let size = align4(size.max(4));
        self.bytes.add(size);
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_DST
                | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        })
    }

    /// A storage buffer initialised from `data` (padded with zeros to 4 bytes).
    pub fn storage_init(&self, label: &str, data: &[u8]) -> wgpu::Buffer {
        if data.len().is_multiple_of(4) && !data.is_empty() {
            self.bytes.add(data.len() as u64);
            return self
                .device
                .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some(label),
                    contents: data,
                    usage: wgpu::BufferUsages::STORAGE
                        | wgpu::BufferUsages::COPY_DST
                        | wgpu::BufferUsages::COPY_SRC,
                });
        }
        let buf = self.storage(label, data.len() as u64);
        let whole = data.len() / 4 * 4;
        if whole > 0 {
            self.queue.write_buffer(&buf, 0, &data[..whole]);
        }
        if whole < data.len() {
            let mut tail = [0u8; 4];
            tail[..data.len() - whole].copy_from_slice(&data[whole..]);
            self.queue.write_buffer(&buf, whole as u64, &tail);
        }
        buf
    }

    /// A uniform buffer of `size` bytes, written with `queue.write_buffer`.
    pub fn uniform(&self, label: &str, size: u64) -> wgpu::Buffer {
        let size = align4(size.max(16));
        self.bytes.add(size);
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    /// Reads a whole buffer back (blocking on native). For tests, `lfm eval` and debugging;
    /// never on the decode path.
    pub fn read_buffer(&self, buf: &wgpu::Buffer, offset: u64, size: u64) -> Result<Vec<u8>> {
        let slot = ReadbackSlot::new(self, "read_buffer", size);
        let mut enc = self.device.create_command_encoder(&Default::default());
        slot.copy_from(&mut enc, buf, offset);
        self.queue.submit([enc.finish()]);
        slot.request();
        self.wait_for(|| slot.is_ready())?;
        slot.take()
    }

    /// Reads f32s back (tests, eval).
    pub fn read_f32(&self, buf: &wgpu::Buffer, offset_elems: u64, n: usize) -> Result<Vec<f32>> {
        let bytes = self.read_buffer(buf, offset_elems * 4, n as u64 * 4)?;
        Ok(bytemuck::cast_slice(&bytes).to_vec())
    }

    /// Polls the device until `done()` is true (native: blocking waits; no busy loop). The
    /// browser cannot block: there it is an error (the async paths await instead).
    pub fn wait_for(&self, done: impl Fn() -> bool) -> Result<()> {
        #[cfg(not(target_arch = "wasm32"))]
        while !done() {
            self.wait_submission(None)?;
        }
        #[cfg(target_arch = "wasm32")]
        if !done() {
            return Err(Error::Gpu(
                "a blocking readback is not possible in the browser".into(),
            ));
        }
        Ok(())
    }

    /// Blocks until submission `idx` (or all work) has finished; a lost device or an error the
    /// device reported meanwhile is the result instead (native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn wait_submission(&self, idx: Option<wgpu::SubmissionIndex>) -> Result<()> {
        self.faults.check()?;
        let r = self.device.poll(wgpu::PollType::Wait {
            submission_index: idx,
            timeout: None,
        });
        self.faults.check()?;
        r.map(|_| ())
            .map_err(|e| Error::Gpu(format!("device poll: {e}")))
    }
}

/// A small MAP_READ staging buffer that receives bytes copied at the end of a submit and is
/// mapped asynchronously; the caller polls `is_ready` and then `take`s the bytes.
pub struct ReadbackSlot {
    buf: wgpu::Buffer,
    size: u64,
    ready: Arc<AtomicBool>,
    failed: Arc<AtomicBool>,
    waker: Arc<Mutex<Option<Waker>>>,
}

/// Resolves when a [`ReadbackSlot`]'s map callback has run. Natively the callback runs inside
/// `device.poll`; in the browser it runs from the event loop, so awaiting this yields to it.
pub struct SlotReady<'a>(&'a ReadbackSlot);

impl Future for SlotReady<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let slot = self.0;
        if slot.is_ready() {
            return Poll::Ready(());
        }
        if let Ok(mut w) = slot.waker.lock() {
            *w = Some(cx.waker().clone());
        }
        // The callback may have run between the check and storing the waker.
        if slot.is_ready() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl ReadbackSlot {
    pub fn new(gpu: &Gpu, label: &str, size: u64) -> ReadbackSlot {
        let size = align4(size.max(4));
        let buf = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        ReadbackSlot {
            buf,
            size,
            ready: Arc::new(AtomicBool::new(false)),
            failed: Arc::new(AtomicBool::new(false)),
            waker: Arc::new(Mutex::new(None)),
        }
    }

    /// Records the copy of `self.size` bytes from `src` at `offset` into the slot.
    pub fn copy_from(&self, enc: &mut wgpu::CommandEncoder, src: &wgpu::Buffer, offset: u64) {
        enc.copy_buffer_to_buffer(src, offset, &self.buf, 0, self.size);
    }

    /// Starts the asynchronous map; call after the submit that holds the copy.
    pub fn request(&self) {
        self.ready.store(false, Ordering::Release);
        self.failed.store(false, Ordering::Release);
        let ready = self.ready.clone();
        let failed = self.failed.clone();
        let waker = self.waker.clone();
        self.buf.slice(..).map_async(wgpu::MapMode::Read, move |r| {
            if r.is_err() {
                failed.store(true, Ordering::Release);
            }
            ready.store(true, Ordering::Release);
            if let Some(w) = waker.lock().ok().and_then(|mut w| w.take()) {
                w.wake();
            }
        });
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// A future that resolves once the requested map has completed (successfully or not).
    pub fn ready(&self) -> SlotReady<'_> {
        SlotReady(self)
    }

    /// The mapped bytes; unmaps so the slot can be reused.
    pub fn take(&self) -> Result<Vec<u8>> {
        if self.failed.load(Ordering::Acquire) {
            return Err(Error::Gpu("mapping a readback buffer failed".into()));
        }
        let bytes = {
            let view = self
                .buf
                .slice(..)
                .get_mapped_range()
                .map_err(|e| Error::Gpu(format!("readback: {e}")))?;
            view.to_vec()
        };
        self.buf.unmap();
        self.ready.store(false, Ordering::Release);
        Ok(bytes)
    }
}
