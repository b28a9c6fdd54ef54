//! Hostile inputs (issue 6): every count and size read from a file is checked against the file's
//! length and a sane bound before anything is allocated, and the error names the field and why;
//! hostile chat templates are bounded in time, memory and output. Each case would, unchecked,
//! allocate terabytes, overflow, recurse without end or loop for hours.

use lfm::Error;
use lfm::chat::{ChatMessage, ChatTemplate};
use lfm::format::gguf::{GgufFile, GgufValue, GgufWriter, MAX_METADATA_VALUES};
use lfm::format::{ModelFile, hf};
use lfm::session::{SessionOptions, parse_snapshot};
use lfm::{Lfm2Config, Result};

/// A file length far beyond the bytes given: the header is read as a prefix of a large file
/// (the browser's path), so only the sane bounds, not the file's length, stop a huge count.
const HUGE_FILE: u64 = 1 << 50;

fn assert_has(msg: &str, parts: &[&str]) {
    for p in parts {
        assert!(msg.contains(p), "error `{msg}` should mention `{p}`");
    }
}

fn err_of<T: std::fmt::Debug>(r: Result<T>) -> String {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.to_string(),
    }
}

/// GGUF header bytes: magic, version 3, the counts, then `body`.
fn gguf(n_tensors: u64, n_kv: u64, body: &[u8]) -> Vec<u8> {
    let mut out = b"GGUF".to_vec();
    out.extend_from_slice(&3u32.to_le_bytes());
    out.extend_from_slice(&n_tensors.to_le_bytes());
    out.extend_from_slice(&n_kv.to_le_bytes());
    out.extend_from_slice(body);
    out
}

