//! The built-in demo model (`models/demo/`, a trained LFM2 made by `tools/train_demo.py`): the
//! engine's greedy continuations equal transformers' on the same weights, token for token.
//!
//! `models/demo/reference.json` holds, per committed GGUF, prompts (BOS + ids of a text) and
//! the greedy ids transformers (float32) computes on that file's dequantized weights, which is
//! what the engine computes with. The script keeps only prompts with no near tie (every greedy
//! step's top-1/top-2 logit gap > `min_margin_required`, ~100x the engine's f32 error), so the
//! ids must match exactly: on the GPU (every test backend, KV ring in f32 and in the default
//! f16) and on the CPU reference.

mod gpu_common;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use lfm::ModelFile;
use lfm::ops::attention::KvType;
use lfm::reference::CpuModel;
use lfm::reference::ops::argmax;
use lfm::session::SessionOptions;

/// One prompt of `reference.json`.
struct Case {
    text: String,
    tokens: Vec<u32>,
    greedy: Vec<u32>,
}

fn demo_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models/demo")
}

/// (GGUF path, its cases) for every file in `reference.json`.
fn references() -> Result<Vec<(PathBuf, Vec<Case>)>> {
    let path = demo_dir().join("reference.json");
    let text = std::fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text)?;
    let ids = |x: &serde_json::Value| -> Result<Vec<u32>> {
        x.as_array()
            .context("expected an array of ids")?
            .iter()
            .map(|i| Ok(u32::try_from(i.as_u64().context("bad id")?)?))
            .collect()
    };
    let files = v["files"].as_object().context("reference.json: `files`")?;
    let mut out = Vec::new();
    for (name, r) in files {
        let cases = r["cases"]
            .as_array()
            .with_context(|| format!("{name}: `cases`"))?
            .iter()
            .map(|c| {
                Ok(Case {
                    text: c["text"].as_str().context("`text`")?.to_string(),
                    tokens: ids(&c["tokens"])?,
                    greedy: ids(&c["greedy"])?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        assert!(!cases.is_empty(), "{name}: no cases");
        out.push((demo_dir().join(name), cases));
    }
    assert!(!out.is_empty(), "reference.json lists no file");
    Ok(out)
}

/// The engine's tokenizer (from the GGUF metadata) gives transformers' prompt ids.
#[test]
fn demo_model_tokenizes_prompts_like_transformers() -> Result<()> {
    for (path, cases) in references()? {
        let tok = ModelFile::open(&path)?.tokenizer()?;
        for c in &cases {
            assert_eq!(tok.encode(&c.text)?, c.tokens, "{:?}", c.text);
        }
    }
    Ok(())
}

#[test]
fn demo_model_greedy_matches_transformers_on_gpu() -> Result<()> {
    let gpus = gpu_common::gpus();
    let mut checked = 0;
    for (path, cases) in references()? {
        for (backend, gpu) in &gpus {
            for kv in [KvType::F32, KvType::F16] {
                for c in &cases {
                    let opts = SessionOptions {
                        ctx: c.tokens.len() + c.greedy.len() + 4,
                        chunk: 16, // the longer prompts take two prefill chunks
                        kv,
                        ..Default::default()
                    };
                    let mut s = gpu_common::session_on(gpu.clone(), &path, opts);
                    let stats = s.generate(&c.tokens, c.greedy.len(), &|_| false, &mut |_| true)?;
                    assert_eq!(
                        stats.generated,
                        c.greedy,
                        "{} / {:?} on {backend}, KV {}: greedy differs from transformers",
                        path.display(),
                        c.text,
                        kv.name()
                    );
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 0 || (gpus.is_empty() && !gpu_common::require_gpu()));
    Ok(())
}

/// The CPU reference (f32, token by token) gives the same ids, without a GPU.
#[test]
fn demo_model_greedy_matches_transformers_on_cpu_reference() -> Result<()> {
    for (path, cases) in references()? {
        let mut model = CpuModel::load(&ModelFile::open(&path)?)?;
        for c in &cases {
            model.reset();
            let mut last = model.forward(&c.tokens)?.pop().context("empty prompt")?;
            let mut got = Vec::new();
            for _ in 0..c.greedy.len() {
                let id = argmax(&last) as u32;
                got.push(id);
                last = model.step(id)?;
            }
            assert_eq!(got, c.greedy, "{} / {:?}", path.display(), c.text);
        }
    }
    Ok(())
}
