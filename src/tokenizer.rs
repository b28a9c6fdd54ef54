//! The model's tokenizer: Hugging Face `tokenizers` built from `tokenizer.json`, or from GGUF
//! metadata (byte-level BPE, spec §4), plus the model's BOS rule, end-of-generation ids, the
//! chat template, and a streaming detokenizer.
//!
//! `encode` applies the model's rule (BOS iff `add_bos`); `encode_raw` never adds anything.
//! Special tokens written in the text (`<|im_start|>`...) are recognised by both.

use serde::Serialize;
use serde_json::{Value, json};
use tokenizers::Tokenizer as HfTokenizer;

use crate::chat::ChatTemplate;
use crate::error::{Error, Result};
use crate::format::gguf::GgufFile;

/// Llama-3 split regex (spec §4), as LFM2's `tokenizer.json` writes it.
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Token texts that end generation when present in the vocabulary (besides EOS).
const EOG_TEXTS: [&str; 2] = ["<|endoftext|>", "<|im_end|>"];

/// GGUF `tokenizer.ggml.token_type` values.
const TOKEN_TYPE_CONTROL: i64 = 3;
const TOKEN_TYPE_USER_DEFINED: i64 = 4;

pub struct Tokenizer {
    inner: HfTokenizer,
    source_name: String,
    vocab_size: usize,
    bos: Option<u32>,
    eos: Option<u32>,
    pad: Option<u32>,
    add_bos: bool,
    eog: Vec<u32>,
    chat_template: Option<String>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("source", &self.source_name)
            .field("vocab_size", &self.vocab_size)
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .field("add_bos", &self.add_bos)
            .field("eog", &self.eog)
            .finish()
    }
}

fn tok_err(source: &str, msg: impl std::fmt::Display) -> Error {
    Error::Tokenizer {
        source_name: source.to_string(),
        msg: msg.to_string(),
    }
}

/// A token string from `tokenizer_config.json`: `"<s>"` or `{"content": "<s>", ...}`.
fn config_token(cfg: Option<&Value>, key: &str) -> Option<String> {
    match cfg?.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content")?.as_str().map(str::to_string),
        _ => None,
    }
}

/// Token ids from a `generation_config.json` field (an id or a list of ids).
fn config_ids(cfg: Option<&Value>, key: &str) -> Vec<u32> {
    let to_id = |v: &Value| v.as_u64().and_then(|x| u32::try_from(x).ok());
    match cfg.and_then(|c| c.get(key)) {
        Some(Value::Array(a)) => a.iter().filter_map(to_id).collect(),
        Some(v) => to_id(v).into_iter().collect(),
        None => Vec::new(),
    }
}

/// Checks what `tokenizers` 0.23 would panic on instead of returning an error: a JSON syntax
/// error inside `decoder` (`decoders/mod.rs`, `expect("Helper")`), a malformed `Precompiled`
/// normalizer (`normalizers/mod.rs`, `expect("Precompiled")`), and a `TemplateProcessing`
/// post-processor naming a special token it does not define or the second sequence in its
/// single-sequence template (`processors/template.rs` indexes both when encoding; only its
/// builder validates them, not its deserializer). Precompiled (SentencePiece) normalizers are
/// refused whole: LFM2's tokenizer is byte-level BPE, and their charsmap is a binary trie.
fn check_hf_json(bytes: &[u8], source: &str) -> Result<()> {
    let v: Value = serde_json::from_slice(bytes)
        .map_err(|e| tok_err(source, format!("malformed JSON: {e}")))?;
    fn has_precompiled(v: &Value) -> bool {
        match v {
            Value::Object(o) => {
                o.get("type").and_then(Value::as_str) == Some("Precompiled")
                    || o.contains_key("precompiled_charsmap")
                    || o.values().any(has_precompiled)
            }
            Value::Array(a) => a.iter().any(has_precompiled),
            _ => false,
        }
    }
    if v.get("normalizer").is_some_and(has_precompiled) {
        return Err(Error::unsupported(
            "tokenizer normalizer",
            format!("{source}: Precompiled (SentencePiece); LFM2 tokenizers are byte-level BPE"),
        ));
    }
    match v.get("post_processor") {
        Some(p) => {
            check_post_processor(p).map_err(|m| tok_err(source, format!("post_processor: {m}")))
        }
        None => Ok(()),
    }
}

