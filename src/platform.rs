//! The one place that differs between native and wasm32.
//!
//! Nothing in the browser may block: the event loop delivers every WebGPU result (buffer maps,
//! error scopes), so a blocked thread would wait forever. The library's async paths are therefore
//! the real ones; natively they are driven to completion with [`block_on`], and in the browser the
//! caller awaits them (`wasm-bindgen-futures`).

use std::future::Future;

/// Runs a future to completion on the calling thread (native only: pollster). The browser build
/// awaits the async API instead and has no `block_on`.
#[cfg(not(target_arch = "wasm32"))]
pub fn block_on<F: Future>(f: F) -> F::Output {
    pollster::block_on(f)
}

/// Runs a future whose result the caller does not wait for (it reports through shared state).
/// Native: to completion now, so its effect is visible when this returns. Browser: spawned on
/// the event loop, so it completes later (e.g. an error scope that WebGPU resolves
/// asynchronously).
#[cfg(not(target_arch = "wasm32"))]
pub fn run_detached<F: Future<Output = ()> + 'static>(f: F) {
    pollster::block_on(f)
}

#[cfg(target_arch = "wasm32")]
pub fn run_detached<F: Future<Output = ()> + 'static>(f: F) {
    wasm_bindgen_futures::spawn_local(f)
}

/// Wall-clock instants (std on native; `performance.now()` in the browser).
#[cfg(not(target_arch = "wasm32"))]
pub use std::time::Instant;
#[cfg(target_arch = "wasm32")]
pub use web_time::Instant;

/// Peak resident memory of this process in bytes (Linux: `VmHWM`), if the platform reports it.
pub fn peak_rss_bytes() -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        let s = std::fs::read_to_string("/proc/self/status").ok()?;
        let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}
