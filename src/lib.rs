//! lfm-webgpu: LFM2 inference whose every hot op is a WGSL compute shader, driven through wgpu.
//!
//! Data flow (see ARCHITECTURE.md): `format` (parse the file's index, mmap) -> `model`
//! (upload weights, record the forward pass) -> `session` (device-resident conv state, KV ring,
//! token ring) -> `sampling` on the GPU -> `tokenizer` (detokenize, stop conditions).
//! `reference` is a plain-Rust f32 forward pass used as the test oracle, never as a fallback.

// The modules that read untrusted input (model files, tokenizers, chat templates; snapshots in
// session.rs) must not panic on it: no unwrap, expect or indexing (clippy.toml exempts tests).
#[deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
pub mod chat;
#[deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
pub mod config;
pub mod conversation;
pub mod error;
#[deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
pub mod format;
pub mod gpu;
pub mod memory;
pub mod model;
pub mod npy;
pub mod ops;
pub mod platform;
pub mod quantize;
pub mod reference;
pub mod sampling;
pub mod session;
#[deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
pub mod tokenizer;

pub use config::{LayerKind, Lfm2Config};
pub use error::{Error, Result};
pub use format::{ModelFile, QuantFormat, SourceKind, TensorEntry};
