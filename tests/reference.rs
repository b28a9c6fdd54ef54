//! The CPU reference forward pass against the Hugging Face logits in `tests/fixtures/expected`:
//! every variant, prompt and model file, max abs diff <= 1e-4 on the prompt-position logits
//! and on every row of the (teacher-forced) greedy continuation, and the greedy ids reproduced
//! by argmax wherever the recorded top-2 margin is decisive.
//!
//! Run with `cargo test --test reference -- --nocapture` to see the diff table.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use lfm::ModelFile;
use lfm::reference::CpuModel;
use lfm::reference::ops::argmax;

use common::{Case, check_close};

/// Logit tolerance against transformers (f32 math on the same f32 weights).
const TOL: f32 = 1e-4;

/// Max abs diffs of one (case, file): prompt positions, greedy rows.
struct Measured {
    prompt: f32,
    rows: f32,
}

/// Feeds the prompt then the greedy ids, comparing logits along the way.
fn check_case(model: &mut CpuModel, case: &Case) -> Result<Measured> {
    model.reset();
    let expected = case.logits()?;
    let rows = case.rows()?;
    let logits = model.forward(&case.tokens)?;
    let mut prompt = 0.0f32;
    for (i, &pos) in case.positions.iter().enumerate() {
        let got = logits
            .get(pos)
            .with_context(|| format!("position {pos} past the prompt"))?;
        prompt = prompt.max(check_close(
            &format!("prompt position {pos}"),
            got,
            expected.row(i),
            TOL,
        )?);
    }
    let mut last = logits.last().context("empty prompt")?.clone();
    let mut worst_row = 0.0f32;
    for (i, &want_id) in case.greedy.iter().enumerate() {
        worst_row = worst_row.max(check_close(
            &format!("greedy row {i}"),
            &last,
            rows.row(i),
            TOL,
        )?);
        // Teacher forcing: `want_id` is fed whatever our argmax is; it must agree wherever the
        // expected top-2 margin leaves no room for a tie within the tolerance.
        let got_id = argmax(&last);
        if got_id != want_id as usize && case.greedy_is_decisive(i, TOL) {
            bail!(
                "greedy step {i}: argmax {got_id} (logit {}) but expected id {want_id} (logit {:?})",
                last[got_id],
                last.get(want_id as usize)
            );
        }
        last = model.step(want_id)?;
    }
    let n = case.greedy.len();
    worst_row = worst_row.max(check_close(
        &format!("greedy row {n}"),
        &last,
        rows.row(n),
        TOL,
    )?);
    Ok(Measured {
        prompt,
        rows: worst_row,
    })
}

#[test]
fn cpu_reference_matches_hf_logits() -> Result<()> {
    let cases = common::exact_cases()?;
    let mut models: HashMap<PathBuf, CpuModel> = HashMap::new();
    let mut failures = Vec::new();
    let mut checked = 0;
    println!(
        "{:<24} {:<36} {:>12} {:>12}",
        "case", "file", "prompt diff", "rows diff"
    );
    for case in &cases {
        for file in &case.files {
            let label = file.file_name().map_or_else(
                || file.display().to_string(),
                |n| n.to_string_lossy().into(),
            );
            checked += 1;
            if !models.contains_key(file) {
                let loaded = ModelFile::open(file)
                    .map_err(anyhow::Error::from)
                    .and_then(|mf| Ok(CpuModel::load(&mf)?))
                    .with_context(|| format!("loading {}", file.display()));
                match loaded {
                    Ok(m) => {
                        models.insert(file.clone(), m);
                    }
                    Err(e) => {
                        failures.push(format!("{} / {label}: {e:#}", case.name()));
                        continue;
                    }
                }
            }
            let Some(model) = models.get_mut(file) else {
                continue;
            };
            match check_case(model, case) {
                Ok(m) => println!(
                    "{:<24} {:<36} {:>12.3e} {:>12.3e}",
                    case.name(),
                    label,
                    m.prompt,
                    m.rows
                ),
                Err(e) => {
                    println!("{:<24} {:<36} FAILED", case.name(), label);
                    failures.push(format!("{} / {label}: {e:#}", case.name()));
                }
            }
        }
    }
    if !failures.is_empty() {
        bail!(
            "{} of {checked} checks failed:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
    if checked == 0 {
        bail!("no (case, file) pair was checked");
    }
    Ok(())
}
