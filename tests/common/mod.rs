//! Helpers shared by the integration tests that compare a model's logits with the fixtures'
//! expected values (`tests/fixtures/`, layout in its README.md).
//!
//! Layout handled: an `expected/` directory holding, per variant and prompt,
//! - `<variant>.<p>.json`: `{"tokens": [...], "greedy": [...], "positions": [...],
//!   "files": [...]}` (or `"file": "..."`, the older single-file form), optional `"backend"`
//!   and `"greedy_margins"`; `files` entries are relative to the fixtures root (the parent of
//!   `expected/`) or one of its model subdirectories;
//! - `<variant>.<p>.npy`: logits `[len(positions), vocab]` at those prompt positions;
//! - `<variant>.<p>.rows.npy`: `[len(greedy) + 1, vocab]`: row 0 = logits after the whole
//!   prompt, row i = after also feeding `greedy[..i]`.
//!
//! A tag after the prompt (`<variant>.<p>.llama.json`, with `.llama.npy` / `.llama.rows.npy`)
//! marks a loose secondary oracle (llama.cpp); see [`Case::tag`].
//!
//! Use: `mod common;` in the test file, then `common::expected_cases()?`, and
//! [`Case::logits`] / [`Case::rows`] / [`check_close`]. Errors are `anyhow` (tests only).
#![allow(dead_code)] // each test crate uses a different subset

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// Where the fixtures live: `$LFM_FIXTURES` if set (e.g. `/work/shared/fixtures` while
/// developing), else `<crate>/tests/fixtures`.
pub fn fixtures_root() -> PathBuf {
    match std::env::var_os("LFM_FIXTURES") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures"),
    }
}

/// One expected-logits record: a variant (a model, possibly in several files) and a prompt.
#[derive(Clone, Debug)]
pub struct Case {
    /// e.g. `tiny-a`, `tiny-a-f16`, `lfm2-shared-a-f32`.
    pub variant: String,
    /// e.g. `p1`.
    pub prompt: String,
    /// `None` for the exact oracle (transformers, f32 math); `Some("llama")` for llama.cpp's
    /// logits, a loose check only (it quantizes activations inside its dot products).
    pub tag: Option<String>,
    /// What produced the numbers, if the JSON says.
    pub backend: Option<String>,
    /// Prompt token ids, BOS included, to be fed as is.
    pub tokens: Vec<u32>,
    /// Greedy continuation (no EOS stop).
    pub greedy: Vec<u32>,
    /// Top-1 minus top-2 expected logit at each greedy step (`greedy_margins`; empty when the
    /// record has none). See [`Case::greedy_is_decisive`].
    pub greedy_margins: Vec<f32>,
    /// Prompt positions whose logits are in [`Case::logits`].
    pub positions: Vec<usize>,
    /// The model files/directories this record is valid for, resolved to existing paths.
    pub files: Vec<PathBuf>,
    /// The `.json` path; the `.npy` files sit next to it.
    pub json: PathBuf,
}

impl Case {
    /// `variant.prompt[.tag]`, for messages.
    pub fn name(&self) -> String {
        match &self.tag {
            Some(t) => format!("{}.{}.{t}", self.variant, self.prompt),
            None => format!("{}.{}", self.variant, self.prompt),
        }
    }

    /// Whether greedy step `i` (argmax of row `i`) must be reproduced by a model whose logits
    /// are within `tol` of the expected ones: its margin exceeds `2 * tol` (both top logits may
    /// move by `tol`). Without recorded margins every step counts as decisive.
    pub fn greedy_is_decisive(&self, i: usize, tol: f32) -> bool {
        self.greedy_margins.get(i).is_none_or(|&m| m > 2.0 * tol)
    }

    fn sibling(&self, suffix: &str) -> PathBuf {
        let stem = self.json.with_extension("");
        PathBuf::from(format!("{}{suffix}", stem.display()))
    }

    /// Expected logits at the prompt positions: `[positions.len(), vocab]`.
    pub fn logits(&self) -> Result<Matrix> {
        let m = Matrix::read(&self.sibling(".npy"))?;
        if m.rows != self.positions.len() {
            bail!(
                "{}: {} logit rows for {} positions",
                self.name(),
                m.rows,
                self.positions.len()
            );
        }
        Ok(m)
    }

    /// Expected logits along the greedy continuation: `[greedy.len() + 1, vocab]`.
    pub fn rows(&self) -> Result<Matrix> {
        let m = Matrix::read(&self.sibling(".rows.npy"))?;
        if m.rows != self.greedy.len() + 1 {
            bail!(
                "{}: {} rows for {} greedy tokens",
                self.name(),
                m.rows,
                self.greedy.len()
            );
        }
        Ok(m)
    }
}

/// A row-major f32 matrix read from a 2-D `.npy`.
#[derive(Clone, Debug)]
pub struct Matrix {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f32>,
}

impl Matrix {
    pub fn read(path: &Path) -> Result<Matrix> {
        let (shape, data) = lfm::npy::read_f32(path)?;
        let [rows, cols] = shape[..] else {
            bail!(
                "{}: expected a 2-D array, got shape {shape:?}",
                path.display()
            );
        };
        Ok(Matrix { rows, cols, data })
    }

    /// Row `i` (`[cols]`). Panics if out of range.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }
}

