//! The GGUF key/value set llama.cpp's converter writes for an LFM2 Hugging Face directory
//! (spec §3.1, §4), with the value types gguf-py gives them (u32 scalars, f32 floats, an i32
//! array for `head_count_kv`, i32 token types, u32 token ids, bool flags).
//!
//! Tokenizer (`_set_vocab_gpt2` + gguf-py's `SpecialVocab`): tokens in id order up to
//! `vocab_size` (`[PAD<id>]`, type 5 unused, for an id without a token); type 3 (control) for
//! added tokens that are special or look special (`<|...|>`), 4 (user-defined) for other added
//! tokens, 1 otherwise; merges as `"a b"` (spaces inside a part written as U+0120); special
//! ids from `tokenizer_config.json` (`bos_token`... looked up among the added tokens), then
//! `config.json` (`bos_token_id`...); `add_bos/eos_token` from `tokenizer_config.json`, or from a
//! `TemplateProcessing` post-processor; the chat template from `tokenizer_config.json` or
//! `chat_template.jinja`. `tokenizer.ggml.pre` is `lfm2` (the converter identifies LFM2's
//! pre-tokenizer by hash; this writer assumes it). Added tokens are written as their content,
//! without the converter's encode/decode normalisation round trip.

use std::path::Path;

use serde_json::Value;

use super::FileType;
use crate::config::{LayerKind, Lfm2Config};
use crate::error::{Error, Result};
use crate::format::ModelFile;
use crate::format::gguf::{GgufType, GgufValue};

pub(crate) type Kv = Vec<(String, GgufValue)>;

const TOKEN_NORMAL: i32 = 1;
const TOKEN_CONTROL: i32 = 3;
const TOKEN_USER_DEFINED: i32 = 4;
const TOKEN_UNUSED: i32 = 5;

fn s(v: &str) -> GgufValue {
    GgufValue::String(v.to_string())
}

fn u32v(v: usize) -> GgufValue {
    GgufValue::U32(v as u32)
}

/// The converter's `general.size_label` for a parameter count: `170K`, `354M`, `1.2B` (at
/// least two significant digits).
pub fn size_label(n_params: u64) -> String {
    let n = n_params as f64;
    let (scaled, suffix) = match n {
        n if n > 1e12 => (n * 1e-12, "T"),
        n if n > 1e9 => (n * 1e-9, "B"),
        n if n > 1e6 => (n * 1e-6, "M"),
        n => (n * 1e-3, "K"),
    };
    let int_digits = (scaled.round() as u64).to_string();
    let int_digits = int_digits.trim_start_matches('0').len();
    let fix = 2usize.saturating_sub(int_digits);
    format!("{scaled:.fix$}{suffix}")
}

/// `general.*` and `lfm2.*` keys, in the converter's order. `n_params`: total elements of
/// the tensors.
pub(crate) fn arch_kv(config: &Lfm2Config, name: &str, n_params: u64, ftype: FileType) -> Kv {
    let mut kv: Kv = vec![
        ("general.architecture".into(), s("lfm2")),
        ("general.type".into(), s("model")),
        ("general.name".into(), s(name)),
        ("general.size_label".into(), s(&size_label(n_params))),
        ("lfm2.block_count".into(), u32v(config.num_layers())),
        (
            "lfm2.context_length".into(),
            u32v(config.max_position_embeddings),
        ),
        ("lfm2.embedding_length".into(), u32v(config.hidden_size)),
        ("lfm2.feed_forward_length".into(), u32v(config.ff_size)),
        ("lfm2.attention.head_count".into(), u32v(config.num_heads)),
    ];
    let kv_heads = config
        .layers
        .iter()
        .map(|k| {
            GgufValue::I32(match k {
                LayerKind::Conv => 0,
                LayerKind::Attention => config.num_kv_heads as i32,
            })
        })
        .collect();
    kv.push((
        "lfm2.attention.head_count_kv".into(),
        GgufValue::Array(GgufType::I32, kv_heads),
    ));
    if config.num_heads > 0 && config.head_dim * config.num_heads != config.hidden_size {
        kv.push(("lfm2.attention.key_length".into(), u32v(config.head_dim)));
        kv.push(("lfm2.attention.value_length".into(), u32v(config.head_dim)));
    }
    kv.extend([
        (
            "lfm2.rope.freq_base".into(),
            GgufValue::F32(config.rope_theta),
        ),
        (
            "lfm2.attention.layer_norm_rms_epsilon".into(),
            GgufValue::F32(config.norm_eps),
        ),
        (
            "general.file_type".into(),
            GgufValue::U32(ftype.ggml_file_type()),
        ),
        ("lfm2.vocab_size".into(), u32v(config.vocab_size)),
        ("lfm2.shortconv.l_cache".into(), u32v(config.conv_kernel)),
        ("general.quantization_version".into(), GgufValue::U32(2)),
    ]);
    kv
}

