//! The fuzz targets' regression corpora and seeds, as ordinary tests (the fuzzers themselves run
//! with `tools/fuzz.sh`, see README.md). Every input in `tests/fuzz_regressions/<target>/` (each
//! one a crash, hang or huge allocation a fuzzer once found) and every seed derived from the
//! fixtures goes through the same function as the fuzz target (`tests/fuzz_harness/`), which must
//! return without panicking.
//!
//! `LFM_FUZZ_SEEDS=DIR cargo test --test fuzz_regressions` also writes the seeds to
//! `DIR/<target>/` (`tools/fuzz.sh` starts each fuzzer from them).

mod common;
mod fuzz_harness;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use lfm::format::gguf::GgufFile;
use serde_json::{Value, json};

type Harness = fn(&[u8]);

/// Every fuzz target, by name (the directory of its regression corpus and of its seeds).
const TARGETS: [(&str, Harness); 6] = [
    ("gguf", fuzz_harness::gguf),
    ("gguf_tokenizer", fuzz_harness::gguf_tokenizer),
    ("hf", fuzz_harness::hf),
    ("chat_template", fuzz_harness::chat_template),
    ("snapshot", fuzz_harness::snapshot),
    ("cli_args", fuzz_harness::cli_args),
];

fn harness(target: &str) -> Result<Harness> {
    match TARGETS.iter().find(|(n, _)| *n == target) {
        Some((_, h)) => Ok(*h),
        None => bail!("no fuzz target `{target}`"),
    }
}

/// Runs each input through its target; fails listing every input that panicked.
fn run_all(inputs: &[(String, String, Vec<u8>)]) -> Result<()> {
    let mut failed = Vec::new();
    for (target, name, bytes) in inputs {
        let h = harness(target)?;
        if catch_unwind(AssertUnwindSafe(|| h(bytes))).is_err() {
            failed.push(format!("{target}/{name}"));
        }
    }
    if !failed.is_empty() {
        bail!("these inputs panicked: {failed:?}");
    }
    Ok(())
}

#[test]
fn regression_corpora_do_not_panic() -> Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_regressions");
    let mut inputs = Vec::new();
    for entry in std::fs::read_dir(&root).with_context(|| root.display().to_string())? {
        let dir = entry?.path();
        if !dir.is_dir() {
            continue;
        }
        let target = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        harness(&target).with_context(|| format!("directory {}", dir.display()))?;
        for file in std::fs::read_dir(&dir)? {
            let path = file?.path();
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if name.starts_with('.') || name == "README.md" {
                continue;
            }
            inputs.push((target.clone(), name, std::fs::read(&path)?));
        }
    }
    assert!(!inputs.is_empty(), "no regression inputs under {root:?}");
    run_all(&inputs)
}

#[test]
fn fixture_seeds_do_not_panic() -> Result<()> {
    let seeds = seeds()?;
    for (target, _) in TARGETS {
        assert!(
            seeds.iter().any(|(t, ..)| t == target),
            "no seed for target {target}"
        );
    }
    if let Some(out) = std::env::var_os("LFM_FUZZ_SEEDS") {
        for (target, name, bytes) in &seeds {
            let dir = PathBuf::from(&out).join(target);
            std::fs::create_dir_all(&dir)?;
            std::fs::write(dir.join(name), bytes)?;
        }
    }
    run_all(&seeds)
}

