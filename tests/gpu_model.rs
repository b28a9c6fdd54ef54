//! The whole model on the GPU against the Hugging Face logits in tests/fixtures/expected:
//! every fixture file (GGUF and HF directory), every prompt, prompt-position logits and the
//! greedy continuation (teacher-forced rows through the decode path, then free-running
//! `generate`).

mod common;
mod gpu_common;

use lfm::session::SessionOptions;

/// GPU vs transformers for f32 math on the same weights (the fixtures' oracle already uses the
/// file's own f16/bf16 values dequantized to f32, so this bound holds for every fixture).
const TOL_LOGITS: f32 = 1e-3;

#[test]
fn gpu_logits_and_greedy_match_transformers() -> anyhow::Result<()> {
    let mut checked = 0;
    let gpus = gpu_common::gpus();
    for case in common::exact_cases()? {
        let want = case.logits()?;
        let rows = case.rows()?;
        for file in &case.files {
            for (backend, gpu) in &gpus {
                let opts = SessionOptions {
                    ctx: case.tokens.len() + case.greedy.len() + 4,
                    chunk: 64,
                    logits_all: true,
                    kv: lfm::ops::attention::KvType::F32,
                    ..Default::default()
                };
                let mut s = gpu_common::session_on(gpu.clone(), file, opts);
                let what = format!("{} on {} ({backend})", case.name(), file.display());
                let logits = s.eval(&case.tokens)?;
                let v = want.cols;
                for (i, &p) in case.positions.iter().enumerate() {
                    let d = common::check_close(
                        &format!("{what}: position {p}"),
                        &logits[p * v..(p + 1) * v],
                        want.row(i),
                        TOL_LOGITS,
                    )?;
                    eprintln!("{what}: position {p}: max |diff| {d:.2e}");
                }
                common::check_close(
                    &format!("{what}: logits after the prompt"),
                    &logits[(case.tokens.len() - 1) * v..],
                    rows.row(0),
                    TOL_LOGITS,
                )?;
                // Teacher-forced continuation, one token per submit (the decode kernels).
                for (i, &g) in case.greedy.iter().enumerate() {
                    let l = s.eval(&[g])?;
                    common::check_close(
                        &format!("{what}: greedy row {}", i + 1),
                        &l,
                        rows.row(i + 1),
                        TOL_LOGITS,
                    )?;
                }
                checked += 1;
            }
        }
    }
    assert!(checked > 0 || (gpus.is_empty() && !gpu_common::require_gpu()));
    Ok(())
}

#[test]
fn gpu_greedy_generation_matches_transformers() -> anyhow::Result<()> {
    for case in common::exact_cases()? {
        assert!(
            case.greedy.len() >= 32,
            "{}: fixture greedy too short",
            case.name()
        );
        for file in &case.files {
            let opts = SessionOptions {
                ctx: case.tokens.len() + case.greedy.len() + 4,
                chunk: 64,
                logits_all: false,
                kv: lfm::ops::attention::KvType::F32,
                ..Default::default()
            };
            let Some((_, mut s)) = gpu_common::session(file, opts) else {
                return Ok(());
            };
            let stats = s.generate(&case.tokens, case.greedy.len(), &|_| false, &mut |_| true)?;
            assert_eq!(
                stats.generated,
                case.greedy,
                "{} on {}: greedy continuation differs",
                case.name(),
                file.display()
            );
        }
    }
    Ok(())
}
