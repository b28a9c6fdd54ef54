//! The plain-Rust f32 reference forward pass: the test oracle for every GPU kernel (`ops`) and
//! for the whole model (`CpuModel`). Never used as a fallback at run time.
//!
//! Everything is f32 storage with f64 accumulation, one token at a time, following
//! docs/lfm2-spec.md §2 op by op.

pub mod model;
pub mod ops;

pub use model::{CpuModel, KvPolicy};
