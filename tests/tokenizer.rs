//! The tokenizer (from tokenizer.json and from GGUF metadata) against HF `tokenizers`
//! (`tests/fixtures/tokenizer_cases.json`) and the chat template against transformers
//! (`tests/fixtures/chat_cases.json`).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use lfm::format::ModelFile;
use lfm::tokenizer::{StreamDecoder, Tokenizer};
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn load_json(name: &str) -> Result<Vec<Value>> {
    let text = std::fs::read_to_string(fixtures().join(name)).with_context(|| name.to_string())?;
    let v: Value = serde_json::from_str(&text)?;
    v.as_array().cloned().context("expected a list")
}

fn ids(v: &Value, key: &str) -> Result<Vec<u32>> {
    let arr = v
        .get(key)
        .and_then(Value::as_array)
        .with_context(|| format!("no `{key}`"))?;
    arr.iter()
        .map(|x| x.as_u64().map(|x| x as u32).context("id"))
        .collect()
}

fn text<'a>(v: &'a Value, key: &str) -> Result<&'a str> {
    v.get(key)
        .and_then(Value::as_str)
        .with_context(|| format!("no `{key}`"))
}

/// The tokenizer from tokenizer.json (HF dir), and from each GGUF's metadata.
fn tokenizers() -> Result<Vec<(String, Tokenizer)>> {
    let mut out = Vec::new();
    for name in [
        "tiny-a",
        "tiny-b",
        "tiny-a-f32.gguf",
        "tiny-a-f16.gguf",
        "tiny-b-bf16.gguf",
    ] {
        let model = ModelFile::open(&fixtures().join(name))?;
        out.push((name.to_string(), model.tokenizer()?));
    }
    let json = std::fs::read(fixtures().join("tiny-a/tokenizer.json"))?;
    let cfg = std::fs::read(fixtures().join("tiny-a/tokenizer_config.json"))?;
    out.push((
        "from_json_bytes".to_string(),
        Tokenizer::from_json_bytes(&json, Some(&cfg))?,
    ));
    Ok(out)
}

#[test]
fn ids_match_hf_tokenizers() -> Result<()> {
    let cases = load_json("tokenizer_cases.json")?;
    assert!(!cases.is_empty());
    for (name, tok) in tokenizers()? {
        assert_eq!(tok.vocab_size(), 360, "{name}");
        assert_eq!((tok.bos_id(), tok.eos_id()), (Some(1), Some(7)), "{name}");
        assert!(tok.add_bos(), "{name}");
        assert!(tok.is_eog(7) && tok.is_eog(2) && !tok.is_eog(1), "{name}");
        for case in &cases {
            let t = text(case, "text")?;
            assert_eq!(tok.encode(t)?, ids(case, "ids")?, "{name}: encode({t:?})");
            let raw = ids(case, "ids_no_special")?;
            assert_eq!(tok.encode_raw(t)?, raw, "{name}: encode_raw({t:?})");
            assert_eq!(
                tok.decode(&raw, false)?,
                text(case, "decoded")?,
                "{name}: decode {t:?}"
            );
            let with_bos = ids(case, "ids")?;
            assert_eq!(
                tok.decode(&with_bos, true)?,
                text(case, "decoded_skip_special")?,
                "{name}: {t:?}"
            );
            if let Some(pieces) = case.get("tokens_no_special").and_then(Value::as_array) {
                for (id, piece) in raw.iter().zip(pieces) {
                    assert_eq!(
                        tok.token_piece(*id).as_deref(),
                        piece.as_str(),
                        "{name}: piece {id}"
                    );
                }
            }
        }
    }
    Ok(())
}

#[test]
fn stream_decoder_concatenates_to_decode() -> Result<()> {
    let cases = load_json("tokenizer_cases.json")?;
    let (_, tok) = tokenizers()?.into_iter().next().context("tokenizer")?;
    for skip in [false, true] {
        for case in &cases {
            let all = ids(case, "ids")?;
            let mut dec = StreamDecoder::new(skip);
            let mut out = String::new();
            for &id in &all {
                let piece = dec.push(&tok, id)?;
                assert!(
                    !piece.contains('\u{FFFD}'),
                    "incomplete char emitted: {piece:?}"
                );
                out.push_str(&piece);
            }
            out.push_str(&dec.finish(&tok)?);
            assert_eq!(out, tok.decode(&all, skip)?, "skip_special={skip}");
        }
    }
    // A character split across byte tokens is held back until complete.
    let bytes = tok.encode_raw("日")?;
    assert!(
        bytes.len() > 1,
        "expected a multi-token character, got {bytes:?}"
    );
    let mut dec = StreamDecoder::new(false);
    let pieces: Vec<String> = bytes
        .iter()
        .map(|&id| dec.push(&tok, id))
        .collect::<lfm::Result<_>>()?;
    assert!(
        pieces[..pieces.len() - 1].iter().all(String::is_empty),
        "{pieces:?}"
    );
    assert_eq!(pieces.last().map(String::as_str), Some("日"));
    Ok(())
}