/// See [`check_hf_json`]: every `TemplateProcessing` (also inside a `Sequence`) defines the
/// special tokens its templates use, with as many ids as tokens, and its `single` template
/// uses sequence A only.
fn check_post_processor(p: &Value) -> std::result::Result<(), String> {
    match p.get("type").and_then(Value::as_str) {
        Some("Sequence") => p
            .get("processors")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .try_for_each(check_post_processor),
        Some("TemplateProcessing") => {
            let specials = p.get("special_tokens").and_then(Value::as_object);
            for (name, tok) in specials.into_iter().flatten() {
                let len = |k: &str| tok.get(k).and_then(Value::as_array).map(Vec::len);
                if len("ids") != len("tokens") {
                    return Err(format!(
                        "special token `{name}` has a different number of ids and tokens"
                    ));
                }
            }
            for key in ["single", "pair"] {
                let pieces = p.get(key).and_then(Value::as_array);
                for piece in pieces.into_iter().flatten() {
                    if let Some(id) = piece.pointer("/SpecialToken/id").and_then(Value::as_str)
                        && !specials.is_some_and(|m| m.contains_key(id))
                    {
                        return Err(format!("`{key}` uses special token `{id}`, not defined"));
                    }
                    if key == "single"
                        && piece.pointer("/Sequence/id").and_then(Value::as_str) == Some("B")
                    {
                        return Err("`single` uses the second sequence `$B`".into());
                    }
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn parse_json_file(bytes: Option<&[u8]>, name: &str) -> Result<Option<Value>> {
    bytes
        .map(|b| {
            serde_json::from_slice::<Value>(b)
                .map_err(|e| Error::format(name, format!("malformed JSON: {e}")))
                .and_then(|v| {
                    if v.is_object() {
                        Ok(v)
                    } else {
                        Err(Error::format(name, "expected a JSON object"))
                    }
                })
        })
        .transpose()
}

impl Tokenizer {
    /// From `tokenizer.json` bytes and an optional `tokenizer_config.json`.
    pub fn from_json_bytes(
        tokenizer_json: &[u8],
        tokenizer_config: Option<&[u8]>,
    ) -> Result<Tokenizer> {
        Self::from_hf_files(tokenizer_json, tokenizer_config, None, "tokenizer.json")
    }

    /// From the Hugging Face tokenizer files. `source_name` (the tokenizer.json path) names
    /// errors; the side files are named next to it.
    pub fn from_hf_files(
        tokenizer_json: &[u8],
        tokenizer_config: Option<&[u8]>,
        generation_config: Option<&[u8]>,
        source_name: &str,
    ) -> Result<Tokenizer> {
        let sibling = |n: &str| {
            std::path::Path::new(source_name)
                .with_file_name(n)
                .display()
                .to_string()
        };
        check_hf_json(tokenizer_json, source_name)?;
        let inner = HfTokenizer::from_bytes(tokenizer_json).map_err(|e| tok_err(source_name, e))?;
        let cfg = parse_json_file(tokenizer_config, &sibling("tokenizer_config.json"))?;
        let gen_cfg = parse_json_file(generation_config, &sibling("generation_config.json"))?;
        let (cfg, gen_cfg) = (cfg.as_ref(), gen_cfg.as_ref());
        let id_of = |key: &str| {
            config_token(cfg, key)
                .and_then(|t| inner.token_to_id(&t))
                .or_else(|| config_ids(gen_cfg, &format!("{key}_id")).first().copied())
        };
        let (bos, eos, pad) = (id_of("bos_token"), id_of("eos_token"), id_of("pad_token"));
        let add_bos = match cfg
            .and_then(|c| c.get("add_bos_token"))
            .and_then(Value::as_bool)
        {
            Some(b) => b,
            // No config: whatever the post-processor adds to an empty input.
            None => match (bos, inner.encode_fast("", true)) {
                (Some(b), Ok(enc)) => enc.get_ids().first() == Some(&b),
                _ => false,
            },
        };
        let chat_template = match cfg.and_then(|c| c.get("chat_template")) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Array(list)) => {
                let pick = list
                    .iter()
                    .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
                    .or_else(|| list.first());
                pick.and_then(|t| t.get("template"))
                    .and_then(Value::as_str)
                    .map(str::to_string)
            }
            _ => None,
        };
        let mut extra_eog = config_ids(gen_cfg, "eos_token_id");
        extra_eog.extend(config_ids(cfg, "eos_token_id"));
        let vocab_size = inner.get_vocab_size(true);
        Ok(Tokenizer::assemble(
            inner,
            source_name,
            vocab_size,
            [bos, eos, pad],
            add_bos,
            extra_eog,
            chat_template,
        ))
    }

    fn assemble(
        inner: HfTokenizer,
        source_name: &str,
        vocab_size: usize,
        [bos, eos, pad]: [Option<u32>; 3],
        add_bos: bool,
        extra_eog: Vec<u32>,
        chat_template: Option<String>,
    ) -> Tokenizer {
        let mut eog: Vec<u32> = eos.into_iter().collect();
        eog.extend(extra_eog);
        eog.extend(EOG_TEXTS.iter().filter_map(|t| inner.token_to_id(t)));
        let mut seen = Vec::new();
        eog.retain(|&id| {
            (id as usize) < vocab_size && !seen.contains(&id) && {
                seen.push(id);
                true
            }
        });
        Tokenizer {
            inner,
            source_name: source_name.to_string(),
            vocab_size,
            bos,
            eos,
            pad,
            add_bos,
            eog,
            chat_template,
        }
    }

    /// Replaces the chat template (e.g. from a `chat_template.jinja` file).
    pub fn with_chat_template(mut self, template: Option<String>) -> Tokenizer {
        if template.is_some() {
            self.chat_template = template;
        }
        self
    }

    /// From GGUF metadata: `tokenizer.ggml.model = gpt2` (byte-level BPE) with a known
    /// `tokenizer.ggml.pre`; tokens of type 3 (control) are special added tokens, type 4
    /// (user-defined) non-special added tokens.
    pub fn from_gguf(g: &GgufFile) -> Result<Tokenizer> {
        let file = g.file_name.as_str();
        let model = g.req_str("tokenizer.ggml.model")?;
        if model != "gpt2" {
            return Err(Error::unsupported(
                "tokenizer model",
                format!("{file}: tokenizer.ggml.model `{model}` (only byte-level BPE `gpt2`)"),
            ));
        }
        let pre = g.get_str("tokenizer.ggml.pre")?.unwrap_or("default");
        let (split, ignore_merges) = match pre {
            "lfm2" | "llama3" | "llama-v3" | "llama-bpe" => (LLAMA3_SPLIT, true),
            other => {
                return Err(Error::unsupported(
                    "tokenizer pre-tokenizer",
                    format!(
                        "{file}: tokenizer.ggml.pre `{other}` (supported: lfm2, llama3, llama-bpe)"
                    ),
                ));
            }
        };
        let tokens = g
            .get_str_arr("tokenizer.ggml.tokens")?
            .ok_or_else(|| Error::config(file, "tokenizer.ggml.tokens", "missing"))?;
        let max = crate::config::limits::MAX_VOCAB;
        if tokens.is_empty() || tokens.len() > max {
            return Err(Error::config(
                file,
                "tokenizer.ggml.tokens",
                format!("{} tokens, outside 1..={max}", tokens.len()),
            ));
        }
        let types: Vec<i64> = match g.get_arr("tokenizer.ggml.token_type")? {
            Some(arr) => arr
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    v.as_i64().ok_or_else(|| {
                        Error::config(
                            file,
                            "tokenizer.ggml.token_type",
                            format!("element {i} is not an integer"),
                        )
                    })
                })
                .collect::<Result<_>>()?,
            None => vec![1; tokens.len()],
        };
        if types.len() != tokens.len() {
            return Err(Error::config(
                file,
                "tokenizer.ggml.token_type",
                format!("has {} entries for {} tokens", types.len(), tokens.len()),
            ));
        }
        let merges = g.get_str_arr("tokenizer.ggml.merges")?.unwrap_or_default();
        if merges.len() > max {
            return Err(Error::config(
                file,
                "tokenizer.ggml.merges",
                format!("{} merges, more than {max}", merges.len()),
            ));
        }
        let merges = merges
            .iter()
            .enumerate()
            .map(|(i, m)| {
                // As llama.cpp: split at the first space after the first character.
                let pos = m
                    .char_indices()
                    .skip(1)
                    .find(|&(_, c)| c == ' ')
                    .map(|(p, _)| p);
                match pos.map(|p| m.split_at(p)) {
                    Some((a, b)) => Ok(json!([a, b.strip_prefix(' ').unwrap_or(b)])),
                    None => Err(Error::config(
                        file,
                        "tokenizer.ggml.merges",
                        format!("entry {i} `{m}` has no space"),
                    )),
                }
            })
            .collect::<Result<Vec<_>>>()?;
        let mut vocab = serde_json::Map::with_capacity(tokens.len());
        let mut added = Vec::new();
        for (id, (tok, ty)) in tokens.iter().zip(&types).enumerate() {
            if vocab.contains_key(*tok) {
                log::warn!(
                    "{file}: token {id} `{tok}` duplicates an earlier token; keeping the first"
                );
            } else {
                vocab.insert(tok.to_string(), json!(id));
            }
            if *ty == TOKEN_TYPE_CONTROL || *ty == TOKEN_TYPE_USER_DEFINED {
                added.push(json!({
                    "id": id, "content": tok, "single_word": false, "lstrip": false,
                    "rstrip": false, "normalized": false, "special": *ty == TOKEN_TYPE_CONTROL,
                }));
            }
        }
        let spec = json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": added,
            "normalizer": null,
            "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": split}, "behavior": "Isolated", "invert": false},
                {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false},
            ]},
            "post_processor": null,
            "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
            "model": {
                "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
                "ignore_merges": ignore_merges, "vocab": vocab, "merges": merges,
            },
        });
        let bytes = serde_json::to_vec(&spec).map_err(|e| tok_err(file, e))?;
        let inner = HfTokenizer::from_bytes(bytes).map_err(|e| tok_err(file, e))?;
        let n = tokens.len();
        let id = |key: &str| -> Result<Option<u32>> {
            match g.get_u32(key)? {
                Some(id) if id as usize >= n => Err(Error::config(
                    file,
                    key,
                    format!("{id} is not below the vocabulary size {n}"),
                )),
                other => Ok(other),
            }
        };
        let ids = [
            id("tokenizer.ggml.bos_token_id")?,
            id("tokenizer.ggml.eos_token_id")?,
            id("tokenizer.ggml.padding_token_id")?,
        ];
        let add_bos =
            g.get_bool("tokenizer.ggml.add_bos_token")?.unwrap_or(true) && ids[0].is_some();
        let mut extra_eog = Vec::new();
        for key in ["tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"] {
            extra_eog.extend(id(key)?);
        }
        let template = g.get_str("tokenizer.chat_template")?.map(str::to_string);
        Ok(Tokenizer::assemble(
            inner, file, n, ids, add_bos, extra_eog, template,
        ))
    }

    /// The model's rule: BOS first iff `add_bos`, then the text (special tokens recognised).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let mut ids = Vec::new();
        if let (true, Some(b)) = (self.add_bos, self.bos) {
            ids.push(b);
        }
        ids.extend(self.encode_raw(text)?);
        Ok(ids)
    }

    /// The text alone: never adds BOS/EOS.
    pub fn encode_raw(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode_fast(text, false)
            .map_err(|e| tok_err(&self.source_name, e))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Ids to text; `skip_special` drops special tokens. An id outside the vocabulary is an error.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        if let Some(bad) = ids.iter().find(|&&id| id as usize >= self.vocab_size) {
            return Err(tok_err(
                &self.source_name,
                format!(
                    "token id {bad} is outside the vocabulary ({})",
                    self.vocab_size
                ),
            ));
        }
        self.inner
            .decode(ids, skip_special)
            .map_err(|e| tok_err(&self.source_name, e))
    }

    /// The text one token decodes to (special tokens included).
    pub fn token_text(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)?;
        self.inner.decode(&[id], false).ok()
    }

    /// The vocabulary entry as stored (byte-level form, e.g. `Ġthe`).
    pub fn token_piece(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    pub fn token_to_id(&self, text: &str) -> Option<u32> {
        self.inner.token_to_id(text)
    }

    pub fn bos_id(&self) -> Option<u32> {
        self.bos
    }
    pub fn eos_id(&self) -> Option<u32> {
        self.eos
    }
    pub fn pad_id(&self) -> Option<u32> {
        self.pad
    }
    pub fn add_bos(&self) -> bool {
        self.add_bos
    }
    /// End-of-generation ids: EOS, `<|endoftext|>`, `<|im_end|>` (when present) and any
    /// other EOS listed by the files.
    pub fn eog_ids(&self) -> &[u32] {
        &self.eog
    }
    pub fn is_eog(&self, id: u32) -> bool {
        self.eog.contains(&id)
    }
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }
    pub fn chat_template(&self) -> Option<&str> {
        self.chat_template.as_deref()
    }

    fn special_text(&self, id: Option<u32>) -> String {
        id.and_then(|i| self.inner.id_to_token(i))
            .unwrap_or_default()
    }

    /// Renders the chat template (see [`crate::chat`]).
    pub fn render_chat<M: Serialize>(
        &self,
        messages: &[M],
        tools: Option<&[Value]>,
        add_generation_prompt: bool,
    ) -> Result<String> {
        let src = self.chat_template.as_deref().ok_or_else(|| {
            Error::Template(format!(
                "{}: the model has no chat template",
                self.source_name
            ))
        })?;
        ChatTemplate::new(src)?.render(
            messages,
            tools,
            add_generation_prompt,
            &self.special_text(self.bos),
            &self.special_text(self.eos),
        )
    }

    /// Renders the chat template and encodes it without adding BOS (the template writes it).
    pub fn encode_chat<M: Serialize>(
        &self,
        messages: &[M],
        tools: Option<&[Value]>,
        add_generation_prompt: bool,
    ) -> Result<Vec<u32>> {
        self.encode_raw(&self.render_chat(messages, tools, add_generation_prompt)?)
    }
}

