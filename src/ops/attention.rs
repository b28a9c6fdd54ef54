//! Attention: prep (q/k norm, q RoPE, KV-ring write), causal prefill, split-K flash decoding and
//! its reduction (`shaders/attn_*.wgsl`), over a KV ring whose layout `shaders/kv.wgsl`
//! describes: keys stored before RoPE and rotated at read time by their position in the window.
//!
//! Bindings — prep: params, state, qkv, q_norm, k_norm, rope, q_out, k_cache, v_cache;
//! prefill: params, state, q, k_cache, v_cache, rope, out; decode: state, q, k_cache, v_cache,
//! rope, part_o, part_ml; reduce: state, part_o, part_ml, out.

use crate::error::{Error, Result};
use crate::gpu::KernelSpec;
use crate::gpu::shader::Defines;

/// How keys and values are stored in the ring.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum KvType {
    F32,
    /// Two halves packed in a u32 (core WebGPU, no `shader-f16` needed).
    #[default]
    F16,
    /// Signed 8-bit with one f32 scale (absmax / 127) per token and KV head.
    Int8,
}

impl KvType {
    pub const ALL: [KvType; 3] = [KvType::F32, KvType::F16, KvType::Int8];

    pub fn name(self) -> &'static str {
        match self {
            KvType::F32 => "f32",
            KvType::F16 => "f16",
            KvType::Int8 => "int8",
        }
    }

    pub fn parse(s: &str) -> Result<KvType> {
        match s.to_ascii_lowercase().as_str() {
            "f32" => Ok(KvType::F32),
            "f16" => Ok(KvType::F16),
            "int8" | "i8" | "q8" => Ok(KvType::Int8),
            _ => Err(Error::InvalidArgument(format!(
                "unknown KV cache type {s:?} (expected f32, f16 or int8)"
            ))),
        }
    }

    /// Bytes one KV head's keys (or values) take in one slot, scales included.
    pub fn head_bytes(self, head_dim: usize) -> usize {
        match self {
            KvType::F32 => 4 * head_dim,
            KvType::F16 => 2 * head_dim,
            KvType::Int8 => head_dim + 4,
        }
    }

    /// Bytes of one token's K and V in one attention layer.
    pub fn token_bytes(self, n_kv_heads: usize, head_dim: usize) -> usize {
        2 * n_kv_heads * self.head_bytes(head_dim)
    }

    fn defines(self) -> Defines {
        Defines::default()
            .flag("KV_F32", self == KvType::F32)
            .flag("KV_F16", self == KvType::F16)
            .flag("KV_I8", self == KvType::Int8)
    }
}

/// The attention geometry of a model and the layout of its KV ring (`shaders/kv.wgsl`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttnShape {
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub eps: f32,
    /// Keys a query sees at most (the context); RoPE positions stay below it.
    pub ctx: usize,
    /// Tokens at the start of the session that are never evicted (0 when the ring stops).
    pub sinks: usize,
    /// Physical slots: `ctx` when the ring stops when full; with sliding, room for a whole
    /// prefill chunk beyond the window so that a batch never overwrites keys it still reads.
    pub slots: usize,
    pub kv: KvType,
}

impl AttnShape {
    /// The kernels' limits: head_dim <= 256 and a multiple of 4, <= 8 query heads per KV head;
    /// a ring with room for its window.
    pub fn check(&self) -> Result<()> {
        let g = self.n_heads / self.n_kv_heads.max(1);
        if self.n_kv_heads == 0
            || !self.n_heads.is_multiple_of(self.n_kv_heads)
            || self.head_dim == 0
            || self.head_dim > 256
            || !self.head_dim.is_multiple_of(4)
            || g > 8
            || g * self.head_dim > 2048
        {
            return Err(Error::unsupported(
                "attention shape",
                format!(
                    "{} heads / {} KV heads of dim {} (kernels need head_dim a multiple of 4 and <= 256, at most 8 query heads per KV head)",
                    self.n_heads, self.n_kv_heads, self.head_dim
                ),
            ));
        }
        if self.ctx == 0 || self.sinks >= self.ctx || self.slots < self.ctx {
            return Err(Error::InvalidArgument(format!(
                "KV ring of {} slots cannot hold a context of {} with {} sink tokens",
                self.slots, self.ctx, self.sinks
            )));
        }
        Ok(())
    }
    pub fn scale(&self) -> f32 {
        (self.head_dim as f64).powf(-0.5) as f32
    }
    /// Keys per flash-decoding split: a multiple of 64 keeping the split count at most 64.
    pub fn split(&self) -> usize {
        64 * self.ctx.div_ceil(64 * 64).max(1)
    }
    pub fn n_splits(&self) -> usize {
        self.ctx.div_ceil(self.split())
    }
    /// Bytes of one layer's K (or V) ring buffer.
    pub fn ring_bytes(&self) -> u64 {
        (self.slots * self.n_kv_heads) as u64 * self.kv.head_bytes(self.head_dim) as u64
    }
    fn ring(&self, spec: KernelSpec) -> KernelSpec {
        spec.u("CTX", self.ctx)
            .u("SINKS", self.sinks)
            .u("SLOTS", self.slots)
    }
}

fn base(file: &'static str, a: &AttnShape) -> KernelSpec {
    KernelSpec::new(file, a.kv.defines())
        .u("NH", a.n_heads)
        .u("HD", a.head_dim)
}

