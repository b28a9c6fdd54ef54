//! The model configuration, as read from GGUF metadata or a Hugging Face `config.json`.
//! See docs/lfm2-spec.md §1 and §3.1. GGUF metadata is read here ([`Lfm2Config::from_gguf`]);
//! `config.json` in `format::hf` ([`Lfm2Config::from_hf_json`]).

use crate::error::{Error, Result};
use crate::format::gguf::{GgufFile, GgufValue};

/// What a layer's mixer is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LayerKind {
    /// Gated short convolution (kernel `conv_kernel`, rolling state of `conv_kernel - 1` columns).
    Conv,
    /// Grouped-query attention with a KV cache.
    Attention,
}

/// LFM2 hyper-parameters, with the SwiGLU width already adjusted (`ff_size` = GGUF
/// `feed_forward_length`).
#[derive(Clone, Debug, PartialEq)]
pub struct Lfm2Config {
    pub vocab_size: usize,
    pub hidden_size: usize,
    /// Effective SwiGLU width (post auto-adjust).
    pub ff_size: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    /// One entry per layer.
    pub layers: Vec<LayerKind>,
    pub norm_eps: f32,
    pub rope_theta: f32,
    /// Short-conv kernel size L (3 in every release).
    pub conv_kernel: usize,
    /// Trained/maximum context as declared by the file.
    pub max_position_embeddings: usize,
    /// `true` when the output head is the token embedding.
    pub tie_embeddings: bool,
    pub bos_token_id: Option<u32>,
    pub eos_token_id: Option<u32>,
    pub pad_token_id: Option<u32>,
}

impl Lfm2Config {
    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }
    pub fn num_attention_layers(&self) -> usize {
        self.layers
            .iter()
            .filter(|k| **k == LayerKind::Attention)
            .count()
    }
    pub fn num_conv_layers(&self) -> usize {
        self.layers
            .iter()
            .filter(|k| **k == LayerKind::Conv)
            .count()
    }
    /// Width of the K (and V) projection: `num_kv_heads * head_dim`.
    pub fn kv_dim(&self) -> usize {
        self.num_kv_heads * self.head_dim
    }
    /// Width of the Q projection: `num_heads * head_dim`.
    pub fn q_dim(&self) -> usize {
        self.num_heads * self.head_dim
    }
    /// KV-cache elements per token over all attention layers (K and V).
    pub fn kv_elems_per_token(&self) -> usize {
        2 * self.num_attention_layers() * self.kv_dim()
    }
    /// Compact layer pattern, e.g. `ccAccA` (c = conv, A = attention).
    pub fn layer_pattern(&self) -> String {
        self.layers
            .iter()
            .map(|k| match k {
                LayerKind::Conv => 'c',
                LayerKind::Attention => 'A',
            })
            .collect()
    }
}

/// The SwiGLU width rule of `Lfm2MLP` (spec §1.1): from the raw `intermediate_size`
/// (`block_ff_dim`), the effective FFN width.
pub fn swiglu_ff(
    intermediate: usize,
    auto_adjust: bool,
    multiplier: Option<f64>,
    multiple_of: usize,
) -> usize {
    // Saturating: a width read from a file may be anything; `validate` rejects the result.
    let mut ff = intermediate;
    if auto_adjust {
        ff = ff / 3 * 2 + ff % 3 * 2 / 3; // 2 * ff / 3 without overflow
        if let Some(m) = multiplier {
            ff = (m * ff as f64) as usize;
            if multiple_of > 0 {
                ff = multiple_of.saturating_mul(ff.div_ceil(multiple_of));
            }
        }
    }
    ff
}

/// Upper bounds of plausible dimensions; a file beyond them is rejected as corrupt.
pub mod limits {
    pub const MAX_HIDDEN: usize = 65536;
    pub const MAX_VOCAB: usize = 4 << 20;
    pub const MAX_LAYERS: usize = 1024;
    pub const MAX_HEADS: usize = 1024;
    pub const MAX_HEAD_DIM: usize = 1024;
    pub const MAX_FF: usize = 1 << 20;
    pub const MAX_CONV_KERNEL: usize = 64;
    pub const MAX_CONTEXT: usize = 1 << 24;
}

