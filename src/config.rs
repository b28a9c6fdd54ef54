//! The model configuration, as read from GGUF metadata or a Hugging Face `config.json`.
//! See docs/lfm2-spec.md §1 and §3.1.

use serde_json::Value;

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
        self.layers.iter().filter(|k| **k == LayerKind::Attention).count()
    }
    pub fn num_conv_layers(&self) -> usize {
        self.layers.iter().filter(|k| **k == LayerKind::Conv).count()
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
pub fn swiglu_ff(intermediate: usize, auto_adjust: bool, multiplier: Option<f64>, multiple_of: usize) -> usize {
    let mut ff = intermediate;
    if auto_adjust {
        ff = 2 * ff / 3;
        if let Some(m) = multiplier {
            ff = (m * ff as f64) as usize;
            if multiple_of > 0 {
                ff = multiple_of * ff.div_ceil(multiple_of);
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
}

impl Lfm2Config {
    /// Checks that every dimension is plausible and consistent. Errors are `Error::Config`
    /// naming `file` and the field.
    pub fn validate(&self, file: &str) -> Result<()> {
        use limits::*;
        let range = |field: &str, v: usize, max: usize| -> Result<()> {
            if v == 0 || v > max {
                return Err(Error::config(file, field, format!("{v} is outside 1..={max}")));
            }
            Ok(())
        };
        range("vocab_size", self.vocab_size, MAX_VOCAB)?;
        range("hidden_size", self.hidden_size, MAX_HIDDEN)?;
        range("ff_size", self.ff_size, MAX_FF)?;
        range("num_layers", self.layers.len(), MAX_LAYERS)?;
        range("conv_kernel", self.conv_kernel, MAX_CONV_KERNEL)?;
        if self.num_attention_layers() > 0 {
            range("num_heads", self.num_heads, MAX_HEADS)?;
            range("num_kv_heads", self.num_kv_heads, self.num_heads)?;
            range("head_dim", self.head_dim, MAX_HEAD_DIM)?;
            if self.num_heads % self.num_kv_heads != 0 {
                return Err(Error::config(
                    file,
                    "num_kv_heads",
                    format!("{} does not divide num_heads {}", self.num_kv_heads, self.num_heads),
                ));
            }
            if self.head_dim % 2 != 0 {
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
            return Err(Error::config(file, "norm_eps", format!("{} is not in (0, 1)", self.norm_eps)));
        }
        if !(self.rope_theta.is_finite() && self.rope_theta > 0.0) {
            return Err(Error::config(file, "rope_theta", format!("{} is not positive", self.rope_theta)));
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

    /// From a Hugging Face `config.json` (text). Follows `Lfm2Config.__init__`: missing keys
    /// take transformers' defaults, legacy keys (`block_ff_dim`, `tie_embedding`, `theta`)
    /// win over current ones, `layer_types` over `full_attn_idxs`.
    pub fn from_hf_json(text: &str, file: &str) -> Result<Lfm2Config> {
        let value: Value = serde_json::from_str(text)
            .map_err(|e| Error::format(file, format!("malformed JSON: {e}")))?;
        let obj = value
            .as_object()
            .ok_or_else(|| Error::format(file, "expected a JSON object at the top level"))?;
        let j = Json { obj, file };
        if let Some(mt) = j.str_field("model_type")? {
            if mt != "lfm2" {
                return Err(Error::unsupported("architecture", format!("{file}: model_type `{mt}`")));
            }
        }
        if j.bool_field("conv_bias", false)? {
            return Err(Error::unsupported("config", format!("{file}: conv_bias = true")));
        }
        let hidden = j.usize_field("hidden_size", 2560)?;
        let n_layers = j.usize_field("num_hidden_layers", 32)?;
        if n_layers > limits::MAX_LAYERS {
            return Err(Error::config(file, "num_hidden_layers", format!("{n_layers} is implausible")));
        }
        let num_heads = j.usize_field("num_attention_heads", 32)?;
        let intermediate = match j.opt_usize("block_ff_dim")? {
            Some(v) => v,
            None => j.usize_field("intermediate_size", 12288)?,
        };
        let multiplier = match obj.get("block_ffn_dim_multiplier") {
            None => Some(1.0),
            Some(Value::Null) => None,
            Some(v) => Some(v.as_f64().ok_or_else(|| {
                Error::config(file, "block_ffn_dim_multiplier", format!("expected a number, got {v}"))
            })?),
        };
        let ff_size = swiglu_ff(
            intermediate,
            j.bool_field("block_auto_adjust_ff_dim", true)?,
            multiplier,
            j.usize_field("block_multiple_of", 256)?,
        );
        let head_dim = match j.opt_usize("head_dim")? {
            Some(hd) => hd,
            None => {
                if num_heads == 0 || hidden % num_heads != 0 {
                    return Err(Error::config(
                        file,
                        "num_attention_heads",
                        format!("{num_heads} does not divide hidden_size {hidden}"),
                    ));
                }
                hidden / num_heads
            }
        };
        let tie_embeddings = match obj.get("tie_embedding") {
            Some(Value::Bool(b)) => *b,
            _ => j.bool_field("tie_word_embeddings", true)?,
        };
        Ok(Lfm2Config {
            vocab_size: j.usize_field("vocab_size", 65536)?,
            hidden_size: hidden,
            ff_size,
            num_heads,
            num_kv_heads: j.usize_field("num_key_value_heads", 8)?,
            head_dim,
            layers: hf_layer_kinds(&j, n_layers)?,
            norm_eps: j.f64_field("norm_eps", 1e-5)? as f32,
            rope_theta: hf_rope_theta(&j)? as f32,
            conv_kernel: j.usize_field("conv_L_cache", 3)?,
            max_position_embeddings: j.usize_field("max_position_embeddings", 128_000)?,
            tie_embeddings,
            bos_token_id: j.token_id("bos_token_id")?,
            eos_token_id: j.token_id("eos_token_id")?,
            pad_token_id: j.token_id("pad_token_id")?,
        })
    }
}

/// `layer_types`, else `full_attn_idxs`, else all attention (transformers' rule).
fn hf_layer_kinds(j: &Json<'_>, n_layers: usize) -> Result<Vec<LayerKind>> {
    let file = j.file;
    if let Some(v) = j.obj.get("layer_types").filter(|v| !v.is_null()) {
        let arr = v
            .as_array()
            .ok_or_else(|| Error::config(file, "layer_types", "expected a list of strings"))?;
        if arr.len() != n_layers {
            return Err(Error::config(
                file,
                "layer_types",
                format!("has {} entries but num_hidden_layers is {n_layers}", arr.len()),
            ));
        }
        return arr
            .iter()
            .enumerate()
            .map(|(i, t)| match t.as_str() {
                Some("conv") => Ok(LayerKind::Conv),
                Some("full_attention" | "attention") => Ok(LayerKind::Attention),
                _ => Err(Error::config(
                    file,
                    "layer_types",
                    format!("entry {i} is {t}, expected \"conv\" or \"full_attention\""),
                )),
            })
            .collect();
    }
    if let Some(v) = j.obj.get("full_attn_idxs").filter(|v| !v.is_null()) {
        let arr = v
            .as_array()
            .ok_or_else(|| Error::config(file, "full_attn_idxs", "expected a list of integers"))?;
        let mut kinds = vec![LayerKind::Conv; n_layers];
        for x in arr {
            let i = x
                .as_u64()
                .and_then(|i| usize::try_from(i).ok())
                .filter(|&i| i < n_layers)
                .ok_or_else(|| {
                    Error::config(
                        file,
                        "full_attn_idxs",
                        format!("entry {x} is not a layer index below {n_layers}"),
                    )
                })?;
            kinds[i] = LayerKind::Attention;
        }
        return Ok(kinds);
    }
    Ok(vec![LayerKind::Attention; n_layers])
}

/// `theta`, else `rope_theta`, else `rope_parameters` (flat or per layer type), else 1e6.
fn hf_rope_theta(j: &Json<'_>) -> Result<f64> {
    for key in ["theta", "rope_theta"] {
        if let Some(v) = j.opt_f64(key)? {
            return Ok(v);
        }
    }
    let Some(rp) = j.obj.get("rope_parameters").filter(|v| !v.is_null()) else {
        return Ok(1e6);
    };
    let params = rp.get("full_attention").filter(|v| v.is_object()).unwrap_or(rp);
    if let Some(t) = params.get("rope_type").and_then(Value::as_str) {
        if t != "default" {
            return Err(Error::unsupported(
                "RoPE scaling",
                format!("{}: rope_parameters.rope_type `{t}`", j.file),
            ));
        }
    }
    match params.get("rope_theta") {
        Some(v) => v.as_f64().ok_or_else(|| {
            Error::config(j.file, "rope_parameters.rope_theta", format!("expected a number, got {v}"))
        }),
        None => Ok(1e6),
    }
}

/// Typed access to a JSON object, with errors naming the file and field.
struct Json<'a> {
    obj: &'a serde_json::Map<String, Value>,
    file: &'a str,
}

impl Json<'_> {
    fn get(&self, key: &str) -> Option<&Value> {
        self.obj.get(key).filter(|v| !v.is_null())
    }
    fn opt_usize(&self, key: &str) -> Result<Option<usize>> {
        self.get(key)
            .map(|v| {
                v.as_u64().and_then(|x| usize::try_from(x).ok()).ok_or_else(|| {
                    Error::config(self.file, key, format!("expected a non-negative integer, got {v}"))
                })
            })
            .transpose()
    }
    fn usize_field(&self, key: &str, default: usize) -> Result<usize> {
        Ok(self.opt_usize(key)?.unwrap_or(default))
    }
    fn opt_f64(&self, key: &str) -> Result<Option<f64>> {
        self.get(key)
            .map(|v| {
                v.as_f64()
                    .ok_or_else(|| Error::config(self.file, key, format!("expected a number, got {v}")))
            })
            .transpose()
    }
    fn f64_field(&self, key: &str, default: f64) -> Result<f64> {
        Ok(self.opt_f64(key)?.unwrap_or(default))
    }
    fn bool_field(&self, key: &str, default: bool) -> Result<bool> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v
                .as_bool()
                .ok_or_else(|| Error::config(self.file, key, format!("expected true/false, got {v}"))),
        }
    }
    fn str_field(&self, key: &str) -> Result<Option<&str>> {
        self.get(key)
            .map(|v| {
                v.as_str()
                    .ok_or_else(|| Error::config(self.file, key, format!("expected a string, got {v}")))
            })
            .transpose()
    }
    /// A token id, or the first of a list of ids.
    fn token_id(&self, key: &str) -> Result<Option<u32>> {
        let v = match self.get(key) {
            None => return Ok(None),
            Some(Value::Array(a)) => match a.first() {
                None => return Ok(None),
                Some(v) => v,
            },
            Some(v) => v,
        };
        v.as_u64()
            .and_then(|x| u32::try_from(x).ok())
            .map(Some)
            .ok_or_else(|| Error::config(self.file, key, format!("expected a token id, got {v}")))
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
            return Err(Error::unsupported("architecture", format!("{file}: `{arch}` (expected `lfm2`)")));
        }
        let key = |k: &str| format!("lfm2.{k}");
        let n_layers = g.req_u32(&key("block_count"))? as usize;
        if n_layers == 0 || n_layers > limits::MAX_LAYERS {
            return Err(Error::config(file, key("block_count"), format!("{n_layers} is outside 1..=1024")));
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
                    .map(|&n| if n == 0 { LayerKind::Conv } else { LayerKind::Attention })
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
                if num_heads == 0 || hidden % num_heads != 0 {
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
