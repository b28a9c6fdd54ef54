//! Attention: prep (q/k norm, RoPE, KV-ring write), causal prefill, split-K flash decoding and
//! its reduction (`shaders/attn_*.wgsl`).
//!
//! Bindings — prep: params, state, qkv, q_norm, k_norm, inv_freq, q_out, k_cache, v_cache;
//! prefill: params, state, q, k_cache, v_cache, out; decode: state, q, k_cache, v_cache,
//! part_o, part_ml; reduce: state, part_o, part_ml, out.

use crate::error::{Error, Result};
use crate::gpu::KernelSpec;
use crate::gpu::shader::Defines;

/// The attention geometry of a model and its ring.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttnShape {
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub eps: f32,
    /// KV ring capacity in tokens.
    pub capacity: usize,
}

impl AttnShape {
    /// The kernels' limits: head_dim <= 256 and even, <= 8 query heads per KV head.
    pub fn check(&self) -> Result<()> {
        let g = self.n_heads / self.n_kv_heads.max(1);
        if self.n_kv_heads == 0
            || !self.n_heads.is_multiple_of(self.n_kv_heads)
            || self.head_dim == 0
            || self.head_dim > 256
            || !self.head_dim.is_multiple_of(2)
            || g > 8
            || g * self.head_dim > 2048
        {
            return Err(Error::unsupported(
                "attention shape",
                format!(
                    "{} heads / {} KV heads of dim {} (kernels need head_dim even and <= 256, at most 8 query heads per KV head)",
                    self.n_heads, self.n_kv_heads, self.head_dim
                ),
            ));
        }
        Ok(())
    }
    pub fn scale(&self) -> f32 {
        (self.head_dim as f64).powf(-0.5) as f32
    }
    /// Keys per flash-decoding split: a multiple of 64 keeping the split count at most 64.
    pub fn split(&self) -> usize {
        64 * self.capacity.div_ceil(64 * 64).max(1)
    }
    pub fn n_splits(&self) -> usize {
        self.capacity.div_ceil(self.split())
    }
}

fn base(file: &'static str, a: &AttnShape) -> KernelSpec {
    KernelSpec::new(file, Defines::default())
        .u("NH", a.n_heads)
        .u("HD", a.head_dim)
}

pub fn prep_spec(a: &AttnShape) -> KernelSpec {
    base("attn_prep.wgsl", a)
        .u("NKV", a.n_kv_heads)
        .c("EPS", a.eps)
}

pub fn prep_groups(a: &AttnShape, t: usize) -> [u32; 3] {
    [(a.n_heads + a.n_kv_heads) as u32, t as u32, 1]
}

pub fn prefill_spec(a: &AttnShape) -> KernelSpec {
    base("attn_prefill.wgsl", a)
        .u("NKV", a.n_kv_heads)
        .c("SCALE", a.scale())
}

pub fn prefill_groups(a: &AttnShape, t: usize) -> [u32; 3] {
    [a.n_heads as u32, t as u32, 1]
}

pub fn decode_spec(a: &AttnShape) -> KernelSpec {
    base("attn_decode.wgsl", a)
        .u("NKV", a.n_kv_heads)
        .u("SPLIT", a.split())
        .c("SCALE", a.scale())
}

pub fn decode_groups(a: &AttnShape) -> [u32; 3] {
    [a.n_splits() as u32, a.n_kv_heads as u32, 1]
}

pub fn reduce_spec(a: &AttnShape) -> KernelSpec {
    base("attn_reduce.wgsl", a)
        .u("SPLIT", a.split())
        .u("NSPLIT", a.n_splits())
}

pub fn reduce_groups(a: &AttnShape) -> [u32; 3] {
    [a.n_heads as u32, 1, 1]
}

/// RoPE inverse frequencies as Hugging Face computes them (f32):
/// `1 / theta^(arange(0, hd, 2) / hd)`.
pub fn inv_freq(head_dim: usize, theta: f32) -> Vec<f32> {
    (0..head_dim / 2)
        .map(|i| {
            let e = (2 * i) as f32 / head_dim as f32;
            1.0 / theta.powf(e)
        })
        .collect()
}