impl Lfm2Config {
    /// Checks that every dimension is plausible and consistent. Errors are `Error::Config`
    /// naming `file` and the field.
    pub fn validate(&self, file: &str) -> Result<()> {
        use limits::*;
        let range = |field: &str, v: usize, max: usize| -> Result<()> {
            if v == 0 || v > max {
                return Err(Error::config(
                    file,
                    field,
                    format!("{v} is outside 1..={max}"),
                ));
            }
            Ok(())
        };
        range("vocab_size", self.vocab_size, MAX_VOCAB)?;
        range("hidden_size", self.hidden_size, MAX_HIDDEN)?;
        range("ff_size", self.ff_size, MAX_FF)?;
        range("num_layers", self.layers.len(), MAX_LAYERS)?;
        range("conv_kernel", self.conv_kernel, MAX_CONV_KERNEL)?;
        range(
            "max_position_embeddings",
            self.max_position_embeddings,
            MAX_CONTEXT,
        )?;
        if self.num_attention_layers() == 0 {
            // Unused, but sizes are computed from them: bounded all the same.
            for (field, v, max) in [
                ("num_heads", self.num_heads, MAX_HEADS),
                ("num_kv_heads", self.num_kv_heads, MAX_HEADS),
                ("head_dim", self.head_dim, MAX_HEAD_DIM),
            ] {
                if v > max {
                    return Err(Error::config(
                        file,
                        field,
                        format!("{v} is more than {max}"),
                    ));
                }
            }
        } else {
            range("num_heads", self.num_heads, MAX_HEADS)?;
            range("num_kv_heads", self.num_kv_heads, self.num_heads)?;
            range("head_dim", self.head_dim, MAX_HEAD_DIM)?;
            if !self.num_heads.is_multiple_of(self.num_kv_heads) {
                return Err(Error::config(
                    file,
                    "num_kv_heads",
                    format!(
                        "{} does not divide num_heads {}",
                        self.num_kv_heads, self.num_heads
                    ),
                ));
            }
            if !self.head_dim.is_multiple_of(2) {
                return Err(Error::config(
                    file,
                    "head_dim",
                    format!("{} is odd (RoPE rotates pairs)", self.head_dim),
                ));
            }
            if self.q_dim() > 4 * MAX_HIDDEN {
                return Err(Error::config(
                    file,
                    "head_dim",
                    format!(
                        "num_heads {} x head_dim {} = {} is implausible",
                        self.num_heads,
                        self.head_dim,
                        self.q_dim()
                    ),
                ));
            }
        }
        if !(self.norm_eps.is_finite() && self.norm_eps > 0.0 && self.norm_eps < 1.0) {
            return Err(Error::config(
                file,
                "norm_eps",
                format!("{} is not in (0, 1)", self.norm_eps),
            ));
        }
        if !(self.rope_theta.is_finite() && self.rope_theta > 0.0) {
            return Err(Error::config(
                file,
                "rope_theta",
                format!("{} is not positive", self.rope_theta),
            ));
        }
        for (field, id) in [
            ("bos_token_id", self.bos_token_id),
            ("eos_token_id", self.eos_token_id),
            ("pad_token_id", self.pad_token_id),
        ] {
            if let Some(id) = id.filter(|&id| id as usize >= self.vocab_size) {
                return Err(Error::config(
                    file,
                    field,
                    format!("{id} is not below vocab_size {}", self.vocab_size),
                ));
            }
        }
        Ok(())
    }
}

