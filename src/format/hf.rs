//! Hugging Face directories: `config.json`, `*.safetensors` (one file, or shards listed by
//! `model.safetensors.index.json`), `tokenizer.json`, and the optional `tokenizer_config.json`,
//! `generation_config.json` and `chat_template.jinja`.
//!
//! Tensors are renamed to their GGUF names (spec §3.2); the short-conv kernel `[H, 1, L]`
//! becomes `[H, L]` (same bytes). Only F32, F16 and BF16 tensors are accepted.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors};
use serde_json::Value;

use super::{QuantFormat, Storage, TensorEntry};
use crate::config::{LayerKind, Lfm2Config, limits, swiglu_ff};
use crate::error::{Error, Result};
use crate::tokenizer::Tokenizer;

/// What an HF directory holds besides tensors.
#[derive(Clone, Debug)]
pub struct HfInfo {
    pub dir: PathBuf,
    pub config: Lfm2Config,
    /// `config.json` as read.
    pub config_json: Value,
    /// The safetensors files, in storage order.
    pub shards: Vec<PathBuf>,
}

impl HfInfo {
    /// Loads the tokenizer from `tokenizer.json` plus the optional side files.
    pub fn tokenizer(&self) -> Result<Tokenizer> {
        let json_path = self.dir.join("tokenizer.json");
        let json = std::fs::read(&json_path).map_err(|e| Error::io(json_path.display(), e))?;
        let cfg = read_optional(&self.dir.join("tokenizer_config.json"))?;
        let gen_cfg = read_optional(&self.dir.join("generation_config.json"))?;
        let tok = Tokenizer::from_hf_files(
            &json,
            cfg.as_deref(),
            gen_cfg.as_deref(),
            &json_path.display().to_string(),
        )?;
        let jinja = self.dir.join("chat_template.jinja");
        match read_optional(&jinja)? {
            Some(t) => {
                let t = String::from_utf8(t)
                    .map_err(|_| Error::format(jinja.display(), "not valid UTF-8"))?;
                Ok(tok.with_chat_template(Some(t)))
            }
            None => Ok(tok),
        }
    }

    /// `config.json` entries as key/value lines.
    pub fn summary(&self) -> Vec<(String, String)> {
        let mut out = vec![(
            "safetensors files".to_string(),
            self.shards
                .iter()
                .filter_map(|p| p.file_name())
                .map(|n| n.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(", "),
        )];
        if let Some(obj) = self.config_json.as_object() {
            out.extend(obj.iter().map(|(k, v)| (k.clone(), v.to_string())));
        }
        out
    }
}

fn read_optional(path: &Path) -> Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path.display(), e)),
    }
}

/// Opens a directory: config, then every safetensors file, indexed by GGUF name.
pub(crate) fn open_dir(
    dir: &Path,
) -> Result<(HfInfo, Vec<Storage>, BTreeMap<String, TensorEntry>)> {
    let config_path = dir.join("config.json");
    let text =
        std::fs::read_to_string(&config_path).map_err(|e| Error::io(config_path.display(), e))?;
    let cfg_file = config_path.display().to_string();
    let config = Lfm2Config::from_hf_json(&text, &cfg_file)?;
    let config_json: Value = serde_json::from_str(&text)
        .map_err(|e| Error::format(&cfg_file, format!("malformed JSON: {e}")))?;

    let shards = list_shards(dir)?;
    let mut storages = Vec::with_capacity(shards.len());
    let mut tensors = BTreeMap::new();
    for (i, shard) in shards.iter().enumerate() {
        let storage = Storage::map(shard)?;
        index_safetensors(
            storage.bytes().unwrap_or_default(),
            &shard.display().to_string(),
            i,
            &mut tensors,
        )?;
        storages.push(storage);
    }
    let info = HfInfo {
        dir: dir.to_path_buf(),
        config,
        config_json,
        shards,
    };
    Ok((info, storages, tensors))
}