/// Every record under the fixtures root (`<root>/expected/` and `<root>/*/expected/`), sorted
/// by variant, prompt, tag. Errors if none is found or a record's model file is missing.
pub fn expected_cases() -> Result<Vec<Case>> {
    let root = fixtures_root();
    let mut dirs = vec![root.join("expected")];
    if let Ok(entries) = std::fs::read_dir(&root) {
        for e in entries.flatten() {
            dirs.push(e.path().join("expected"));
        }
    }
    let mut cases = Vec::new();
    for dir in dirs.into_iter().filter(|d| d.is_dir()) {
        let mut jsons: Vec<PathBuf> = std::fs::read_dir(&dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        jsons.sort();
        for json in jsons {
            if let Some(case) = parse_case(&json, &root)? {
                cases.push(case);
            }
        }
    }
    if cases.is_empty() {
        bail!("no expected-logits fixtures under {}", root.display());
    }
    cases.sort_by(|a, b| (&a.variant, &a.prompt, &a.tag).cmp(&(&b.variant, &b.prompt, &b.tag)));
    Ok(cases)
}

/// The exact-oracle records only (no `.llama` tag).
pub fn exact_cases() -> Result<Vec<Case>> {
    Ok(expected_cases()?
        .into_iter()
        .filter(|c| c.tag.is_none())
        .collect())
}

/// Parses `<variant>.<pN>[.<tag>].json`; `None` for other JSON files (e.g. `prompts.json`).
fn parse_case(json: &Path, root: &Path) -> Result<Option<Case>> {
    let Some(stem) = json.file_stem().and_then(|s| s.to_str()) else {
        return Ok(None);
    };
    let parts: Vec<&str> = stem.split('.').collect();
    let is_prompt =
        |s: &str| s.len() > 1 && s.starts_with('p') && s[1..].bytes().all(|b| b.is_ascii_digit());
    let Some(pi) = parts.iter().rposition(|p| is_prompt(p)).filter(|&i| i > 0) else {
        return Ok(None);
    };
    let text =
        std::fs::read_to_string(json).with_context(|| format!("reading {}", json.display()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", json.display()))?;
    let ids = |key: &str| -> Result<Vec<u64>> {
        v[key]
            .as_array()
            .with_context(|| format!("{}: missing array `{key}`", json.display()))?
            .iter()
            .map(|x| {
                x.as_u64()
                    .with_context(|| format!("{}: bad `{key}` entry {x}", json.display()))
            })
            .collect()
    };
    let as_u32 = |xs: Vec<u64>| -> Result<Vec<u32>> {
        xs.into_iter().map(|x| Ok(u32::try_from(x)?)).collect()
    };
    let names: Vec<String> = match (&v["files"], &v["file"]) {
        (serde_json::Value::Array(a), _) => a
            .iter()
            .filter_map(|f| f.as_str().map(String::from))
            .collect(),
        (_, serde_json::Value::String(s)) => vec![s.clone()],
        _ => bail!("{}: neither `files` nor `file`", json.display()),
    };
    let base = json.parent().and_then(Path::parent).unwrap_or(root);
    let files = names
        .iter()
        .map(|n| {
            resolve_file(n, base, root)
                .with_context(|| format!("{}: model file `{n}`", json.display()))
        })
        .collect::<Result<Vec<_>>>()?;
    let tag = (pi + 1 < parts.len()).then(|| parts[pi + 1..].join("."));
    Ok(Some(Case {
        variant: parts[..pi].join("."),
        prompt: parts[pi].to_string(),
        tag,
        backend: v["backend"].as_str().map(String::from),
        tokens: as_u32(ids("tokens")?)?,
        greedy: as_u32(ids("greedy")?)?,
        greedy_margins: match v["greedy_margins"].as_array() {
            Some(a) => a
                .iter()
                .map(|x| x.as_f64().map(|m| m as f32))
                .collect::<Option<Vec<f32>>>()
                .with_context(|| format!("{}: bad `greedy_margins`", json.display()))?,
            None => Vec::new(),
        },
        positions: ids("positions")?.into_iter().map(|p| p as usize).collect(),
        files,
        json: json.to_path_buf(),
    }))
}

/// Finds a model file named in a record: relative to the expected dir's parent, the fixtures
/// root, or one of their immediate subdirectories (a model directory).
fn resolve_file(name: &str, base: &Path, root: &Path) -> Result<PathBuf> {
    let mut candidates = vec![base.join(name), root.join(name)];
    for dir in [base, root] {
        if let Ok(entries) = std::fs::read_dir(dir) {
            let mut subs: Vec<PathBuf> = entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect();
            subs.sort();
            candidates.extend(subs.into_iter().map(|d| d.join(name)));
        }
    }
    candidates
        .into_iter()
        .find(|p| p.exists())
        .with_context(|| format!("not found under {} or {}", base.display(), root.display()))
}

/// Largest `|a[i] - b[i]|`; `f32::INFINITY` if the lengths differ or a value is NaN.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() {
        return f32::INFINITY;
    }
    a.iter().zip(b).fold(0.0f32, |m, (x, y)| {
        let d = (x - y).abs();
        if d.is_nan() { f32::INFINITY } else { m.max(d) }
    })
}

/// Errors (naming `what` and the worst index) unless `max_abs_diff(got, want) <= tol`;
/// returns the diff.
pub fn check_close(what: &str, got: &[f32], want: &[f32], tol: f32) -> Result<f32> {
    let d = max_abs_diff(got, want);
    if d <= tol {
        return Ok(d);
    }
    if got.len() != want.len() {
        bail!("{what}: length {} vs expected {}", got.len(), want.len());
    }
    let mut worst = (0, -1.0f32);
    for (i, (x, y)) in got.iter().zip(want).enumerate() {
        let d = (x - y).abs();
        let d = if d.is_nan() { f32::INFINITY } else { d };
        if d > worst.1 {
            worst = (i, d);
        }
    }
    let i = worst.0;
    bail!(
        "{what}: max abs diff {d:e} > {tol:e} at index {i} (got {}, expected {})",
        got[i],
        want[i]
    )
}