/// A byte-level BPE vocabulary as GGUF stores it.
pub(crate) struct GgufVocab {
    pub tokens: Vec<String>,
    pub types: Vec<i32>,
    pub merges: Vec<String>,
    /// (`bos`, id), ... in the order they are written.
    pub special_ids: Vec<(&'static str, u32)>,
    /// (`bos`, add?), ...
    pub add_flags: Vec<(&'static str, bool)>,
    pub chat_template: Option<String>,
}

impl GgufVocab {
    pub(crate) fn to_kv(&self) -> Kv {
        let strs =
            |v: &[String]| GgufValue::Array(GgufType::String, v.iter().map(|t| s(t)).collect());
        let mut kv: Kv = vec![
            ("tokenizer.ggml.model".into(), s("gpt2")),
            ("tokenizer.ggml.pre".into(), s("lfm2")),
            ("tokenizer.ggml.tokens".into(), strs(&self.tokens)),
            (
                "tokenizer.ggml.token_type".into(),
                GgufValue::Array(
                    GgufType::I32,
                    self.types.iter().map(|&t| GgufValue::I32(t)).collect(),
                ),
            ),
        ];
        if !self.merges.is_empty() {
            kv.push(("tokenizer.ggml.merges".into(), strs(&self.merges)));
        }
        for (typ, id) in &self.special_ids {
            let key = match *typ {
                "bos" => "bos_token_id",
                "eos" => "eos_token_id",
                "unk" => "unknown_token_id",
                "sep" => "seperator_token_id", // sic, gguf-py's key
                "pad" => "padding_token_id",
                "mask" => "mask_token_id",
                _ => continue,
            };
            kv.push((format!("tokenizer.ggml.{key}"), GgufValue::U32(*id)));
        }
        for (typ, add) in &self.add_flags {
            if matches!(*typ, "bos" | "eos" | "sep") {
                kv.push((
                    format!("tokenizer.ggml.add_{typ}_token"),
                    GgufValue::Bool(*add),
                ));
            }
        }
        if let Some(t) = &self.chat_template {
            kv.push(("tokenizer.chat_template".into(), s(t)));
        }
        kv
    }
}

/// As the converter's `does_token_look_special`.
fn looks_special(t: &str) -> bool {
    matches!(t, "<pad>" | "<mask>" | "<2mass>" | "[@BOS@]")
        || (t.starts_with("<|") && t.ends_with("|>"))
        || (t.starts_with("<｜") && t.ends_with("｜>"))
        || (t.starts_with("<unused") && t.ends_with('>'))
}

fn read_json(path: &Path, required: bool) -> Result<Option<Value>> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| Error::format(path.display(), format!("malformed JSON: {e}"))),
        Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path.display(), e)),
    }
}

/// A special token's content in `tokenizer_config.json` (a string or `{"content": ...}`).
fn config_token<'a>(cfg: Option<&'a Value>, key: &str) -> Option<&'a str> {
    match cfg?.get(key)? {
        Value::String(s) => Some(s),
        Value::Object(o) => o.get("content")?.as_str(),
        _ => None,
    }
}