/// The shard list: from `model.safetensors.index.json` when present (every listed file must
/// exist), else every `*.safetensors` in the directory.
fn list_shards(dir: &Path) -> Result<Vec<PathBuf>> {
    let index_path = dir.join("model.safetensors.index.json");
    if let Some(bytes) = read_optional(&index_path)? {
        let names = parse_shard_index(&bytes, &index_path.display().to_string())?;
        return Ok(names.into_iter().map(|n| dir.join(n)).collect());
    }
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir.display(), e))?;
    let mut shards = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| Error::io(dir.display(), e))?.path();
        if path.extension().is_some_and(|e| e == "safetensors") {
            shards.push(path);
        }
    }
    shards.sort();
    if shards.is_empty() {
        return Err(Error::format(
            dir.display(),
            "no *.safetensors file in the directory",
        ));
    }
    Ok(shards)
}

/// The shard file names a `model.safetensors.index.json` lists (sorted, each once). Each must be
/// a plain file name (no directory, not hidden), so a hostile index cannot reach outside the
/// model directory.
pub fn parse_shard_index(bytes: &[u8], file: &str) -> Result<Vec<String>> {
    let index: Value = serde_json::from_slice(bytes)
        .map_err(|e| Error::format(file, format!("malformed JSON: {e}")))?;
    let map = index
        .get("weight_map")
        .and_then(Value::as_object)
        .ok_or_else(|| Error::format(file, "no `weight_map` object"))?;
    let mut names: Vec<&str> = Vec::new();
    for (tensor, shard) in map {
        let shard = shard
            .as_str()
            .ok_or_else(|| Error::tensor(file, tensor, "weight_map entry is not a file name"))?;
        if shard.is_empty()
            || shard.contains('/')
            || shard.contains(['\\', ':'])
            || shard.starts_with('.')
        {
            return Err(Error::tensor(
                file,
                tensor,
                format!("shard name `{shard}` is not a plain file name"),
            ));
        }
        names.push(shard);
    }
    names.sort_unstable();
    names.dedup();
    if names.is_empty() {
        return Err(Error::format(file, "`weight_map` is empty"));
    }
    Ok(names.into_iter().map(str::to_string).collect())
}

/// Adds the tensors of one safetensors file (`bytes`) to `out`, renamed to GGUF names.
/// Tensors that are not part of LFM2 (unknown names) are skipped with a warning.
pub fn index_safetensors(
    bytes: &[u8],
    file: &str,
    storage: usize,
    out: &mut BTreeMap<String, TensorEntry>,
) -> Result<()> {
    let (header_len, meta) = SafeTensors::read_metadata(bytes)
        .map_err(|e| Error::format(file, format!("invalid safetensors file: {e}")))?;
    let data_start = 8 + header_len;
    let mut infos: Vec<_> = meta.tensors().into_iter().collect();
    infos.sort_by(|a, b| a.0.cmp(&b.0));
    for (hf_name, info) in infos {
        let Some(name) = hf_to_gguf_name(&hf_name) else {
            log::warn!("{file}: skipping tensor `{hf_name}` (not an LFM2 weight)");
            continue;
        };
        let format = match info.dtype {
            Dtype::F32 => QuantFormat::F32,
            Dtype::F16 => QuantFormat::F16,
            Dtype::BF16 => QuantFormat::BF16,
            other => {
                return Err(Error::unsupported(
                    "tensor dtype",
                    format!("{file}: tensor `{hf_name}` is {other:?} (expected F32, F16 or BF16)"),
                ));
            }
        };
        let mut shape = info.shape.clone();
        if name.ends_with("shortconv.conv.weight") {
            if shape.len() != 3 || shape.get(1) != Some(&1) {
                return Err(Error::Shape {
                    file: file.to_string(),
                    tensor: hf_name.clone(),
                    expected: vec![
                        shape.first().copied().unwrap_or(0),
                        1,
                        shape.last().copied().unwrap_or(0),
                    ],
                    got: shape,
                });
            }
            shape.remove(1);
        }
        let (start, end) = info.data_offsets;
        let entry = TensorEntry {
            name: name.clone(),
            shape,
            format,
            storage,
            offset: (data_start + start) as u64,
            len: end - start,
        };
        if out.insert(name.clone(), entry).is_some() {
            return Err(Error::tensor(
                file,
                hf_name,
                format!("`{name}` appears in more than one place"),
            ));
        }
    }
    Ok(())
}