#[test]
fn decode_rejects_ids_outside_the_vocabulary() -> Result<()> {
    let (_, tok) = tokenizers()?.into_iter().next().context("tokenizer")?;
    let msg = tok.decode(&[5, 360], false).unwrap_err().to_string();
    assert!(
        msg.contains("360") && msg.contains("tokenizer.json"),
        "{msg}"
    );
    assert_eq!(tok.token_text(6).as_deref(), Some("<|im_start|>"));
    assert_eq!(tok.token_text(100_000), None);
    Ok(())
}

#[test]
fn chat_template_matches_transformers() -> Result<()> {
    let cases = load_json("chat_cases.json")?;
    assert!(!cases.is_empty());
    for (name, tok) in tokenizers()? {
        assert!(tok.chat_template().is_some(), "{name}");
        for case in &cases {
            let case_name = text(case, "name")?;
            let messages = case
                .get("messages")
                .and_then(Value::as_array)
                .context("messages")?;
            let tools = case
                .get("tools")
                .and_then(Value::as_array)
                .map(Vec::as_slice);
            let add_gen = case
                .get("add_generation_prompt")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let rendered = tok.render_chat(messages, tools, add_gen)?;
            assert_eq!(rendered, text(case, "rendered")?, "{name}: {case_name}");
            assert_eq!(
                tok.encode_chat(messages, tools, add_gen)?,
                ids(case, "ids")?,
                "{name}: {case_name}"
            );
        }
    }
    Ok(())
}

#[test]
fn gguf_tokenizer_errors_are_clear() -> Result<()> {
    use lfm::format::gguf::{GgufFile, GgufValue, GgufWriter};
    let path = fixtures().join("tiny-a-f32.gguf");
    let bytes = std::fs::read(&path)?;
    let g = GgufFile::parse(&bytes, bytes.len() as u64, "tok.gguf")?;
    let with = |key: &str, value: Option<GgufValue>| -> String {
        let mut w = GgufWriter::new();
        w.metadata = g.metadata.clone();
        match value {
            Some(v) => w.set(key, v),
            None => w.remove(key),
        };
        let b = w.to_bytes();
        match GgufFile::parse(&b, b.len() as u64, "tok.gguf").and_then(|g| Tokenizer::from_gguf(&g))
        {
            Ok(_) => panic!("{key}: expected an error"),
            Err(e) => e.to_string(),
        }
    };
    let msg = with(
        "tokenizer.ggml.model",
        Some(GgufValue::String("llama".into())),
    );
    assert!(msg.contains("tok.gguf") && msg.contains("llama"), "{msg}");
    let msg = with(
        "tokenizer.ggml.pre",
        Some(GgufValue::String("qwen2".into())),
    );
    assert!(msg.contains("tok.gguf") && msg.contains("qwen2"), "{msg}");
    let msg = with("tokenizer.ggml.tokens", None);
    assert!(msg.contains("tokenizer.ggml.tokens"), "{msg}");
    let msg = with("tokenizer.ggml.eos_token_id", Some(GgufValue::U32(5000)));
    assert!(
        msg.contains("tokenizer.ggml.eos_token_id") && msg.contains("5000"),
        "{msg}"
    );
    Ok(())
}

#[test]
fn malformed_tokenizer_files() {
    let msg = Tokenizer::from_json_bytes(b"{not json", None)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("tokenizer.json"), "{msg}");
    let json = std::fs::read(fixtures().join("tiny-a/tokenizer.json")).unwrap_or_default();
    let msg = Tokenizer::from_json_bytes(&json, Some(b"[1, 2"))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("tokenizer_config.json"), "{msg}");
}