impl Lfm2Config {
    /// From GGUF metadata (spec §3.1). `general.architecture` must be `lfm2`. The per-layer
    /// `head_count_kv` array gives the layer kinds (0 = conv). When it is a scalar (it cannot
    /// describe a hybrid stack), each layer's kind comes from the tensors present.
    pub fn from_gguf(g: &GgufFile) -> Result<Lfm2Config> {
        let file = g.file_name.as_str();
        let arch = g.architecture()?;
        if arch != "lfm2" {
            return Err(Error::unsupported(
                "architecture",
                format!("{file}: `{arch}` (expected `lfm2`)"),
            ));
        }
        let key = |k: &str| format!("lfm2.{k}");
        let n_layers = g.req_u32(&key("block_count"))? as usize;
        if n_layers == 0 || n_layers > limits::MAX_LAYERS {
            return Err(Error::config(
                file,
                key("block_count"),
                format!("{n_layers} is outside 1..=1024"),
            ));
        }
        let hidden = g.req_u32(&key("embedding_length"))? as usize;
        let ff_size = per_layer_uniform(g, &key("feed_forward_length"), n_layers)?;
        let num_heads = per_layer_uniform(g, &key("attention.head_count"), n_layers)?;
        let kv_key = key("attention.head_count_kv");
        let (layers, num_kv_heads) = match g.get(&kv_key) {
            Some(GgufValue::Array(..)) => {
                let kv = g.get_u32_arr(&kv_key)?.unwrap_or_default();
                if kv.len() != n_layers {
                    return Err(Error::config(
                        file,
                        kv_key,
                        format!("has {} entries but block_count is {n_layers}", kv.len()),
                    ));
                }
                let nkv = uniform_nonzero(file, &kv_key, &kv)?;
                let kinds = kv
                    .iter()
                    .map(|&n| {
                        if n == 0 {
                            LayerKind::Conv
                        } else {
                            LayerKind::Attention
                        }
                    })
                    .collect();
                (kinds, nkv)
            }
            Some(_) => {
                let nkv = g.req_u32(&kv_key)? as usize;
                (layer_kinds_from_tensors(g, n_layers, nkv)?, nkv)
            }
            None => (layer_kinds_from_tensors(g, n_layers, num_heads)?, num_heads),
        };
        let head_dim = match g.get_u32(&key("attention.key_length"))? {
            Some(hd) => hd as usize,
            None => {
                if num_heads == 0 || !hidden.is_multiple_of(num_heads) {
                    return Err(Error::config(
                        file,
                        key("attention.head_count"),
                        format!("{num_heads} does not divide embedding_length {hidden}"),
                    ));
                }
                hidden / num_heads
            }
        };
        let vocab_size = match g.get_u32(&key("vocab_size"))? {
            Some(v) => v as usize,
            None => match g.get_arr("tokenizer.ggml.tokens")? {
                Some(t) => t.len(),
                None => g
                    .tensor("token_embd.weight")
                    .and_then(|t| t.ne.get(1).copied())
                    .and_then(|v| usize::try_from(v).ok())
                    .ok_or_else(|| Error::config(file, key("vocab_size"), "missing"))?,
            },
        };
        let rope_theta = match g.get_f32(&key("rope.freq_base"))? {
            Some(t) => t,
            None => {
                log::warn!("{file}: no lfm2.rope.freq_base, using llama.cpp's default 10000");
                10000.0
            }
        };
        Ok(Lfm2Config {
            vocab_size,
            hidden_size: hidden,
            ff_size,
            num_heads,
            num_kv_heads,
            head_dim,
            layers,
            norm_eps: g.req_f32(&key("attention.layer_norm_rms_epsilon"))?,
            rope_theta,
            conv_kernel: g.req_u32(&key("shortconv.l_cache"))? as usize,
            max_position_embeddings: g.req_u32(&key("context_length"))? as usize,
            tie_embeddings: !g.has_tensor("output.weight"),
            bos_token_id: g.get_u32("tokenizer.ggml.bos_token_id")?,
            eos_token_id: g.get_u32("tokenizer.ggml.eos_token_id")?,
            pad_token_id: g.get_u32("tokenizer.ggml.padding_token_id")?,
        })
    }
}

