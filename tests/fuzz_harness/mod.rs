//! The bodies of the fuzz targets (`fuzz/fuzz_targets/*.rs`, run by `tools/fuzz.sh`), shared
//! with `tests/fuzz_regressions.rs`, which runs every file of `tests/fuzz_regressions/<target>/`
//! through the same function as an ordinary test.
//!
//! Each body takes arbitrary bytes and drives one reader of untrusted input the way the
//! library's callers do. It must return (errors are expected) without a panic, a hang or an
//! unbounded allocation; libFuzzer reports those as crashes, timeouts and OOMs.

use lfm::chat::{ChatMessage, ChatTemplate};
use lfm::config::Lfm2Config;
use lfm::format::gguf::GgufFile;
use lfm::format::hf;
use lfm::memory;
use lfm::session::{SessionOptions, parse_snapshot};
use lfm::tokenizer::{StreamDecoder, Tokenizer};
use lfm::{ModelFile, TensorEntry};
use serde_json::json;

/// Bytes a header-only input pretends follow it (the tensor data of a browser-streamed file),
/// so that a GGUF header without its data still reaches the config, tensor and tokenizer checks.
const CLAIMED_DATA: u64 = 1 << 32;

/// Texts the tokenizer targets encode.
const TEXTS: [&str; 3] = [
    "Hello, world! 123 éè 你好",
    "<|im_start|>user\nHi<|im_end|>\n",
    "  \t\n\r x",
];

/// `GgufFile::parse` and `ModelFile::from_gguf_*` on the input as a whole file and as the
/// header prefix of a larger one; what opens is then used as `lfm info` and the loader use it.
pub fn gguf(data: &[u8]) {
    if let Ok(m) = ModelFile::from_gguf_bytes(data.to_vec(), "fuzz.gguf") {
        use_model(&m);
        for name in m.tensors.keys() {
            let _ = m.tensor_f32(name);
        }
    }
    // A prefix of the input: the browser's "read more" path.
    let half = data.get(..data.len() / 2).unwrap_or_default();
    let _ = GgufFile::parse(half, data.len() as u64, "fuzz.gguf");
    let len = data.len() as u64 + CLAIMED_DATA;
    if let Ok(g) = GgufFile::parse(data, len, "fuzz.gguf") {
        let _ = Lfm2Config::from_gguf(&g);
        for (_, v) in &g.metadata {
            let _ = v.short_display();
        }
    }
    if let Ok(m) = ModelFile::from_gguf_header(data, len, "fuzz.gguf") {
        use_model(&m);
    }
}

/// `Tokenizer::from_gguf` on the input's metadata (as a header prefix), then encoding,
/// decoding and streaming with what it built.
pub fn gguf_tokenizer(data: &[u8]) {
    let len = data.len() as u64 + CLAIMED_DATA;
    let Ok(g) = GgufFile::parse(data, len, "fuzz.gguf") else {
        return;
    };
    if let Ok(tok) = Tokenizer::from_gguf(&g) {
        use_tokenizer(&tok);
    }
}

/// The Hugging Face readers. The first byte picks one, the rest is its file: 0 `config.json`,
/// 1 a `.safetensors` file, 2 `model.safetensors.index.json`, 3 `tokenizer.json`.
pub fn hf(data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    match which % 4 {
        0 => {
            let text = String::from_utf8_lossy(rest);
            if let Ok(c) = Lfm2Config::from_hf_json(&text, "config.json") {
                use_config(&c);
            }
        }
        1 => {
            let mut index = std::collections::BTreeMap::new();
            if hf::index_safetensors(rest, "model.safetensors", 0, &mut index).is_ok() {
                for t in index.values() {
                    use_entry(t);
                }
            }
        }
        2 => {
            let _ = hf::parse_shard_index(rest, "model.safetensors.index.json");
        }
        _ => {
            if let Ok(tok) = Tokenizer::from_json_bytes(rest, None) {
                use_tokenizer(&tok);
            }
        }
    }
}