/// Reads the tokenizer files of an HF directory.
pub(crate) fn hf_vocab(dir: &Path, vocab_size: usize) -> Result<GgufVocab> {
    let tj_path = dir.join("tokenizer.json");
    let tj_name = tj_path.display().to_string();
    let tj = read_json(&tj_path, true)?.unwrap_or(Value::Null);
    let cfg = read_json(&dir.join("tokenizer_config.json"), false)?;
    let config = read_json(&dir.join("config.json"), false)?;
    let bad = |msg: &str| Error::format(&tj_name, msg.to_string());

    let model = tj.get("model").ok_or_else(|| bad("no `model`"))?;
    if model.get("type").and_then(Value::as_str) != Some("BPE") {
        return Err(Error::unsupported(
            "tokenizer model",
            format!("{tj_name}: only byte-level BPE is supported"),
        ));
    }
    let mut tokens: Vec<Option<String>> = vec![None; vocab_size];
    let mut types = vec![TOKEN_NORMAL; vocab_size];
    let vocab = model
        .get("vocab")
        .and_then(Value::as_object)
        .ok_or_else(|| bad("`model.vocab` is not an object"))?;
    let mut place = |id: Option<u64>, text: &str, what: &str| -> Result<usize> {
        let id = id
            .and_then(|i| usize::try_from(i).ok())
            .ok_or_else(|| bad(&format!("{what} `{text}` has no valid id")))?;
        let slot = tokens.get_mut(id).ok_or_else(|| {
            bad(&format!(
                "{what} `{text}` has id {id}, not below vocab_size {vocab_size}"
            ))
        })?;
        *slot = Some(text.to_string());
        Ok(id)
    };
    for (text, id) in vocab {
        place(id.as_u64(), text, "token")?;
    }
    let added = tj
        .get("added_tokens")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for a in added {
        let content = a.get("content").and_then(Value::as_str).unwrap_or_default();
        let id = place(a.get("id").and_then(Value::as_u64), content, "added token")?;
        let special = a.get("special").and_then(Value::as_bool).unwrap_or(false);
        types[id] = if special || looks_special(content) {
            TOKEN_CONTROL
        } else {
            TOKEN_USER_DEFINED
        };
    }
    let tokens: Vec<String> = tokens
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            t.unwrap_or_else(|| {
                types[i] = TOKEN_UNUSED;
                format!("[PAD{i}]")
            })
        })
        .collect();

    let merges = match model.get("merges").and_then(Value::as_array) {
        None => Vec::new(),
        Some(list) => list
            .iter()
            .map(|m| match m {
                Value::String(s) => Ok(s.clone()),
                Value::Array(p) if p.len() == 2 => {
                    let part = |v: &Value| v.as_str().map(|s| s.replace(' ', "\u{120}"));
                    match (part(&p[0]), part(&p[1])) {
                        (Some(a), Some(b)) => Ok(format!("{a} {b}")),
                        _ => Err(bad("a merge is not a pair of strings")),
                    }
                }
                _ => Err(bad("unknown merges format")),
            })
            .collect::<Result<_>>()?,
    };

    let cfg = cfg.as_ref();
    let mut add_flags: Vec<(&'static str, bool)> = Vec::new();
    let mut set_flag = |typ: &'static str, v: bool| match add_flags.iter_mut().find(|f| f.0 == typ)
    {
        Some(f) => f.1 = v,
        None => add_flags.push((typ, v)),
    };
    template_flags(&tj, cfg, &mut set_flag);
    const TYPES: [&str; 6] = ["bos", "eos", "unk", "sep", "pad", "mask"];
    let mut special_ids: Vec<(&'static str, u32)> = Vec::new();
    for typ in TYPES {
        if let Some(b) = cfg
            .and_then(|c| c.get(format!("add_{typ}_token")))
            .and_then(Value::as_bool)
        {
            set_flag(typ, b);
        }
        let Some(content) = config_token(cfg, &format!("{typ}_token")) else {
            continue;
        };
        let id = added
            .iter()
            .find(|a| a.get("content").and_then(Value::as_str) == Some(content))
            .and_then(|a| a.get("id")?.as_u64());
        if let Some(id) = id.filter(|&i| (i as usize) < vocab_size) {
            special_ids.push((typ, id as u32));
        }
    }
    for typ in TYPES {
        let id = config
            .as_ref()
            .and_then(|c| c.get(format!("{typ}_token_id")))
            .and_then(Value::as_u64)
            .filter(|&i| (i as usize) < vocab_size);
        if let Some(id) = id
            && !special_ids.iter().any(|s| s.0 == typ)
        {
            special_ids.push((typ, id as u32));
        }
    }

    let chat_template = match cfg.and_then(|c| c.get("chat_template")) {
        Some(Value::String(t)) => Some(t.clone()),
        _ => match std::fs::read_to_string(dir.join("chat_template.jinja")) {
            Ok(t) => Some(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(Error::io(dir.join("chat_template.jinja").display(), e)),
        },
    };
    Ok(GgufVocab {
        tokens,
        types,
        merges,
        special_ids,
        add_flags,
        chat_template,
    })
}

/// add_bos / add_eos / add_sep from a `TemplateProcessing` post-processor (gguf-py's crude
/// reading: a leading special token is BOS, a trailing one EOS, a special token between the
/// two sequences of the pair template a separator).
fn template_flags(tj: &Value, cfg: Option<&Value>, set: &mut dyn FnMut(&'static str, bool)) {
    let Some(pp) = tj.get("post_processor").filter(|p| !p.is_null()) else {
        return;
    };
    let procs: Vec<&Value> = match pp.get("processors").and_then(Value::as_array) {
        Some(list) => list.iter().collect(),
        None => vec![pp],
    };
    let special = |v: &Value| -> Option<String> {
        v.get("SpecialToken")?
            .get("id")?
            .as_str()
            .map(str::to_string)
    };
    let seq = |v: &Value| -> Option<String> {
        v.get("Sequence")?.get("id")?.as_str().map(str::to_string)
    };
    let bos = config_token(cfg, "bos_token").map(str::to_string);
    let eos = config_token(cfg, "eos_token").map(str::to_string);
    let sep = config_token(cfg, "sep_token").map(str::to_string);
    for p in procs {
        if p.get("type").and_then(Value::as_str) != Some("TemplateProcessing") {
            continue;
        }
        let empty = Vec::new();
        let single = p.get("single").and_then(Value::as_array).unwrap_or(&empty);
        let pair = p.get("pair").and_then(Value::as_array).unwrap_or(&empty);
        let (mut first, mut last) = (None, None);
        if single.len() > 1 {
            first = special(&single[0]);
            if let Some(f) = &first {
                set("bos", cfg.is_none() || Some(f) == bos.as_ref());
            }
            last = single.last().and_then(special);
            if let Some(l) = &last {
                set("eos", cfg.is_none() || Some(l) == eos.as_ref());
            }
        }
        let start = usize::from(first.is_some() && pair.first().and_then(special) == first);
        let stop = pair.len()
            - usize::from(
                last.is_some() && pair.len() > start && pair.last().and_then(special) == last,
            );
        let pair = pair.get(start..stop).unwrap_or_default();
        if pair.len() > 2
            && seq(&pair[0]).as_deref() == Some("A")
            && pair.last().and_then(seq).as_deref() == Some("B")
        {
            let mid = &pair[1..pair.len() - 1];
            let is_sep = |v: &Value| {
                special(v).is_some_and(|t| Some(&t) == sep.as_ref() || Some(&t) == eos.as_ref())
            };
            let add = (is_sep(&mid[0]) && last.is_none()) || (mid.len() == 2 && is_sep(&mid[1]));
            set("sep", add);
        }
    }
}

/// The whole key/value set for an HF directory quantized to `ftype`.
pub(crate) fn hf_metadata(model: &ModelFile, ftype: FileType) -> Result<Kv> {
    let dir = &model.path;
    let name = dir
        .file_name()
        .map_or_else(|| "model".to_string(), |n| n.to_string_lossy().into_owned());
    let n_params = model.tensors.values().map(|t| t.numel() as u64).sum();
    let mut kv = arch_kv(&model.config, &name, n_params, ftype);
    kv.extend(hf_vocab(dir, model.config.vocab_size)?.to_kv());
    Ok(kv)
}

#[cfg(test)]
mod tests {
    use super::size_label;

    #[test]
    fn size_labels_match_the_converter() {
        for (n, want) in [
            (170_112, "170K"),
            (147_776, "148K"),
            (354_483_968, "354M"),
            (1_170_340_608, "1.2B"),
            (2_569_272_320, "2.6B"),
            (5_300, "5.3K"),
            (300, "0.30K"),
        ] {
            assert_eq!(size_label(n), want, "{n}");
        }
    }
}