/// Maps a Hugging Face LFM2 tensor name to its GGUF name (spec §3.2).
pub fn hf_to_gguf_name(name: &str) -> Option<String> {
    match name {
        "model.embed_tokens.weight" => return Some("token_embd.weight".into()),
        "model.embedding_norm.weight" => return Some("token_embd_norm.weight".into()),
        "lm_head.weight" => return Some("output.weight".into()),
        _ => {}
    }
    let rest = name.strip_prefix("model.layers.")?;
    let (idx, rest) = rest.split_once('.')?;
    let idx: usize = idx.parse().ok()?;
    let gguf = match rest {
        "operator_norm.weight" => "attn_norm.weight",
        "ffn_norm.weight" => "ffn_norm.weight",
        "feed_forward.w1.weight" => "ffn_gate.weight",
        "feed_forward.w3.weight" => "ffn_up.weight",
        "feed_forward.w2.weight" => "ffn_down.weight",
        "conv.conv.weight" => "shortconv.conv.weight",
        "conv.in_proj.weight" => "shortconv.in_proj.weight",
        "conv.out_proj.weight" => "shortconv.out_proj.weight",
        "self_attn.q_proj.weight" => "attn_q.weight",
        "self_attn.k_proj.weight" => "attn_k.weight",
        "self_attn.v_proj.weight" => "attn_v.weight",
        "self_attn.out_proj.weight" => "attn_output.weight",
        "self_attn.q_layernorm.weight" => "attn_q_norm.weight",
        "self_attn.k_layernorm.weight" => "attn_k_norm.weight",
        _ => return None,
    };
    Some(format!("blk.{idx}.{gguf}"))
}

