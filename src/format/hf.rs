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
use crate::config::Lfm2Config;
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
pub(crate) fn open_dir(dir: &Path) -> Result<(HfInfo, Vec<Storage>, BTreeMap<String, TensorEntry>)> {
    let config_path = dir.join("config.json");
    let text = std::fs::read_to_string(&config_path).map_err(|e| Error::io(config_path.display(), e))?;
    let cfg_file = config_path.display().to_string();
    let config = Lfm2Config::from_hf_json(&text, &cfg_file)?;
    let config_json: Value = serde_json::from_str(&text)
        .map_err(|e| Error::format(&cfg_file, format!("malformed JSON: {e}")))?;

    let shards = list_shards(dir)?;
    let mut storages = Vec::with_capacity(shards.len());
    let mut tensors = BTreeMap::new();
    for (i, shard) in shards.iter().enumerate() {
        let storage = Storage::map(shard)?;
        index_safetensors(storage.bytes(), &shard.display().to_string(), i, &mut tensors)?;
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
        let file = index_path.display().to_string();
        let index: Value = serde_json::from_slice(&bytes)
            .map_err(|e| Error::format(&file, format!("malformed JSON: {e}")))?;
        let map = index
            .get("weight_map")
            .and_then(Value::as_object)
            .ok_or_else(|| Error::format(&file, "no `weight_map` object"))?;
        let mut names: Vec<&str> = Vec::new();
        for (tensor, shard) in map {
            let shard = shard
                .as_str()
                .ok_or_else(|| Error::tensor(&file, tensor, "weight_map entry is not a file name"))?;
            if shard.contains('/') || shard.contains('\\') || shard.starts_with('.') {
                return Err(Error::tensor(&file, tensor, format!("shard name `{shard}` is not a plain file name")));
            }
            if !names.contains(&shard) {
                names.push(shard);
            }
        }
        names.sort_unstable();
        if names.is_empty() {
            return Err(Error::format(&file, "`weight_map` is empty"));
        }
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
        return Err(Error::format(dir.display(), "no *.safetensors file in the directory"));
    }
    Ok(shards)
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
    for (hf_name, info) in meta.tensors() {
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
            if shape.len() != 3 || shape[1] != 1 {
                return Err(Error::Shape {
                    file: file.to_string(),
                    tensor: hf_name.clone(),
                    expected: vec![shape.first().copied().unwrap_or(0), 1, shape.last().copied().unwrap_or(0)],
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
            offset: data_start + start,
            len: end - start,
        };
        if out.insert(name.clone(), entry).is_some() {
            return Err(Error::tensor(file, hf_name, format!("`{name}` appears in more than one place")));
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
