//! Kernel variants: one module per kernel family (`shaders/<name>.wgsl`), each turning typed
//! parameters into a [`KernelSpec`] and sizing its grid. CPU oracles live in
//! `crate::reference::ops` and the tests compare against them.

pub mod attention;
pub mod conv;
pub mod copy;
pub mod embed;
pub mod layout;
pub mod linear;
pub mod norm;
pub mod sample;

use crate::error::Result;
use crate::format::QuantFormat;
use crate::gpu::KernelSpec;

/// Mirror of `Params` in shaders/common.wgsl (uniform, written by the CPU before a submit).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    pub n_tokens: u32,
    pub _pad: [u32; 3],
}

/// Mirror of `State` in shaders/common.wgsl (storage, advanced by the GPU).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct State {
    pub pos: u32,
    pub n_sampled: u32,
    pub _pad: [u32; 2],
}

/// The block-decoder include for a weight format: `shaders/formats/<ggml name>.wgsl`.
pub fn format_var(f: QuantFormat) -> Result<&'static str> {
    Ok(f.name())
}

/// Formats the GPU kernels decode: every `QuantFormat`.
pub const GPU_FORMATS: &[QuantFormat] = &QuantFormat::ALL;

/// Every kernel variant the engine can build, at representative sizes, for validation with naga
/// alone (tests/shaders.rs) — each `#if` branch and each format decoder appears at least once.
pub fn all_variants() -> Vec<KernelSpec> {
    let mut v = Vec::new();
    for &f in GPU_FORMATS {
        for e in linear::Epilogue::ALL {
            if let Ok(s) = linear::gemv_spec(f, e, 256, 48, 0) {
                v.push(s);
            }
            if e != linear::Epilogue::ShortConv
                && let Ok(s) = linear::gemm_spec(f, e, 256, 48, 48, 0)
            {
                v.push(s);
            }
        }
        if let Ok(s) = embed::embed_spec(f, 256, 100, 300) {
            v.push(s);
        }
    }
    v.push(norm::rms_norm_spec(64, 1e-5, false));
    v.push(norm::rms_norm_spec(64, 1e-5, true));
    v.push(conv::short_conv_spec(64, 3));
    for kv in attention::KvType::ALL {
        let a = attention::AttnShape {
            n_heads: 4,
            n_kv_heads: 2,
            head_dim: 16,
            eps: 1e-5,
            ctx: 128,
            sinks: 4,
            slots: 160,
            kv,
        };
        v.push(attention::prep_spec(&a));
        v.push(attention::prefill_spec(&a));
        v.push(attention::decode_spec(&a));
        v.push(attention::reduce_spec(&a));
    }
    v.push(sample::sample_spec(100, 300));
    v.push(sample::advance_spec());
    v.push(copy::copy_spec(1000));
    v
}