pub fn prep_spec(a: &AttnShape) -> KernelSpec {
    a.ring(base("attn_prep.wgsl", a))
        .u("NKV", a.n_kv_heads)
        .c("EPS", a.eps)
}

pub fn prep_groups(a: &AttnShape, t: usize) -> [u32; 3] {
    [(a.n_heads + a.n_kv_heads) as u32, t as u32, 1]
}

pub fn prefill_spec(a: &AttnShape) -> KernelSpec {
    a.ring(base("attn_prefill.wgsl", a))
        .u("NKV", a.n_kv_heads)
        .c("SCALE", a.scale())
}

pub fn prefill_groups(a: &AttnShape, t: usize) -> [u32; 3] {
    [a.n_heads as u32, t as u32, 1]
}

pub fn decode_spec(a: &AttnShape) -> KernelSpec {
    a.ring(base("attn_decode.wgsl", a))
        .u("NKV", a.n_kv_heads)
        .u("SPLIT", a.split())
        .c("SCALE", a.scale())
}

pub fn decode_groups(a: &AttnShape) -> [u32; 3] {
    [a.n_splits() as u32, a.n_kv_heads as u32, 1]
}

pub fn reduce_spec(a: &AttnShape) -> KernelSpec {
    KernelSpec::new("attn_reduce.wgsl", Defines::default())
        .u("NH", a.n_heads)
        .u("HD", a.head_dim)
        .u("CTX", a.ctx)
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

/// The RoPE table `[ctx, head_dim / 2]` of `(cos, sin)` pairs, flattened: the angle is formed
/// in f32 as Hugging Face does (`position * inv_freq`), its cosine and sine in f64, so the GPU
/// never evaluates trigonometry of large arguments.
pub fn rope_table(ctx: usize, head_dim: usize, theta: f32) -> Vec<f32> {
    let inv = inv_freq(head_dim, theta);
    let mut t = Vec::with_capacity(ctx * head_dim);
    for p in 0..ctx {
        for &f in &inv {
            let angle = f64::from(p as f32 * f);
            t.push(angle.cos() as f32);
            t.push(angle.sin() as f32);
        }
    }
    t
}

/// Decodes a K or V ring read back from the device (`shaders/kv.wgsl` layout) into
/// `[slots, n_kv_heads * head_dim]` f32 in natural order, scales applied (tests, debugging).
pub fn decode_ring(a: &AttnShape, words: &[u32]) -> Vec<f32> {
    let (hd, half) = (a.head_dim, a.head_dim / 2);
    let heads = a.slots * a.n_kv_heads;
    let mut out = vec![0.0f32; heads * hd];
    let i8_at = |w: u32, b: usize| f32::from((w >> (8 * b)) as u8 as i8);
    for sh in 0..heads {
        let o = &mut out[sh * hd..(sh + 1) * hd];
        match a.kv {
            KvType::F32 => {
                for (i, v) in o.iter_mut().enumerate() {
                    *v = f32::from_bits(words[sh * hd + i]);
                }
            }
            KvType::F16 => {
                for i in 0..half {
                    let w = words[sh * half + i];
                    o[i] = half::f16::from_bits(w as u16).to_f32();
                    o[i + half] = half::f16::from_bits((w >> 16) as u16).to_f32();
                }
            }
            KvType::Int8 => {
                let scale = f32::from_bits(words[heads * (hd / 4) + sh]);
                for w in 0..hd / 4 {
                    let word = words[sh * (hd / 4) + w];
                    let i = 2 * w;
                    o[i] = i8_at(word, 0) * scale;
                    o[i + 1] = i8_at(word, 1) * scale;
                    o[i + half] = i8_at(word, 2) * scale;
                    o[i + half + 1] = i8_at(word, 3) * scale;
                }
            }
        }
    }
    out
}

/// Encodes `[slots, n_kv_heads * head_dim]` f32 into a ring's storage (the inverse of
/// [`decode_ring`], rounding as the prep kernel does); benchmarks use it to fill a ring.
pub fn encode_ring(a: &AttnShape, values: &[f32]) -> Vec<u32> {
    let (hd, half) = (a.head_dim, a.head_dim / 2);
    let heads = a.slots * a.n_kv_heads;
    let mut out = vec![0u32; a.ring_bytes() as usize / 4];
    for sh in 0..heads {
        let x = &values[sh * hd..(sh + 1) * hd];
        match a.kv {
            KvType::F32 => {
                for (i, v) in x.iter().enumerate() {
                    out[sh * hd + i] = v.to_bits();
                }
            }
            KvType::F16 => {
                for i in 0..half {
                    let lo = half::f16::from_f32(x[i]).to_bits() as u32;
                    let hi = half::f16::from_f32(x[i + half]).to_bits() as u32;
                    out[sh * half + i] = lo | (hi << 16);
                }
            }
            KvType::Int8 => {
                let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                let inv = if amax > 0.0 { 127.0 / amax } else { 0.0 };
                let q =
                    |v: f32| ((v * inv).round_ties_even().clamp(-127.0, 127.0) as i8 as u8) as u32;
                for w in 0..hd / 4 {
                    let i = 2 * w;
                    out[sh * (hd / 4) + w] = q(x[i])
                        | (q(x[i + 1]) << 8)
                        | (q(x[i + half]) << 16)
                        | (q(x[i + half + 1]) << 24);
                }
                out[heads * (hd / 4) + sh] = (amax / 127.0).to_bits();
            }
        }
    }
    out
}