/// Parses token ids as the command line takes them: `1,2,3` (spaces around an id are
/// allowed). An empty entry or one that is not a u32 is an error naming its position.
pub fn parse_ids(s: &str) -> Result<Vec<u32>> {
    s.split(',')
        .enumerate()
        .map(|(i, part)| {
            let t = part.trim();
            t.parse::<u32>().map_err(|e| {
                let shown: String = t.chars().take(24).collect();
                let more = if shown.len() < t.len() { "…" } else { "" };
                Error::InvalidArgument(format!(
                    "token id {} of the list, {shown:?}{more}, is not a token id ({e})",
                    i + 1
                ))
            })
        })
        .collect()
}

/// Incremental detokenizer: push ids one at a time and get the newly completed text. Text that
/// ends inside a UTF-8 character is held back until the character completes, so the
/// concatenation of every `push` and the final `finish` equals `decode(all ids)`.
#[derive(Clone, Debug, Default)]
pub struct StreamDecoder {
    skip_special: bool,
    ids: Vec<u32>,
    /// Start of the window decoded for context.
    prefix: usize,
    /// End of the text already returned.
    read: usize,
}

/// Ids held back before the decoder gives up waiting for a character to complete.
const MAX_HELD: usize = 8;

impl StreamDecoder {
    pub fn new(skip_special: bool) -> StreamDecoder {
        StreamDecoder {
            skip_special,
            ..Default::default()
        }
    }

