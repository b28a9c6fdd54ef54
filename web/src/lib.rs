//! lfm in a browser tab: the engine compiled to `wasm32-unknown-unknown` with wasm-bindgen, on
//! the browser's WebGPU. This crate is what `www/worker.js` (a module Web Worker) calls; pages
//! use the small promise/async-iterator API of `www/lfm.js`, which talks to the worker.
//!
//! - `blob`: tensor bytes read from the user's `Blob` one range at a time (`Blob.slice`), so
//!   the weights never live in wasm memory as a whole (a file larger than 4 GiB loads).
//! - `errors`: every failure reaches JavaScript as an `Error` with a `kind` the page turns into
//!   a friendly message (`no-webgpu`, `adapter-limits`, `unsupported-file`, `out-of-memory`,
//!   `device-lost`, ...).
//! - `engine`: load (header, device, upload, pipelines), generate / chat with streamed tokens,
//!   stop, reset, stats.
//!
//! Natively the crate is empty, so `cargo build --workspace` stays cheap; `web/build.sh` builds
//! it for wasm32.

#[cfg(target_arch = "wasm32")]
mod blob;
#[cfg(target_arch = "wasm32")]
mod engine;
#[cfg(target_arch = "wasm32")]
mod errors;

#[cfg(target_arch = "wasm32")]
pub use engine::Engine;