/// A key that may be a scalar or a per-layer array whose non-zero entries all agree.
fn per_layer_uniform(g: &GgufFile, key: &str, n_layers: usize) -> Result<usize> {
    match g.get(key) {
        Some(GgufValue::Array(..)) => {
            let v = g.get_u32_arr(key)?.unwrap_or_default();
            if v.len() != n_layers {
                return Err(Error::config(
                    &g.file_name,
                    key,
                    format!("has {} entries but block_count is {n_layers}", v.len()),
                ));
            }
            uniform_nonzero(&g.file_name, key, &v)
        }
        _ => Ok(g.req_u32(key)? as usize),
    }
}

fn uniform_nonzero(file: &str, key: &str, v: &[u32]) -> Result<usize> {
    let mut it = v.iter().copied().filter(|&n| n != 0);
    let first = it.next().unwrap_or(0);
    if let Some(other) = it.find(|&n| n != first) {
        return Err(Error::unsupported(
            "per-layer dimensions",
            format!("{file}: `{key}` varies across layers ({first} and {other})"),
        ));
    }
    Ok(first as usize)
}

/// Layer kinds from the tensors present: `shortconv.*` = conv, `attn_q` = attention.
fn layer_kinds_from_tensors(g: &GgufFile, n_layers: usize, nkv: usize) -> Result<Vec<LayerKind>> {
    let file = &g.file_name;
    (0..n_layers)
        .map(|i| {
            let conv = g.has_tensor(&format!("blk.{i}.shortconv.conv.weight"));
            let attn = g.has_tensor(&format!("blk.{i}.attn_q.weight"));
            match (conv, attn) {
                (true, false) => Ok(LayerKind::Conv),
                (false, true) if nkv > 0 => Ok(LayerKind::Attention),
                (false, true) => Err(Error::config(
                    file,
                    "lfm2.attention.head_count_kv",
                    format!("is 0 but layer {i} has attention tensors"),
                )),
                _ => Err(Error::config(
                    file,
                    "lfm2.attention.head_count_kv",
                    format!(
                        "is not per-layer, and layer {i} has {} short-conv and attention tensors",
                        if conv { "both" } else { "neither" }
                    ),
                )),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swiglu_width_rule_matches_released_sizes() {
        for (raw, ff) in [
            (6656, 4608),
            (10240, 6912),
            (10368, 6912),
            (12288, 8192),
            (16128, 10752),
        ] {
            assert_eq!(swiglu_ff(raw, true, Some(1.0), 256), ff, "{raw}");
        }
        assert_eq!(swiglu_ff(76, true, Some(1.0), 8), 56);
        assert_eq!(swiglu_ff(100, true, None, 256), 66);
        assert_eq!(swiglu_ff(48, false, Some(1.0), 256), 48);
    }

    #[test]
    fn validate_names_the_field() {
        let ok = Lfm2Config {
            vocab_size: 512,
            hidden_size: 64,
            ff_size: 128,
            num_heads: 4,
            num_kv_heads: 2,
            head_dim: 16,
            layers: vec![LayerKind::Conv, LayerKind::Attention],
            norm_eps: 1e-5,
            rope_theta: 1e6,
            conv_kernel: 3,
            max_position_embeddings: 128,
            tie_embeddings: true,
            bos_token_id: Some(1),
            eos_token_id: Some(7),
            pad_token_id: Some(0),
        };
        assert!(ok.validate("m").is_ok());
        let bad = |f: &dyn Fn(&mut Lfm2Config), field: &str| {
            let mut c = ok.clone();
            f(&mut c);
            let msg = c.validate("m.gguf").unwrap_err().to_string();
            assert!(msg.contains("m.gguf") && msg.contains(field), "{msg}");
        };
        bad(&|c| c.hidden_size = 100_000, "hidden_size");
        bad(&|c| c.vocab_size = 0, "vocab_size");
        bad(&|c| c.num_kv_heads = 3, "num_kv_heads");
        bad(&|c| c.head_dim = 15, "head_dim");
        bad(&|c| c.layers.clear(), "num_layers");
        bad(&|c| c.norm_eps = f32::NAN, "norm_eps");
        bad(&|c| c.eos_token_id = Some(600), "eos_token_id");
    }
}