/// A chat template (the whole input) compiled and rendered with a conversation that exercises
/// every variable (system, user, assistant with tool calls, tool result, tools).
pub fn chat_template(data: &[u8]) {
    let src = String::from_utf8_lossy(data);
    let Ok(t) = ChatTemplate::new(&src) else {
        return;
    };
    let msgs = vec![
        ChatMessage::system("You are helpful."),
        ChatMessage::user("What is 2+2? <|im_end|>"),
        ChatMessage::assistant("").with_tool_calls(json!([
            {"name": "calc", "arguments": {"expr": "2+2", "n": [1, 2.5, null]}}
        ])),
        ChatMessage::tool("4"),
        ChatMessage::assistant("4"),
    ];
    let tools = [json!({"name": "calc", "parameters": {"type": "object"}})];
    let _ = t.render(&msgs, Some(&tools), true, "<|startoftext|>", "<|im_end|>");
    let _ = t.render::<ChatMessage>(&[], None, false, "", "");
}

/// `parse_snapshot` on the input as it is and with a valid checksum appended (so mutations
/// reach past the checksum), then the checks against a model's config.
pub fn snapshot(data: &[u8]) {
    let config = snapshot_config();
    let mut summed = data.to_vec();
    summed.extend_from_slice(&fnv1a(data).to_le_bytes());
    for bytes in [data, &summed[..]] {
        if let Ok(s) = parse_snapshot(bytes, "fuzz.lfmsnap") {
            let _ = s.check(&config, "fuzz.lfmsnap");
        }
    }
}

/// Command-line values read from the user: `--prompt-ids` lists, `--mem-budget` sizes, `--kv`
/// and `--on-full` names.
pub fn cli_args(data: &[u8]) {
    let s = String::from_utf8_lossy(data);
    if let Ok(ids) = lfm::tokenizer::parse_ids(&s) {
        let _ = ids.iter().map(|&i| u64::from(i)).sum::<u64>();
    }
    let _ = memory::parse_bytes(&s);
    let _ = lfm::ops::attention::KvType::parse(&s);
    let _ = lfm::session::OnFull::parse(&s);
}

/// FNV-1a 64, the snapshot checksum.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The config snapshots are checked against: the tiny-a fixture's.
pub fn snapshot_config() -> Lfm2Config {
    let text = include_str!("../fixtures/tiny-a/config.json");
    match Lfm2Config::from_hf_json(text, "tiny-a/config.json") {
        Ok(c) => c,
        Err(e) => panic!("the tiny-a fixture config must parse: {e}"),
    }
}

/// What `lfm info` and the loader do with an opened file, short of a device.
fn use_model(m: &ModelFile) {
    let _ = m.metadata_summary();
    let _ = memory::weight_device_bytes(m);
    for t in m.tensors.values() {
        use_entry(t);
        let _ = m.tensor_range(&t.name);
    }
    use_config(&m.config);
    if let Ok(tok) = m.tokenizer() {
        use_tokenizer(&tok);
    }
}

fn use_entry(t: &TensorEntry) {
    let _ = t.numel();
}

/// The session sizing a validated config goes through (`lfm info`, `--mem-budget`).
fn use_config(c: &Lfm2Config) {
    if c.validate("fuzz").is_err() {
        return;
    }
    let _ = lfm::format::expected_tensors(c);
    let _ = memory::kv_bytes_per_token(c, lfm::ops::attention::KvType::Int8);
    let want = SessionOptions {
        ctx: c.max_position_embeddings.min(4096),
        ..Default::default()
    };
    if want.check(c).is_ok() {
        let _ = memory::MemoryPlan::new(c, 1 << 30, want.clone()).total();
    }
    let _ = memory::plan_for_budget(c, 1 << 30, 8 << 30, &want, false, false);
}

fn use_tokenizer(tok: &Tokenizer) {
    for text in TEXTS {
        if let Ok(ids) = tok.encode(text) {
            let _ = tok.decode(&ids, false);
            let mut stream = StreamDecoder::new(true);
            for id in ids {
                let _ = stream.push(tok, id);
            }
            let _ = stream.finish(tok);
        }
    }
    let n = u32::try_from(tok.vocab_size()).unwrap_or(u32::MAX);
    let ids: Vec<u32> = (0..n.min(64)).chain([n, u32::MAX]).collect();
    let _ = tok.decode(&ids, true);
    for &id in &ids {
        let _ = tok.token_text(id);
    }
    if tok.chat_template().is_some() {
        let _ = tok.encode_chat(&[ChatMessage::user("Hi")], None, true);
    }
}