impl Lfm2Config {
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
        if let Some(mt) = j.str_field("model_type")?
            && mt != "lfm2"
        {
            return Err(Error::unsupported(
                "architecture",
                format!("{file}: model_type `{mt}`"),
            ));
        }
        if j.bool_field("conv_bias", false)? {
            return Err(Error::unsupported(
                "config",
                format!("{file}: conv_bias = true"),
            ));
        }
        let hidden = j.usize_field("hidden_size", 2560)?;
        let n_layers = j.usize_field("num_hidden_layers", 32)?;
        if n_layers > limits::MAX_LAYERS {
            return Err(Error::config(
                file,
                "num_hidden_layers",
                format!("{n_layers} is implausible"),
            ));
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
                Error::config(
                    file,
                    "block_ffn_dim_multiplier",
                    format!("expected a number, got {v}"),
                )
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
                if num_heads == 0 || !hidden.is_multiple_of(num_heads) {
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
                format!(
                    "has {} entries but num_hidden_layers is {n_layers}",
                    arr.len()
                ),
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
            if let Some(k) = kinds.get_mut(i) {
                *k = LayerKind::Attention;
            }
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
    let params = rp
        .get("full_attention")
        .filter(|v| v.is_object())
        .unwrap_or(rp);
    if let Some(t) = params.get("rope_type").and_then(Value::as_str)
        && t != "default"
    {
        return Err(Error::unsupported(
            "RoPE scaling",
            format!("{}: rope_parameters.rope_type `{t}`", j.file),
        ));
    }
    match params.get("rope_theta") {
        Some(v) => v.as_f64().ok_or_else(|| {
            Error::config(
                j.file,
                "rope_parameters.rope_theta",
                format!("expected a number, got {v}"),
            )
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
                v.as_u64()
                    .and_then(|x| usize::try_from(x).ok())
                    .ok_or_else(|| {
                        Error::config(
                            self.file,
                            key,
                            format!("expected a non-negative integer, got {v}"),
                        )
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
                v.as_f64().ok_or_else(|| {
                    Error::config(self.file, key, format!("expected a number, got {v}"))
                })
            })
            .transpose()
    }
    fn f64_field(&self, key: &str, default: f64) -> Result<f64> {
        Ok(self.opt_f64(key)?.unwrap_or(default))
    }
    fn bool_field(&self, key: &str, default: bool) -> Result<bool> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.as_bool().ok_or_else(|| {
                Error::config(self.file, key, format!("expected true/false, got {v}"))
            }),
        }
    }
    fn str_field(&self, key: &str) -> Result<Option<&str>> {
        self.get(key)
            .map(|v| {
                v.as_str().ok_or_else(|| {
                    Error::config(self.file, key, format!("expected a string, got {v}"))
                })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_gguf() {
        assert_eq!(
            hf_to_gguf_name("model.layers.12.conv.conv.weight").as_deref(),
            Some("blk.12.shortconv.conv.weight")
        );
        assert_eq!(
            hf_to_gguf_name("model.layers.3.self_attn.out_proj.weight").as_deref(),
            Some("blk.3.attn_output.weight")
        );
        assert_eq!(
            hf_to_gguf_name("model.layers.0.feed_forward.w3.weight").as_deref(),
            Some("blk.0.ffn_up.weight")
        );
        assert_eq!(
            hf_to_gguf_name("lm_head.weight").as_deref(),
            Some("output.weight")
        );
        assert_eq!(hf_to_gguf_name("model.layers.x.ffn_norm.weight"), None);
        assert_eq!(hf_to_gguf_name("model.layers.0.conv.conv.bias"), None);
    }

    #[test]
    fn legacy_keys_win_and_defaults_apply() {
        let cfg = r#"{"model_type": "lfm2", "hidden_size": 64, "num_attention_heads": 4,
            "num_key_value_heads": 2, "num_hidden_layers": 4, "vocab_size": 100,
            "block_ff_dim": 96, "intermediate_size": 1000, "block_multiple_of": 32,
            "full_attn_idxs": [1, 3], "tie_embedding": false, "tie_word_embeddings": true,
            "theta": 5000.0, "rope_theta": 7.0, "eos_token_id": [7, 2]}"#;
        let c = Lfm2Config::from_hf_json(cfg, "c.json").unwrap();
        assert_eq!(c.ff_size, 64); // int(2 * 96 / 3) = 64, already a multiple of 32
        assert_eq!(c.layer_pattern(), "cAcA");
        assert!(!c.tie_embeddings);
        assert_eq!(c.rope_theta, 5000.0);
        assert_eq!(
            (c.head_dim, c.conv_kernel, c.eos_token_id),
            (16, 3, Some(7))
        );

        let cfg = r#"{"hidden_size": 64, "num_attention_heads": 4, "num_hidden_layers": 2,
            "layer_types": ["conv", "full_attention"], "full_attn_idxs": [0, 1], "head_dim": 32,
            "rope_parameters": {"rope_theta": 250.0, "rope_type": "default"}}"#;
        let c = Lfm2Config::from_hf_json(cfg, "c.json").unwrap();
        assert_eq!(c.layer_pattern(), "cA");
        assert_eq!((c.head_dim, c.rope_theta, c.ff_size), (32, 250.0, 8192));
        assert!(c.tie_embeddings);

        let c = Lfm2Config::from_hf_json(r#"{"num_hidden_layers": 2}"#, "c.json").unwrap();
        assert_eq!(c.layer_pattern(), "AA");

        for (bad, field) in [
            (
                r#"{"layer_types": ["conv", "mamba"], "num_hidden_layers": 2}"#,
                "layer_types",
            ),
            (
                r#"{"full_attn_idxs": [9], "num_hidden_layers": 2}"#,
                "full_attn_idxs",
            ),
            (
                r#"{"hidden_size": 10, "num_attention_heads": 4}"#,
                "num_attention_heads",
            ),
            (r#"{"norm_eps": "small"}"#, "norm_eps"),
            (r#"[1, 2]"#, "JSON object"),
        ] {
            let msg = Lfm2Config::from_hf_json(bad, "c.json")
                .unwrap_err()
                .to_string();
            assert!(msg.contains("c.json") && msg.contains(field), "{msg}");
        }
    }
}