fn string(s: &str) -> Vec<u8> {
    let mut out = (s.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(s.as_bytes());
    out
}

/// A metadata key followed by a value type and the raw payload.
fn kv(key: &str, ty: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = string(key);
    out.extend_from_slice(&ty.to_le_bytes());
    out.extend_from_slice(payload);
    out
}

fn parse_err(bytes: &[u8], file_len: u64) -> String {
    err_of(GgufFile::parse(bytes, file_len, "hostile.gguf").map(|_| ()))
}

#[test]
fn gguf_counts_are_bounded_before_allocation() {
    // Tensor and metadata counts: bounded by the file length, then by a sane maximum.
    let msg = parse_err(&gguf(u64::MAX, 0, &[]), 24);
    assert_has(
        &msg,
        &[
            "hostile.gguf",
            "tensor infos count 18446744073709551615",
            "cannot fit",
        ],
    );
    let msg = parse_err(&gguf(1 << 40, 0, &[]), HUGE_FILE);
    assert_has(&msg, &["tensor count", "more than the 65536"]);
    let msg = parse_err(&gguf(0, 1 << 40, &[]), HUGE_FILE);
    assert_has(&msg, &["metadata count", "more than the 65536"]);
    let msg = parse_err(&gguf(0, 1000, &[]), 24);
    assert_has(&msg, &["metadata count 1000", "cannot fit"]);

    // A key of 2^40 bytes; a string value of 1 GiB; a tensor name of 1 MiB.
    let mut body = (1u64 << 40).to_le_bytes().to_vec();
    body.extend_from_slice(b"k");
    let msg = parse_err(&gguf(0, 1, &body), HUGE_FILE);
    assert_has(
        &msg,
        &["length of key of metadata entry 0", "more than the 65535"],
    );
    let body = kv("general.name", 8, &(1u64 << 30).to_le_bytes());
    let msg = parse_err(&gguf(0, 1, &body), HUGE_FILE);
    assert_has(
        &msg,
        &[
            "length of value of `general.name`",
            "more than the 16777216",
        ],
    );
    let msg = parse_err(&gguf(0, 1, &body), 64);
    assert_has(&msg, &["length of value of `general.name`"]);
    let body = (1u64 << 20).to_le_bytes();
    let msg = parse_err(&gguf(1, 0, &body), HUGE_FILE);
    assert_has(&msg, &["length of name of tensor 0", "more than the 1024"]);
}

#[test]
fn gguf_arrays_are_bounded_before_allocation() {
    // Arrays of 2^40 u8 elements and of 2^40 strings, and one of arrays: a petabyte file could
    // hold them, the limit refuses them.
    for (ty, n) in [
        (0u32, 1u64 << 40),
        (8, 1 << 40),
        (9, MAX_METADATA_VALUES + 1),
    ] {
        let mut payload = ty.to_le_bytes().to_vec();
        payload.extend_from_slice(&n.to_le_bytes());
        let bytes = gguf(0, 1, &kv("tokenizer.ggml.tokens", 9, &payload));
        let msg = parse_err(&bytes, HUGE_FILE);
        assert_has(
            &msg,
            &["length of array `tokenizer.ggml.tokens`", "16777216 values"],
        );
        let msg = parse_err(&bytes, bytes.len() as u64);
        assert_has(&msg, &["tokenizer.ggml.tokens"]);
    }
    // Arrays together: the second array would pass the limit the first one left.
    let mut payload = 0u32.to_le_bytes().to_vec();
    payload.extend_from_slice(&3u64.to_le_bytes());
    payload.extend_from_slice(&[1, 2, 3]);
    let mut body = kv("a", 9, &payload);
    let mut second = 0u32.to_le_bytes().to_vec();
    second.extend_from_slice(&(MAX_METADATA_VALUES - 2).to_le_bytes());
    body.extend(kv("b", 9, &second));
    let msg = parse_err(&gguf(0, 2, &body), HUGE_FILE);
    assert_has(
        &msg,
        &["length of array `b`", "16777213", "more than the 16777213"],
    );
    // Arrays nested deeper than 8.
    let mut payload = Vec::new();
    for _ in 0..9 {
        payload.extend_from_slice(&9u32.to_le_bytes());
        payload.extend_from_slice(&1u64.to_le_bytes());
    }
    payload.extend_from_slice(&0u32.to_le_bytes());
    payload.extend_from_slice(&0u64.to_le_bytes());
    let msg = parse_err(&gguf(0, 1, &kv("deep", 9, &payload)), HUGE_FILE);
    assert_has(&msg, &["`deep`", "nested deeper than 8"]);
}

/// One tensor info: name, `ne`, ggml type, offset.
fn tensor(name: &str, ne: &[u64], ty: u32, offset: u64) -> Vec<u8> {
    let mut out = string(name);
    out.extend_from_slice(&(ne.len() as u32).to_le_bytes());
    for d in ne {
        out.extend_from_slice(&d.to_le_bytes());
    }
    out.extend_from_slice(&ty.to_le_bytes());
    out.extend_from_slice(&offset.to_le_bytes());
    out
}

#[test]
fn gguf_tensor_sizes_and_offsets_are_checked() {
    let cases: [(&[u64], u64, &[&str]); 6] = [
        // 10^12 rows of 16 f32: 64 TB of data in a file of a few bytes.
        (
            &[16, 1_000_000_000_000],
            0,
            &["`t`", "lies outside", "data section"],
        ),
        // ne product overflows u64.
        (
            &[1 << 32, 1 << 32, 1 << 32],
            0,
            &["`t`", "absurd dimensions"],
        ),
        // Offset + size overflows u64.
        (&[16], !31, &["`t`", "lies outside"]),
        (&[16], 33, &["`t`", "not a multiple of the alignment 32"]),
        (&[1, 1, 1, 1, 1], 0, &["`t`", "5 dimensions"]),
        (&[0], 0, &["`t`", "dimension 0 is 0"]),
    ];
    for (ne, offset, parts) in cases {
        let bytes = gguf(1, 0, &tensor("t", ne, 0, offset));
        let msg = parse_err(&bytes, bytes.len() as u64 + 64);
        assert_has(&msg, parts);
    }
    // A Q4_0 row that is not a whole number of blocks.
    let bytes = gguf(1, 0, &tensor("q", &[33, 2], 2, 0));
    let msg = parse_err(&bytes, bytes.len() as u64 + 4096);
    assert_has(&msg, &["`q`", "row length 33", "blocks of 32"]);
    // Alignment 0 or not a power of two.
    for a in [0u32, 3, 1 << 30] {
        let bytes = gguf(0, 1, &kv("general.alignment", 4, &a.to_le_bytes()));
        let msg = parse_err(&bytes, bytes.len() as u64);
        assert_has(&msg, &["general.alignment", "power of two"]);
    }
}

/// tiny-a's metadata (no tensors needed: the header is read as a prefix of a larger file).
fn tiny_a_meta() -> Result<GgufWriter> {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-a-f32.gguf");
    let bytes = std::fs::read(&path).map_err(|e| Error::io(path.display(), e))?;
    let g = GgufFile::parse(&bytes, bytes.len() as u64, "tiny-a-f32.gguf")?;
    let mut w = GgufWriter::new();
    w.metadata = g.metadata.clone();
    Ok(w)
}

#[test]
fn gguf_hyper_parameters_are_bounded() -> Result<()> {
    for (key, value, parts) in [
        (
            "lfm2.vocab_size",
            GgufValue::U32(1 << 31),
            &["vocab_size", "2147483648", "outside 1..=4194304"][..],
        ),
        (
            "lfm2.block_count",
            GgufValue::U32(1_000_000),
            &["lfm2.block_count", "1000000"],
        ),
        (
            "lfm2.embedding_length",
            GgufValue::U32(1 << 20),
            &["hidden_size", "outside 1..=65536"],
        ),
        (
            "lfm2.feed_forward_length",
            GgufValue::U32(u32::MAX),
            &["ff_size"],
        ),
        (
            "lfm2.context_length",
            GgufValue::U32(u32::MAX),
            &["max_position_embeddings", "outside 1..=16777216"],
        ),
        (
            "lfm2.attention.key_length",
            GgufValue::U32(1 << 20),
            &["head_dim"],
        ),
        (
            "lfm2.block_count",
            GgufValue::U64(1 << 40),
            &["lfm2.block_count", "u32 range"],
        ),
    ] {
        let mut w = tiny_a_meta()?;
        w.set(key, value);
        let bytes = w.to_bytes();
        let msg = err_of(ModelFile::from_gguf_header(&bytes, HUGE_FILE, "hp.gguf").map(|_| ()));
        assert_has(&msg, &["hp.gguf"]);
        assert_has(&msg, parts);
    }
    Ok(())
}

#[test]
fn hf_sizes_are_bounded() {
    for (json, parts) in [
        (
            r#"{"intermediate_size": 18446744073709551615}"#,
            &["ff_size"][..],
        ),
        (
            r#"{"block_ff_dim": 18446744073709551615, "block_multiple_of": 18446744073709551615}"#,
            &["ff_size"],
        ),
        (
            r#"{"num_hidden_layers": 1000000000000}"#,
            &["num_hidden_layers", "implausible"],
        ),
        (
            r#"{"max_position_embeddings": 1099511627776}"#,
            &["max_position_embeddings"],
        ),
        (r#"{"vocab_size": 2147483648}"#, &["vocab_size"]),
        (
            r#"{"num_hidden_layers": 2, "layer_types": ["conv", "conv"], "num_attention_heads": 18446744073709551615, "head_dim": 18446744073709551615}"#,
            &["num_heads", "more than 1024"],
        ),
    ] {
        let msg = err_of(
            Lfm2Config::from_hf_json(json, "config.json").and_then(|c| c.validate("config.json")),
        );
        assert_has(&msg, &["config.json"]);
        assert_has(&msg, parts);
    }
    // safetensors: a header length past the file, and a shape whose size overflows.
    let mut st = (1u64 << 40).to_le_bytes().to_vec();
    st.extend_from_slice(b"{}");
    let mut out = Default::default();
    let msg = err_of(hf::index_safetensors(&st, "m.safetensors", 0, &mut out));
    assert_has(&msg, &["m.safetensors", "invalid safetensors"]);
    let header = r#"{"model.embed_tokens.weight": {"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 0]}}"#;
    let mut st = (header.len() as u64).to_le_bytes().to_vec();
    st.extend_from_slice(header.as_bytes());
    let msg = err_of(hf::index_safetensors(&st, "m.safetensors", 0, &mut out));
    assert_has(&msg, &["m.safetensors", "invalid safetensors"]);
    // A shard index naming files outside the directory; a large index parses in linear time.
    for bad in [
        "../x.safetensors",
        "/etc/passwd",
        "a\\b",
        ".hidden",
        "C:x",
        "",
    ] {
        let index = serde_json::json!({"weight_map": {"w": bad}}).to_string();
        let msg = err_of(hf::parse_shard_index(index.as_bytes(), "i.json"));
        assert_has(&msg, &["i.json", "not a plain file name"]);
    }
    let map: serde_json::Map<String, serde_json::Value> = (0..100_000)
        .map(|i| (format!("t{i}"), format!("s{i}.safetensors").into()))
        .collect();
    let index = serde_json::json!({ "weight_map": map }).to_string();
    let shards = hf::parse_shard_index(index.as_bytes(), "i.json").map(|s| s.len());
    assert_eq!(shards.ok(), Some(100_000));
}

/// The LFM2 chat template (tiny-a's).
fn lfm2_template() -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tiny-a/tokenizer_config.json");
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path).unwrap_or_default()).unwrap_or_default();
    cfg["chat_template"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn render(src: &str, msgs: &[ChatMessage]) -> Result<String> {
    ChatTemplate::new(src)?.render(msgs, None, true, "<s>", "</s>")
}

#[test]
fn chat_templates_are_bounded() {
    // A real conversation of 1,000 messages renders well within the budget.
    let msgs: Vec<ChatMessage> = (0..1000)
        .map(|i| {
            let text = format!("message {i}: {}", "lorem ipsum ".repeat(40));
            if i % 2 == 0 {
                ChatMessage::user(text)
            } else {
                ChatMessage::assistant(text)
            }
        })
        .collect();
    let out = render(&lfm2_template(), &msgs);
    assert!(
        out.as_ref().is_ok_and(|s| s.len() > 480_000),
        "{:?}",
        out.map(|s| s.len())
    );

    let msgs = [ChatMessage::user("hi")];
    for (src, parts) in [
        // Time: 10^10 iterations.
        (
            "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
            &["fuel"][..],
        ),
        // Memory: a string doubled 64 times.
        (
            "{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}",
            &["fuel"],
        ),
        ("{{ ('x' * 100000000)|length }}", &["fuel"]),
        // Output: 16 MiB written.
        (
            "{% for i in range(2048) %}{{ 'y' * 8192 }}{% endfor %}",
            &["larger than 8 MiB"],
        ),
        // Recursion without end.
        (
            "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
            &["recursion"],
        ),
        // A list nested 5,000 deep, written as JSON.
        (
            "{% set ns = namespace(x=[]) %}{% for i in range(5000) %}{% set ns.x = [ns.x] %}{% endfor %}{{ ns.x|tojson }}",
            &["nested deeper than 128"],
        ),
        ("{{ ([0] * 100000000)|tojson }}", &["fuel"]),
        ("{{ messages|tojson(indent=1000000000) }}", &["indent"]),
    ] {
        let msg = err_of(render(src, &msgs));
        assert_has(&msg, &["chat template"]);
        assert_has(&msg, parts);
    }
}

#[test]
fn snapshots_and_arguments_are_bounded() {
    // Magic, version, header length (`hlen`, or the header's), header, payload, checksum.
    let snap_with = |hlen: Option<u32>, header: &str, payload: &[u8]| {
        let mut out = b"LFMSNAP\0".to_vec();
        out.extend_from_slice(&lfm::session::SNAPSHOT_VERSION.to_le_bytes());
        out.extend_from_slice(&hlen.unwrap_or(header.len() as u32).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(payload);
        let mut h = 0xcbf2_9ce4_8422_2325u64;
        for &b in &out {
            h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        out.extend_from_slice(&h.to_le_bytes());
        out
    };
    let snap = |header: &str, payload: &[u8]| snap_with(None, header, payload);
    let header = |pos: &str, chunk: &str, bytes: &str| {
        format!(
            r#"{{"model":"m","ctx":64,"chunk":{chunk},"kv":"f16","on_full":"slide","sinks":4,"pos":{pos},
            "history":[],"sampler":{{"temperature":0,"top_k":0,"top_p":1,"min_p":0,"repeat_penalty":1,
            "repeat_last_n":64,"seed":1}},"buffers":[{{"name":"state","bytes":{bytes}}}]}}"#
        )
    };
    let config =
        Lfm2Config::from_hf_json(include_str!("fixtures/tiny-a/config.json"), "config.json");
    let config = config.unwrap_or_else(|e| panic!("{e}"));
    // A buffer of 2^64 - 1 bytes in a file of a few hundred.
    let bytes = snap(&header("0", "16", "18446744073709551615"), &[0; 8]);
    let msg = err_of(parse_snapshot(&bytes, "s.lfmsnap").map(|_| ()));
    assert_has(&msg, &["s.lfmsnap", "buffer `state` runs past the end"]);
    // A header length of 4 GiB.
    let bytes = snap_with(Some(u32::MAX), &header("0", "16", "8"), &[0; 8]);
    let msg = err_of(parse_snapshot(&bytes, "s.lfmsnap").map(|_| ()));
    assert_has(
        &msg,
        &["s.lfmsnap", "header length 4294967295 is out of bounds"],
    );
    // A position of 2^64 - 1 and a chunk of 2^63: refused, no overflow.
    let mut state = u32::MAX.to_le_bytes().to_vec();
    state.extend_from_slice(&[0; 4]);
    let bytes = snap(&header("4294967295", "16", "8"), &state);
    let s = parse_snapshot(&bytes, "s.lfmsnap").unwrap_or_else(|e| panic!("{e}"));
    let msg = err_of(s.check(&config, "s.lfmsnap"));
    assert_has(
        &msg,
        &[
            "s.lfmsnap",
            "history of 0 tokens does not match position 4294967295",
        ],
    );
    let bytes = snap(&header("0", "9223372036854775808", "8"), &[0; 8]);
    let s = parse_snapshot(&bytes, "s.lfmsnap").unwrap_or_else(|e| panic!("{e}"));
    let msg = err_of(s.check(&config, "s.lfmsnap"));
    assert_has(
        &msg,
        &["s.lfmsnap", "prefill chunk of 9223372036854775808 tokens"],
    );
    let opts = SessionOptions {
        chunk: usize::MAX,
        ..Default::default()
    };
    assert_has(&err_of(opts.check(&config)), &["prefill chunk"]);

    // `--prompt-ids` lists.
    assert_eq!(
        lfm::tokenizer::parse_ids(" 1, 2 ,3").ok(),
        Some(vec![1, 2, 3])
    );
    for (bad, parts) in [
        ("1,,2", &["token id 2 of the list", "\"\""][..]),
        ("1,4294967296", &["token id 2", "4294967296"]),
        ("-1", &["token id 1", "\"-1\""]),
        (&"9".repeat(100_000), &["token id 1", "…"]),
    ] {
        let msg = err_of(lfm::tokenizer::parse_ids(bad));
        assert_has(&msg, parts);
        assert!(msg.len() < 200, "{msg}");
    }
}