    /// Adds one id; returns the text it completes (possibly empty).
    pub fn push(&mut self, tok: &Tokenizer, id: u32) -> Result<String> {
        self.ids.push(id);
        self.emit(tok, false)
    }

    /// Returns whatever is still held back (incomplete characters decode as U+FFFD).
    pub fn finish(&mut self, tok: &Tokenizer) -> Result<String> {
        self.emit(tok, true)
    }

    fn emit(&mut self, tok: &Tokenizer, force: bool) -> Result<String> {
        // prefix <= read <= ids.len() always (both only move up to ids.len()).
        let window = self.ids.get(self.prefix..).unwrap_or_default();
        let done = window.get(..self.read - self.prefix).unwrap_or_default();
        let before = tok.decode(done, self.skip_special)?;
        let all = tok.decode(window, self.skip_special)?;
        let held = self.ids.len() - self.read;
        if held == 0 || (!force && held < MAX_HELD && all.ends_with('\u{FFFD}')) {
            return Ok(String::new());
        }
        let new = match all.strip_prefix(before.as_str()) {
            Some(rest) => rest.to_string(),
            // The window re-decoded differently (should not happen with byte-level BPE):
            // emit the difference in length, never repeat text.
            None => all.get(before.len()..).unwrap_or_default().to_string(),
        };
        self.prefix = self.read;
        self.read = self.ids.len();
        Ok(new)
    }

    /// Every id pushed so far.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }
}