/// Seeds for each target, derived from the fixtures: (target, file name, bytes).
fn seeds() -> Result<Vec<(String, String, Vec<u8>)>> {
    let fx = common::fixtures_root();
    let mut out = Vec::new();
    let mut add = |target: &str, name: &str, bytes: Vec<u8>| {
        out.push((target.to_string(), name.to_string(), bytes));
    };

    // GGUF: each fixture's header (metadata and tensor index, without the tensor data).
    for file in ["tiny-a-f16.gguf", "tiny-b-bf16.gguf", "tiny-q-q4_k_m.gguf"] {
        let bytes = std::fs::read(fx.join(file)).with_context(|| file.to_string())?;
        let g = GgufFile::parse(&bytes, bytes.len() as u64, file)?;
        let header = bytes
            .get(..g.data_offset as usize)
            .context("header past the end")?;
        add("gguf", &format!("{file}.header"), header.to_vec());
        add("gguf_tokenizer", &format!("{file}.header"), header.to_vec());
    }

    // Hugging Face: config.json, tokenizer.json, a small safetensors file and a shard index.
    for dir in ["tiny-a", "tiny-b"] {
        let config = std::fs::read(fx.join(dir).join("config.json"))?;
        add(
            "hf",
            &format!("{dir}.config.json"),
            [&[0u8][..], &config].concat(),
        );
    }
    let tokenizer = std::fs::read(fx.join("tiny-a/tokenizer.json"))?;
    add(
        "hf",
        "tiny-a.tokenizer.json",
        [&[3u8][..], &tokenizer].concat(),
    );
    let st = safetensors(&[
        ("model.embed_tokens.weight", "F32", &[4, 2]),
        ("model.layers.0.conv.conv.weight", "BF16", &[2, 1, 3]),
        ("model.layers.1.self_attn.q_layernorm.weight", "F16", &[2]),
    ]);
    add("hf", "small.safetensors", [&[1u8][..], &st].concat());
    let index = json!({"metadata": {"total_size": 64}, "weight_map": {
        "model.embed_tokens.weight": "model-00001-of-00002.safetensors",
        "lm_head.weight": "model-00002-of-00002.safetensors",
    }});
    add(
        "hf",
        "model.safetensors.index.json",
        [&[2u8][..], index.to_string().as_bytes()].concat(),
    );

    // Chat templates: the fixtures' own, and a few that stress loops, recursion and output.
    let tok_cfg: Value =
        serde_json::from_slice(&std::fs::read(fx.join("tiny-a/tokenizer_config.json"))?)?;
    let lfm2 = tok_cfg["chat_template"]
        .as_str()
        .context("tiny-a has a chat template")?;
    add("chat_template", "lfm2.jinja", lfm2.as_bytes().to_vec());
    for (name, src) in [
        (
            "loops.jinja",
            "{% for m in messages %}{% for i in range(3) %}{{ m.role }}{{ loop.index }}{% endfor %}{% endfor %}",
        ),
        (
            "macro.jinja",
            "{% macro f(n) %}{% if n > 0 %}{{ f(n - 1) }}{% endif %}{{ n }}{% endmacro %}{{ f(5) }}",
        ),
        (
            "concat.jinja",
            "{% set ns = namespace(s='ab') %}{% for i in range(4) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}",
        ),
        (
            "tojson.jinja",
            "{{ messages | tojson(indent=2) }}{{ tools | tojson }}{{ (messages | last).tool_calls }}",
        ),
    ] {
        add("chat_template", name, src.as_bytes().to_vec());
    }

    // Snapshots: a well-formed header and buffers for tiny-a, without the trailing checksum
    // (the harness appends a valid one, so mutations get past it).
    add(
        "snapshot",
        "tiny-a.lfmsnap",
        snapshot_body(&fuzz_harness::snapshot_config()),
    );

    for (name, s) in [
        ("ids", "1,2,3"),
        ("ids_spaces", " 7 , 8,9 "),
        ("size", "1.5GiB"),
        ("kv", "int8"),
        ("on_full", "slide"),
    ] {
        add("cli_args", name, s.as_bytes().to_vec());
    }
    Ok(out)
}

/// A safetensors file holding zeros for each (name, dtype, shape).
fn safetensors(tensors: &[(&str, &str, &[usize])]) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    let mut at = 0usize;
    for (name, dtype, shape) in tensors {
        let size = if *dtype == "F32" { 4 } else { 2 };
        let n = shape.iter().product::<usize>() * size;
        header.insert(
            name.to_string(),
            json!({"dtype": dtype, "shape": shape, "data_offsets": [at, at + n]}),
        );
        at += n;
    }
    let header = Value::Object(header).to_string();
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.resize(out.len() + at, 0);
    out
}

/// A snapshot of a session of `c` at position 2 (magic, version, header, buffers; no checksum).
fn snapshot_body(c: &lfm::Lfm2Config) -> Vec<u8> {
    let mut buffers = vec![
        json!({"name": "state", "bytes": 8}),
        json!({"name": "tokens", "bytes": 16}),
    ];
    for (i, kind) in c.layers.iter().enumerate() {
        match kind {
            lfm::LayerKind::Conv => {
                buffers.push(json!({"name": format!("conv_state.{i}"), "bytes": 8}))
            }
            lfm::LayerKind::Attention => {
                buffers.push(json!({"name": format!("k_ring.{i}"), "bytes": 8}));
                buffers.push(json!({"name": format!("v_ring.{i}"), "bytes": 8}));
            }
        }
    }
    let total: u64 = buffers.iter().filter_map(|b| b["bytes"].as_u64()).sum();
    let header = json!({
        "model": "0123456789abcdef", "ctx": 64, "chunk": 16, "kv": "f16", "on_full": "stop",
        "sinks": 4, "pos": 2, "undelivered": true, "history": [1, 2, 3],
        "sampler": {"temperature": 0.3, "top_k": 0, "top_p": 1.0, "min_p": 0.15,
                    "repeat_penalty": 1.05, "repeat_last_n": 64, "seed": 42},
        "buffers": buffers,
    })
    .to_string();
    let mut out = b"LFMSNAP\0".to_vec();
    out.extend_from_slice(&lfm::session::SNAPSHOT_VERSION.to_le_bytes());
    out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    let mut payload = vec![0u8; total as usize];
    payload[..4].copy_from_slice(&2u32.to_le_bytes());
    out.extend_from_slice(&payload);
    out
}
