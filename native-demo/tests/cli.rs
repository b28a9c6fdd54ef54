//! End-to-end tests of the `lfm` binary: they run the real executable on the fixture models
//! (`tests/fixtures/`, see its README.md) and check the command-line contract that outside
//! tools rely on: the `run --json` line format, greedy ids equal to transformers', context
//! limits, `eval` logits, `info` / `devices` output, text and chat prompts, the built-in model,
//! error reporting, and multi-turn `chat` through stdin.
//!
//! Needs a WebGPU adapter (a software Vulkan driver such as Mesa lavapipe is enough). Every
//! run has a timeout, so a hung GPU shows up as a failure rather than a stuck test.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Wall-clock limit for one run of the binary (the software GPU takes about a second per run;
/// this leaves room for a loaded machine).
const TIMEOUT: Duration = Duration::from_secs(180);

/// The fixture models' vocabulary (both share one tokenizer).
const VOCAB: usize = 360;

/// End-of-generation ids of the fixture tokenizer: `<|endoftext|>` and `<|im_end|>` (eos).
const EOG: [u32; 2] = [2, 7];

/// The built-in model's file (compiled into the binary; made by tools/train_demo.py) and its
/// greedy references from transformers, relative to the fixtures directory.
const BUILTIN: &str = "../../models/demo/lfm2-tiny-py-q8_0.gguf";
const BUILTIN_REFERENCE: &str = "../../models/demo/reference.json";
const BUILTIN_VOCAB: usize = 4096;

// ---------------------------------------------------------------------------------------------
// Running the binary
// ---------------------------------------------------------------------------------------------

/// What one run of the binary produced.
struct Out {
    /// The command line, for messages.
    cmd: String,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Out {
    fn ok(&self) -> bool {
        self.code == Some(0)
    }

    /// Panics (with the full output) unless the run exited 0 without a panic message.
    fn assert_ok(&self) -> &Self {
        self.assert_no_panic();
        assert!(self.ok(), "{self}");
        self
    }

    /// A panic message or backtrace on either stream is always a bug.
    fn assert_no_panic(&self) {
        for s in [&self.stdout, &self.stderr] {
            assert!(
                !s.contains("panicked") && !s.contains("stack backtrace"),
                "panic output\n{self}"
            );
        }
    }

    /// Checks a failed run: non-zero exit, an `error: ...` line on stderr that mentions every
    /// one of `fragments` (case-insensitively), and no panic.
    fn assert_error(&self, fragments: &[&str]) {
        self.assert_no_panic();
        assert!(
            self.code.is_some_and(|c| c != 0),
            "expected a non-zero exit\n{self}"
        );
        let line = self
            .stderr
            .lines()
            .find(|l| l.starts_with("error: "))
            .unwrap_or_else(|| panic!("no `error: ` line on stderr\n{self}"));
        let lower = line.to_lowercase();
        for f in fragments {
            assert!(
                lower.contains(&f.to_lowercase()),
                "the error line does not mention `{f}`\n{self}"
            );
        }
        assert!(
            !self.stdout.contains("\"done\""),
            "a failed run printed a summary\n{self}"
        );
    }
}

impl std::fmt::Display for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "$ {}\nexit: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.cmd, self.code, self.stdout, self.stderr
        )
    }
}

/// A scratch directory for one test, under Cargo's per-target temp dir.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("cli-tests")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("creating a scratch dir");
    dir
}

/// A private `XDG_RUNTIME_DIR`: without one, Mesa's window-system code prints
/// `error: XDG_RUNTIME_DIR is invalid or not set` on stderr, which would blur the checks of the
/// CLI's own `error: ` lines.
fn xdg_runtime_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli-tests-xdg");
    std::fs::create_dir_all(&dir).expect("creating XDG_RUNTIME_DIR");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
    }
    dir
}

/// Runs `lfm ARGS` with no stdin.
fn lfm(args: &[&str]) -> Out {
    lfm_with_stdin(args, None)
}

/// Runs `lfm ARGS`, feeding `stdin` (then EOF) if given, with [`TIMEOUT`].
fn lfm_with_stdin(args: &[&str], stdin: Option<&str>) -> Out {
    let exe = env!("CARGO_BIN_EXE_lfm");
    let cmd = format!("lfm {}", args.join(" "));
    let mut child = Command::new(exe)
        .args(args)
        .env("XDG_RUNTIME_DIR", xdg_runtime_dir())
        .env("RUST_BACKTRACE", "1")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {exe}: {e}"));
    let feeder = stdin.map(|text| {
        let mut pipe = child.stdin.take().expect("stdin pipe");
        let text = text.to_string();
        std::thread::spawn(move || {
            let _ = pipe.write_all(text.as_bytes());
            // Dropping the pipe closes it: EOF.
        })
    });
    let reader = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out_t = reader(Box::new(child.stdout.take().expect("stdout pipe")));
    let err_t = reader(Box::new(child.stderr.take().expect("stderr pipe")));
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        match child.try_wait().expect("waiting for lfm") {
            Some(s) => break Some(s),
            None if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    if let Some(f) = feeder {
        let _ = f.join();
    }
    let out = Out {
        cmd,
        code: status.and_then(|s| s.code()),
        stdout: out_t.join().unwrap_or_default(),
        stderr: err_t.join().unwrap_or_default(),
    };
    assert!(
        status.is_some(),
        "timed out after {} s\n{out}",
        TIMEOUT.as_secs()
    );
    out
}

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

/// A fixture model path as a string argument.
fn model(name: &str) -> String {
    let p = fixtures().join(name);
    assert!(p.exists(), "missing fixture {}", p.display());
    p.to_str().expect("UTF-8 fixture path").to_string()
}

/// One expected-output record, `expected/<variant>.<prompt>.json` (+ `.npy`).
struct Case {
    name: String,
    tokens: Vec<u32>,
    greedy: Vec<u32>,
    greedy_margins: Vec<f64>,
    positions: Vec<usize>,
    /// `[positions.len(), VOCAB]` logits at those prompt positions.
    logits: Vec<f32>,
}

fn case(variant: &str, prompt: &str) -> Case {
    let base = fixtures()
        .join("expected")
        .join(format!("{variant}.{prompt}"));
    let json_path = base.with_extension(format!("{prompt}.json"));
    let text = std::fs::read_to_string(&json_path)
        .unwrap_or_else(|e| panic!("{}: {e}", json_path.display()));
    let v: Value = serde_json::from_str(&text).expect("fixture JSON");
    let ids = |k: &str| -> Vec<u64> {
        v[k].as_array()
            .unwrap_or_else(|| panic!("{}: no `{k}`", json_path.display()))
            .iter()
            .map(|x| x.as_u64().expect("an integer"))
            .collect()
    };
    let npy = base.with_extension(format!("{prompt}.npy"));
    let (shape, logits) = lfm::npy::read_f32(&npy).expect("fixture logits");
    let positions: Vec<usize> = ids("positions").into_iter().map(|p| p as usize).collect();
    assert_eq!(shape, [positions.len(), VOCAB], "{}", npy.display());
    Case {
        name: format!("{variant}.{prompt}"),
        tokens: ids("tokens").into_iter().map(|x| x as u32).collect(),
        greedy: ids("greedy").into_iter().map(|x| x as u32).collect(),
        greedy_margins: v["greedy_margins"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_f64).collect())
            .unwrap_or_default(),
        positions,
        logits,
    }
}

fn id_list(ids: &[u32]) -> String {
    ids.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

fn read_json(name: &str) -> Value {
    let p = fixtures().join(name);
    serde_json::from_str(&std::fs::read_to_string(&p).expect("fixture")).expect("fixture JSON")
}

/// The `tokenizer_cases.json` entry for `text`.
fn tokenizer_case(text: &str) -> Value {
    read_json("tokenizer_cases.json")
        .as_array()
        .expect("a list")
        .iter()
        .find(|c| c["text"] == text)
        .unwrap_or_else(|| panic!("no tokenizer case {text:?}"))
        .clone()
}

fn u32s(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("an id list")
        .iter()
        .map(|x| x.as_u64().expect("an id") as u32)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// `run --json` output
// ---------------------------------------------------------------------------------------------

/// A parsed `run --json` stream.
struct Run {
    ids: Vec<u32>,
    texts: Vec<String>,
    prompt_tokens: u64,
    stop: String,
}

/// Parses and validates `run --json` output: one `{"id","text"}` object per token, then exactly
/// one `{"done":true,...}` summary as the last line, with every field of the right type.
fn parse_run(out: &Out) -> Run {
    parse_run_vocab(out, VOCAB)
}

/// [`parse_run`] for a model with `vocab` tokens.
fn parse_run_vocab(out: &Out, vocab: usize) -> Run {
    out.assert_ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    let (last, tokens) = lines
        .split_last()
        .unwrap_or_else(|| panic!("no output\n{out}"));
    let mut ids = Vec::new();
    let mut texts = Vec::new();
    for l in tokens {
        let v: Value =
            serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}\n{out}"));
        let o = v
            .as_object()
            .unwrap_or_else(|| panic!("not an object: {l}\n{out}"));
        let keys: BTreeSet<&str> = o.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            BTreeSet::from(["id", "text"]),
            "token line {l}\n{out}"
        );
        let id = o["id"]
            .as_u64()
            .unwrap_or_else(|| panic!("id not an integer: {l}\n{out}"));
        assert!(
            (id as usize) < vocab,
            "id {id} outside the vocabulary\n{out}"
        );
        ids.push(id as u32);
        texts.push(
            o["text"]
                .as_str()
                .unwrap_or_else(|| panic!("text not a string: {l}\n{out}"))
                .to_string(),
        );
    }
    let done: Value = serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("bad summary line {last:?}: {e}\n{out}"));
    let o = done
        .as_object()
        .unwrap_or_else(|| panic!("summary not an object\n{out}"));
    let keys: BTreeSet<&str> = o.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        BTreeSet::from([
            "done",
            "prompt_tokens",
            "generated_tokens",
            "prefill_tok_s",
            "decode_tok_s",
            "device_bytes",
            "stop"
        ]),
        "summary keys\n{out}"
    );
    assert_eq!(o["done"], Value::Bool(true), "{out}");
    let int = |k: &str| {
        o[k].as_u64()
            .unwrap_or_else(|| panic!("`{k}` not a non-negative integer\n{out}"))
    };
    for k in ["prefill_tok_s", "decode_tok_s"] {
        let x = o[k]
            .as_f64()
            .unwrap_or_else(|| panic!("`{k}` not a number\n{out}"));
        assert!(x.is_finite() && x >= 0.0, "`{k}` = {x}\n{out}");
    }
    assert_eq!(int("generated_tokens"), ids.len() as u64, "{out}");
    assert!(int("device_bytes") > 0, "{out}");
    let stop = o["stop"]
        .as_str()
        .unwrap_or_else(|| panic!("`stop` not a string\n{out}"))
        .to_string();
    assert!(
        ["eos", "length", "context_full"].contains(&stop.as_str()),
        "stop {stop:?}\n{out}"
    );
    Run {
        ids,
        texts,
        prompt_tokens: int("prompt_tokens"),
        stop,
    }
}

/// `lfm run -m MODEL --prompt-ids IDS -n N --temp 0 --json EXTRA...`, parsed.
fn run_ids(model: &str, ids: &[u32], n: usize, extra: &[&str]) -> Run {
    let ids = id_list(ids);
    let n = n.to_string();
    let mut args = vec![
        "run",
        "-m",
        model,
        "--prompt-ids",
        &ids,
        "-n",
        &n,
        "--temp",
        "0",
        "--json",
    ];
    args.extend_from_slice(extra);
    parse_run(&lfm(&args))
}

// ---------------------------------------------------------------------------------------------
// run: greedy ids against transformers
// ---------------------------------------------------------------------------------------------

/// For each prompt and model file of `variant`: `--temp 0 --ignore-eos` reproduces the
/// reference greedy ids (all 40, or at least 32 where a later step is a near tie), and without
/// `--ignore-eos` the run stops right after the first end-of-generation id of the reference (if
/// it has one) with stop "eos", else runs to the length limit.
fn check_greedy(variant: &str, files: &[&str]) {
    for p in ["p1", "p2", "p3"] {
        let c = case(variant, p);
        // Steps whose top-2 margin is within a plausible f32 error could legitimately flip;
        // the reference was chosen to have none, but stay honest if that ever changes.
        let need = (0..c.greedy.len())
            .find(|&i| c.greedy_margins.get(i).is_some_and(|&m| m <= 2e-3))
            .unwrap_or(c.greedy.len())
            .max(32);
        let n = c.greedy.len();
        for f in files {
            let m = model(f);
            let r = run_ids(&m, &c.tokens, n, &["--ignore-eos"]);
            assert_eq!(r.prompt_tokens, c.tokens.len() as u64, "{} on {f}", c.name);
            assert_eq!(r.ids.len(), n, "{} on {f}", c.name);
            assert_eq!(r.stop, "length", "{} on {f}", c.name);
            assert_eq!(
                r.ids[..need],
                c.greedy[..need],
                "{} on {f}: greedy ids differ from transformers",
                c.name
            );
        }
        // Without --ignore-eos (on the last file given, the GGUF).
        let f = files.last().expect("a file");
        let r = run_ids(&model(f), &c.tokens, n, &[]);
        match c.greedy.iter().position(|id| EOG.contains(id)) {
            Some(i) => {
                assert_eq!(r.ids, c.greedy[..=i], "{} on {f}: eos stop", c.name);
                assert_eq!(r.stop, "eos", "{} on {f}", c.name);
            }
            None => {
                assert_eq!(r.ids[..need], c.greedy[..need], "{} on {f}", c.name);
                assert_eq!(r.stop, "length", "{} on {f}", c.name);
            }
        }
    }
}

#[test]
fn run_greedy_matches_transformers_tiny_a() {
    check_greedy("tiny-a", &["tiny-a", "tiny-a-f32.gguf"]);
}

#[test]
fn run_greedy_matches_transformers_tiny_b() {
    check_greedy("tiny-b", &["tiny-b", "tiny-b-bf16.gguf"]);
}

#[test]
fn run_greedy_matches_transformers_tiny_a_f16() {
    check_greedy("tiny-a-f16", &["tiny-a-f16.gguf"]);
}

/// The fixture references never emit an end-of-generation id, so the EOS stop is checked on
/// prompts whose continuation (on tiny-a) does: the run must stop right after the first one,
/// with the same ids as the `--ignore-eos` run up to there.
#[test]
fn run_stops_at_eos_unless_ignored() {
    let m = model("tiny-a-f32.gguf");
    // [1, 55] hits <|im_end|> (7) at step 6; [1, 18] hits <|endoftext|> (2) at step 20.
    for prompt in [[1u32, 55], [1, 18]] {
        let all = run_ids(&m, &prompt, 40, &["--ignore-eos"]);
        assert_eq!(all.ids.len(), 40);
        let i = all
            .ids
            .iter()
            .position(|id| EOG.contains(id))
            .unwrap_or_else(|| {
                panic!(
                    "prompt {prompt:?} no longer reaches an end-of-generation id: {:?}",
                    all.ids
                )
            });
        let stopped = run_ids(&m, &prompt, 40, &[]);
        assert_eq!(stopped.ids, all.ids[..=i], "prompt {prompt:?}");
        assert_eq!(stopped.stop, "eos", "prompt {prompt:?}");
        // The end-of-generation token is a special token: no text.
        assert_eq!(stopped.texts.last().map(String::as_str), Some(""));
    }
}

// ---------------------------------------------------------------------------------------------
// run: context limits
// ---------------------------------------------------------------------------------------------

#[test]
fn run_context_full() {
    let c = case("tiny-a", "p1");
    let m = model("tiny-a-f32.gguf");
    let p = c.tokens.len();
    // ctx < prompt + n: the last sampled token lands at position ctx, so ctx - p + 1 tokens,
    // and they are the unconstrained greedy ids.
    for ctx in [p, p + 1, p + 10] {
        let r = run_ids(&m, &c.tokens, 30, &["--ctx", &ctx.to_string()]);
        assert_eq!(r.stop, "context_full", "ctx {ctx}");
        assert_eq!(r.ids.len(), ctx - p + 1, "ctx {ctx}");
        assert_eq!(r.ids, c.greedy[..ctx - p + 1], "ctx {ctx}");
        assert_eq!(r.prompt_tokens, p as u64);
    }
    // Enough room: the length limit wins.
    let r = run_ids(&m, &c.tokens, 5, &["--ctx", &(p + 10).to_string()]);
    assert_eq!((r.ids.len(), r.stop.as_str()), (5, "length"));
    // Exactly at the boundary (ctx = p + n - 1) both limits are reached by the same token: n
    // tokens either way.
    let r = run_ids(&m, &c.tokens, 5, &["--ctx", &(p + 4).to_string()]);
    assert_eq!(r.ids.len(), 5, "stop {}", r.stop);
    assert_ne!(r.stop, "eos");
}

#[test]
fn run_prompt_longer_than_ctx_is_an_error() {
    let m = model("tiny-a-f32.gguf");
    let out = lfm(&[
        "run",
        "-m",
        &m,
        "--prompt-ids",
        "1,2,3,4,5",
        "--ctx",
        "4",
        "-n",
        "3",
        "--temp",
        "0",
        "--json",
    ]);
    out.assert_error(&["context", "4"]);
    assert!(out.stdout.trim().is_empty(), "{out}");
}

// ---------------------------------------------------------------------------------------------
// eval
// ---------------------------------------------------------------------------------------------

/// `eval --logits-out` writes `[T, vocab]` f32 logits equal to transformers' at the stored
/// positions (p2 crosses prefill chunks of 128 and 256).
fn check_eval(variant: &str, files: &[&str]) {
    let dir = scratch(&format!("eval-{variant}"));
    for p in ["p1", "p2", "p3"] {
        let c = case(variant, p);
        for f in files {
            let out_path = dir.join(format!("{p}-{}.npy", f.trim_end_matches('/')));
            // f32 KV: the logits are compared with transformers at 1e-3 (f16 KV is ~3e-3 off).
            let out = lfm(&[
                "eval",
                "--kv",
                "f32",
                "-m",
                &model(f),
                "--prompt-ids",
                &id_list(&c.tokens),
                "--logits-out",
                out_path.to_str().expect("UTF-8 path"),
            ]);
            out.assert_ok();
            let (shape, got) = lfm::npy::read_f32(&out_path)
                .unwrap_or_else(|e| panic!("{}: {e}\n{out}", out_path.display()));
            assert_eq!(shape, [c.tokens.len(), VOCAB], "{} on {f}", c.name);
            let mut worst = (0.0f32, 0usize);
            for (i, &pos) in c.positions.iter().enumerate() {
                let want = &c.logits[i * VOCAB..(i + 1) * VOCAB];
                let row = &got[pos * VOCAB..(pos + 1) * VOCAB];
                for (a, b) in row.iter().zip(want) {
                    let d = (a - b).abs();
                    let d = if d.is_nan() { f32::INFINITY } else { d };
                    if d > worst.0 {
                        worst = (d, pos);
                    }
                }
            }
            assert!(
                worst.0 <= 1e-3,
                "{} on {f}: max abs diff {} at position {}",
                c.name,
                worst.0,
                worst.1
            );
        }
    }
}

#[test]
fn eval_logits_match_transformers_tiny_a() {
    check_eval("tiny-a", &["tiny-a", "tiny-a-f32.gguf"]);
}

#[test]
fn eval_logits_match_transformers_tiny_b() {
    check_eval("tiny-b", &["tiny-b", "tiny-b-bf16.gguf"]);
}

#[test]
fn eval_logits_match_transformers_tiny_a_f16() {
    check_eval("tiny-a-f16", &["tiny-a-f16.gguf"]);
}

// ---------------------------------------------------------------------------------------------
// info, devices
// ---------------------------------------------------------------------------------------------

/// A little-endian reader over a byte slice, for the GGUF header.
struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> &'a [u8] {
        let s = &self.b[self.at..self.at + n];
        self.at += n;
        s
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take(4).try_into().expect("4 bytes"))
    }
    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take(8).try_into().expect("8 bytes"))
    }
    fn string(&mut self) -> &'a [u8] {
        let n = self.u64() as usize;
        self.take(n)
    }
    /// Skips one metadata value of GGUF type `t`.
    fn skip_value(&mut self, t: u32) {
        match t {
            0 | 1 | 7 => drop(self.take(1)),
            2 | 3 => drop(self.take(2)),
            4..=6 => drop(self.take(4)),
            10..=12 => drop(self.take(8)),
            8 => drop(self.string()),
            9 => {
                let et = self.u32();
                for _ in 0..self.u64() {
                    self.skip_value(et);
                }
            }
            _ => panic!("unknown GGUF value type {t}"),
        }
    }
}

/// Tensor names of a GGUF file, read with a minimal parser of the GGUF header (independent of
/// the library's).
fn gguf_tensor_names(path: &Path) -> Vec<String> {
    let b = std::fs::read(path).expect("reading a GGUF");
    let mut c = Cursor { b: &b, at: 0 };
    assert_eq!(c.take(4), b"GGUF");
    let version = c.u32();
    assert!(version >= 2, "GGUF v{version}");
    let n_tensors = c.u64();
    for _ in 0..c.u64() {
        c.string();
        let t = c.u32();
        c.skip_value(t);
    }
    (0..n_tensors)
        .map(|_| {
            let name = String::from_utf8(c.string().to_vec()).expect("UTF-8 tensor name");
            let n_dims = c.u32() as usize;
            c.take(8 * n_dims + 4 + 8); // dims, type, offset
            name
        })
        .collect()
}

/// Number of tensors in a safetensors file (its JSON header's keys, less `__metadata__`).
fn safetensors_count(path: &Path) -> usize {
    let b = std::fs::read(path).expect("reading safetensors");
    let n = u64::from_le_bytes(b[..8].try_into().expect("8 bytes")) as usize;
    let h: Value = serde_json::from_slice(&b[8..8 + n]).expect("safetensors header");
    h.as_object()
        .expect("a header object")
        .keys()
        .filter(|k| *k != "__metadata__")
        .count()
}

/// Names listed under `tensors:` in `lfm info` output (first column, up to `formats:`).
fn info_tensor_names(out: &Out) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut inside = false;
    for l in out.stdout.lines() {
        if l.trim_end() == "tensors:" {
            inside = true;
        } else if inside {
            if !l.starts_with(' ') || l.trim().is_empty() {
                break;
            }
            names.insert(l.split_whitespace().next().expect("a name").to_string());
        }
    }
    names
}

/// The value after `label` on the `info` memory-plan line that starts with it.
fn info_line<'a>(out: &'a Out, label: &str) -> &'a str {
    out.stdout
        .lines()
        .find_map(|l| l.trim_start().strip_prefix(label))
        .unwrap_or_else(|| panic!("no `{label}` line\n{out}"))
        .trim()
}

/// `model arg`, its layer pattern, KV bytes per token, the GGUF holding its tensor names, and
/// the safetensors files (empty for a GGUF).
struct InfoCase {
    model: Option<&'static str>,
    pattern: &'static str,
    conv_attn: (usize, usize),
    kv_per_token: u64,
    kv_4k_32k: &'static str,
    kv_int8: u64,
    names_from: &'static str,
    safetensors: &'static [&'static str],
}

#[test]
fn info_describes_the_model() {
    // KV per token = attention layers * 2 (K and V) * kv_heads * head_dim * 4 bytes:
    // tiny-a 2 * 2 * 2 * 16 * 4 = 512, tiny-b 2 * 2 * 1 * 16 * 4 = 256.
    let cases = [
        InfoCase {
            model: Some("tiny-a-f32.gguf"),
            pattern: "ccAcAc",
            conv_attn: (4, 2),
            kv_per_token: 512,
            kv_4k_32k: "2.0 MiB / 16.0 MiB",
            kv_int8: 160,
            names_from: "tiny-a-f32.gguf",
            safetensors: &[],
        },
        InfoCase {
            model: Some("tiny-a-f16.gguf"),
            pattern: "ccAcAc",
            conv_attn: (4, 2),
            kv_per_token: 512,
            kv_4k_32k: "2.0 MiB / 16.0 MiB",
            kv_int8: 160,
            names_from: "tiny-a-f16.gguf",
            safetensors: &[],
        },
        InfoCase {
            model: Some("tiny-a"),
            pattern: "ccAcAc",
            conv_attn: (4, 2),
            kv_per_token: 512,
            kv_4k_32k: "2.0 MiB / 16.0 MiB",
            kv_int8: 160,
            names_from: "tiny-a-f32.gguf",
            safetensors: &["tiny-a/model.safetensors"],
        },
        InfoCase {
            model: Some("tiny-b-bf16.gguf"),
            pattern: "AccAc",
            conv_attn: (3, 2),
            kv_per_token: 256,
            kv_4k_32k: "1.0 MiB / 8.0 MiB",
            kv_int8: 80,
            names_from: "tiny-b-bf16.gguf",
            safetensors: &[],
        },
        InfoCase {
            model: Some("tiny-b"),
            pattern: "AccAc",
            conv_attn: (3, 2),
            kv_per_token: 256,
            kv_4k_32k: "1.0 MiB / 8.0 MiB",
            kv_int8: 80,
            names_from: "tiny-b-bf16.gguf",
            safetensors: &[
                "tiny-b/model-00001-of-00002.safetensors",
                "tiny-b/model-00002-of-00002.safetensors",
            ],
        },
        // No -m: the built-in model, lfm2-tiny-py: 3 * 2 * 2 * 64 * 4 = 3072 B per token.
        InfoCase {
            model: None,
            pattern: "ccAccAcA",
            conv_attn: (5, 3),
            kv_per_token: 3072,
            kv_4k_32k: "12.0 MiB / 96.0 MiB",
            kv_int8: 816,
            names_from: BUILTIN,
            safetensors: &[],
        },
    ];
    for c in &cases {
        let m = c.model.map(model);
        let mut args = vec!["info"];
        if let Some(m) = &m {
            args.extend(["-m", m.as_str()]);
        }
        let out = lfm(&args);
        out.assert_ok();
        let layers = info_line(&out, "layers:");
        assert!(layers.contains(c.pattern), "layer pattern\n{out}");
        let (conv, attn) = c.conv_attn;
        assert!(
            layers.contains(&format!("{conv} conv + {attn} attention")),
            "layer counts\n{out}"
        );
        // Every tensor, by its (GGUF-convention) name, exactly once per tensor.
        let want: BTreeSet<String> = gguf_tensor_names(&fixtures().join(c.names_from))
            .into_iter()
            .collect();
        let got = info_tensor_names(&out);
        assert_eq!(got, want, "tensor names\n{out}");
        if !c.safetensors.is_empty() {
            let stored: usize = c
                .safetensors
                .iter()
                .map(|f| safetensors_count(&fixtures().join(f)))
                .sum();
            assert_eq!(got.len(), stored, "tensor count vs safetensors\n{out}");
        }
        // Memory plan.
        assert!(out.stdout.contains("memory plan"), "{out}");
        let weights = info_line(&out, "weights ");
        assert!(
            weights.ends_with("KiB") || weights.ends_with("MiB"),
            "weights line {weights:?}\n{out}"
        );
        // KV bytes per token by storage type: f16 is half of f32; int8 is a byte per value
        // plus a 4-byte scale per token and KV head (tiny-a 2 * 2 * 2 * (16 + 4) = 160).
        let (f32b, f16b) = (c.kv_per_token, c.kv_per_token / 2);
        let kv_line = |kv: &str| info_line(&out, &format!("as {kv}:")).to_string();
        assert!(kv_line("f32").starts_with(&format!("{f32b} B")), "{out}");
        let (a, b) = c.kv_4k_32k.split_once(" / ").expect("a / b");
        assert!(
            kv_line("f32").contains(&format!("({a} at 4K, {b} at 32K)")),
            "{out}"
        );
        assert!(kv_line("f16").starts_with(&format!("{f16b} B")), "{out}");
        assert!(
            kv_line("int8").starts_with(&format!("{} B", c.kv_int8)),
            "{out}"
        );
        // The plan for the default session (f16 KV).
        assert_eq!(
            info_line(&out, "KV per token"),
            format!("{f16b} B"),
            "{out}"
        );
        assert!(info_line(&out, "total").ends_with("iB"), "{out}");
    }
}

#[test]
fn devices_lists_an_adapter() {
    let out = lfm(&["devices"]);
    out.assert_ok();
    let first = out.stdout.lines().next().unwrap_or("");
    assert!(first.starts_with("[0] "), "no adapter listed\n{out}");
    assert!(out.stdout.contains("backend"), "{out}");
}

// ---------------------------------------------------------------------------------------------
// Text and chat prompts; the built-in model
// ---------------------------------------------------------------------------------------------

/// `-p TEXT` tokenizes with the model's own tokenizer and adds the BOS (add_bos is true for
/// both fixture models), for a GGUF and an HF directory: `prompt_tokens` equals the reference
/// tokenizer's count, and the prompt is really run.
#[test]
fn run_text_prompt_token_counts() {
    let texts_gguf = [
        "Hello, world! How are you today?",
        // " end" is one id only when ignore_merges is honoured.
        "The end. Send: weekend end\nend",
        "Café naïve résumé façade Øresund",
        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
        "<|startoftext|>already has a BOS",
        "",
    ];
    let texts_hf = [
        "Hello, world! How are you today?",
        "The end. Send: weekend end\nend",
    ];
    for (m, texts) in [
        ("tiny-a-f32.gguf", &texts_gguf[..]),
        ("tiny-b", &texts_hf[..]),
    ] {
        let m = model(m);
        for text in texts {
            let want = u32s(&tokenizer_case(text)["ids"]);
            assert_eq!(want.first(), Some(&1), "reference adds BOS");
            let out = lfm(&[
                "run", "-m", &m, "-p", text, "-n", "2", "--temp", "0", "--json",
            ]);
            let r = parse_run(&out);
            assert_eq!(r.prompt_tokens, want.len() as u64, "{text:?} on {m}\n{out}");
            assert_eq!(r.ids.len(), 2, "{out}");
        }
    }
}

/// The prompt count of `--chat -p TEXT`: the chat template renders one user message plus the
/// generation prompt, with exactly one BOS (the template's).
fn chat_prompt_len() -> (String, usize) {
    let cases = read_json("chat_cases.json");
    let c = cases
        .as_array()
        .expect("a list")
        .iter()
        .find(|c| c["name"] == "no_system_no_generation_prompt")
        .expect("chat case no_system_no_generation_prompt");
    let msgs = c["messages"].as_array().expect("messages");
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0]["role"], "user");
    let text = msgs[0]["content"].as_str().expect("content").to_string();
    let rendered = c["rendered"].as_str().expect("rendered");
    assert!(rendered.ends_with("<|im_end|>\n"), "{rendered:?}");
    let ids = u32s(&c["ids"]);
    assert_eq!(ids.iter().filter(|&&i| i == 1).count(), 1, "one BOS");
    // The generation prompt `<|im_start|>assistant\n`: the ids after the last <|im_start|> (6)
    // of a tokenizer case ending with it (the special token splits the text there).
    let tail = u32s(
        &tokenizer_case("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")["ids_no_special"],
    );
    let start = tail.iter().rposition(|&i| i == 6).expect("<|im_start|>");
    (text, ids.len() + tail.len() - start)
}

#[test]
fn run_chat_prompt_uses_template_without_double_bos() {
    let (text, want) = chat_prompt_len();
    for m in ["tiny-a-f32.gguf", "tiny-b"] {
        let m = model(m);
        let mut args = vec!["run", "-m", m.as_str()];
        args.extend(["--chat", "-p", &text, "-n", "3", "--temp", "0", "--json"]);
        let out = lfm(&args);
        let r = parse_run(&out);
        assert_eq!(r.prompt_tokens, want as u64, "{out}");
        assert!(!r.ids.is_empty(), "{out}");
    }
}

/// With no `-m`, `run` uses the built-in model, lfm2-tiny-py: its greedy ids are transformers'
/// for that file (`models/demo/reference.json`), from prompt ids and from the prompt text, and
/// `--chat` gives what it gives with the file named. A plain (non-JSON) run with the default
/// prompt also works.
#[test]
fn builtin_model_runs() {
    let refs = read_json(BUILTIN_REFERENCE);
    let cases = refs["files"]["lfm2-tiny-py-q8_0.gguf"]["cases"]
        .as_array()
        .expect("reference cases");
    assert!(!cases.is_empty());
    for c in cases {
        let (tokens, greedy) = (u32s(&c["tokens"]), u32s(&c["greedy"]));
        let text = c["text"].as_str().expect("prompt text");
        let ids = id_list(&tokens);
        let json = ["-n", "32", "--temp", "0", "--json", "--ignore-eos"];
        let out = lfm(&[&["run", "--prompt-ids", &ids][..], &json].concat());
        let r = parse_run_vocab(&out, BUILTIN_VOCAB);
        assert_eq!(r.ids, greedy[..32], "{out}");
        let out = lfm(&[&["run", "-p", text][..], &json].concat());
        let r = parse_run_vocab(&out, BUILTIN_VOCAB);
        assert_eq!(r.prompt_tokens, tokens.len() as u64, "{out}");
        assert_eq!(r.ids, greedy[..32], "{out}");
    }
    let file = model(BUILTIN);
    let chat = [
        "--chat",
        "-p",
        "Write a function",
        "-n",
        "8",
        "--temp",
        "0",
        "--json",
    ];
    let builtin = parse_run_vocab(&lfm(&[&["run"][..], &chat].concat()), BUILTIN_VOCAB);
    let named = parse_run_vocab(
        &lfm(&[&["run", "-m", &file][..], &chat].concat()),
        BUILTIN_VOCAB,
    );
    assert!(builtin.prompt_tokens > 0 && !builtin.ids.is_empty());
    assert_eq!(
        (builtin.prompt_tokens, &builtin.ids),
        (named.prompt_tokens, &named.ids)
    );
    let out = lfm(&["run", "-n", "4", "--seed", "1"]);
    out.assert_ok();
    assert!(
        out.stderr.contains("prompt tokens") && out.stderr.contains("4 generated"),
        "{out}"
    );
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

#[test]
fn errors_are_reported_cleanly() {
    let m = model("tiny-a-f32.gguf");
    let dir = scratch("errors");

    // A missing file, for each command that opens a model.
    let missing = dir.join("no-such-model.gguf");
    let missing = missing.to_str().expect("UTF-8 path");
    lfm(&["run", "-m", missing, "--prompt-ids", "1", "-n", "1"])
        .assert_error(&["no-such-model.gguf"]);
    lfm(&["info", "-m", missing]).assert_error(&["no-such-model.gguf"]);
    let npy = dir.join("x.npy");
    let npy = npy.to_str().expect("UTF-8 path");
    lfm(&[
        "eval",
        "-m",
        missing,
        "--prompt-ids",
        "1",
        "--logits-out",
        npy,
    ])
    .assert_error(&["no-such-model.gguf"]);

    // A directory without config.json.
    let empty = dir.join("empty-model-dir");
    std::fs::create_dir_all(&empty).expect("mkdir");
    let empty = empty.to_str().expect("UTF-8 path");
    lfm(&["run", "-m", empty, "--prompt-ids", "1", "-n", "1"]).assert_error(&["config.json"]);
    lfm(&["info", "-m", empty]).assert_error(&["config.json"]);

    // Truncated GGUFs: inside the header, and inside the tensor data.
    let full = std::fs::read(&m).expect("reading the GGUF");
    for (name, len) in [
        ("trunc-header.gguf", 10),
        ("trunc-data.gguf", full.len() / 2),
    ] {
        let p = dir.join(name);
        std::fs::write(&p, &full[..len]).expect("writing a truncated GGUF");
        let p = p.to_str().expect("UTF-8 path");
        lfm(&["run", "-m", p, "--prompt-ids", "1", "-n", "1"]).assert_error(&[name, "truncated"]);
        lfm(&["info", "-m", p]).assert_error(&[name, "truncated"]);
    }

    // A prompt id outside the vocabulary (360).
    lfm(&["run", "-m", &m, "--prompt-ids", "1,360", "-n", "1"]).assert_error(&["360", "vocab"]);
    lfm(&[
        "eval",
        "-m",
        &m,
        "--prompt-ids",
        "1,400",
        "--logits-out",
        npy,
    ])
    .assert_error(&["400", "vocab"]);
    // A malformed id list names the entry (lfm::tokenizer::parse_ids).
    lfm(&["run", "-m", &m, "--prompt-ids", "1, 2,x", "-n", "1"])
        .assert_error(&["token id 3 of the list", "\"x\""]);

    // An invalid sampler setting, greedy or not.
    for temp in ["0", "0.7"] {
        lfm(&[
            "run",
            "-m",
            &m,
            "--prompt-ids",
            "1,2",
            "-n",
            "1",
            "--top-p",
            "0",
            "--temp",
            temp,
        ])
        .assert_error(&["top-p"]);
    }

    // A bad flag: clap's usage error (exit 2).
    let out = lfm(&["run", "-m", &m, "--bogus"]);
    out.assert_error(&["--bogus"]);
    assert_eq!(out.code, Some(2), "{out}");
}

/// A reader that goes away (`lfm info | head -1`) must not make the CLI panic. The read end is
/// closed before the process starts, so its first write fails with EPIPE deterministically.
#[test]
fn closed_stdout_does_not_panic() {
    let m = model("tiny-a-f32.gguf");
    for args in [
        vec!["info", "-m", m.as_str()],
        vec!["devices"],
        vec![
            "run",
            "-m",
            &m,
            "--prompt-ids",
            "1,2",
            "-n",
            "3",
            "--temp",
            "0",
            "--json",
        ],
        vec![
            "run",
            "-m",
            &m,
            "--prompt-ids",
            "1,2",
            "-n",
            "3",
            "--temp",
            "0",
        ],
    ] {
        let (reader, writer) = std::io::pipe().expect("a pipe");
        drop(reader);
        let output = Command::new(env!("CARGO_BIN_EXE_lfm"))
            .args(&args)
            .env("XDG_RUNTIME_DIR", xdg_runtime_dir())
            .env("RUST_BACKTRACE", "1")
            .stdin(Stdio::null())
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .expect("running lfm");
        let out = Out {
            cmd: format!("lfm {} (stdout closed)", args.join(" ")),
            code: output.status.code(),
            stdout: String::new(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        };
        out.assert_no_panic();
    }
}

// ---------------------------------------------------------------------------------------------
// chat
// ---------------------------------------------------------------------------------------------

/// Two user lines then EOF: two replies, exit 0, and the second turn reuses the cached
/// conversation, i.e. only the new tokens are fed.
///
/// Turn 1 feeds BOS + `<|im_start|>user\n{long line}<|im_end|>\n<|im_start|>assistant\n`.
/// With the cache reused, turn 2 feeds only the end of the reply plus
/// `<|im_end|>\n<|im_start|>user\nok<|im_end|>\n<|im_start|>assistant\n`, which is shorter than
/// turn 1 because the second line is much shorter than the first; without reuse it feeds the
/// whole conversation, which contains all of turn 1.
#[test]
fn chat_two_turns_reuse_the_cache() {
    let m = model("tiny-a-f32.gguf");
    let out = lfm_with_stdin(
        &["chat", "-m", &m, "-n", "8", "--temp", "0"],
        Some("Please write a short poem about the sea and the sky\nok\n"),
    );
    out.assert_ok();
    assert!(!out.stdout.trim().is_empty(), "no reply\n{out}");
    assert!(
        out.stdout.matches('\n').count() >= 2,
        "expected two replies\n{out}"
    );
    // `[N new prompt tokens, M generated, X tok/s]` per turn.
    let turns: Vec<(usize, usize)> = out
        .stderr
        .lines()
        .filter_map(|l| {
            let l = l.trim_start_matches("> ");
            let rest = l.strip_prefix('[')?;
            let (n, rest) = rest.split_once(" new prompt tokens, ")?;
            let (g, _) = rest.split_once(" generated")?;
            Some((n.parse().ok()?, g.parse().ok()?))
        })
        .collect();
    assert_eq!(turns.len(), 2, "expected two turn stats lines\n{out}");
    let ((new1, gen1), (new2, gen2)) = (turns[0], turns[1]);
    assert!(gen1 >= 1 && gen2 >= 1, "{out}");
    assert!(
        new2 < new1,
        "turn 2 fed {new2} prompt tokens, not fewer than turn 1's {new1}: the conversation \
         was re-fed from the start instead of reusing the cache\n{out}"
    );
}

// ---------------------------------------------------------------------------------------------
// memory-bounded sessions: snapshots, sliding, budgets
// ---------------------------------------------------------------------------------------------

/// `--save-session` after 8 greedy tokens, then `--load-session -n 8` with no prompt, gives the
/// same 16 tokens as one run of 16 (also with a sliding int8 ring that evicts on the way).
#[test]
fn session_save_and_load_continue_exactly() {
    let dir = scratch("session");
    let m = model("tiny-a-f16.gguf");
    let c = case("tiny-a", "p1");
    for (name, extra) in [
        ("stop", vec![]),
        (
            "slide",
            vec![
                "--ctx",
                "16",
                "--on-full",
                "slide",
                "--keep-sink",
                "2",
                "--kv",
                "int8",
                "--chunk",
                "8",
            ],
        ),
    ] {
        let all = run_ids(&m, &c.tokens, 16, &[&["--ignore-eos"], &extra[..]].concat());
        let snap = dir.join(format!("{name}.lfmsession"));
        let snap_s = snap.to_str().expect("UTF-8 path");
        let mut first_args = vec!["--ignore-eos", "--save-session", snap_s];
        first_args.extend_from_slice(&extra);
        let first = run_ids(&m, &c.tokens, 8, &first_args);
        assert!(snap.is_file(), "{name}: no snapshot written");
        let out = lfm(&[
            "run",
            "-m",
            &m,
            "--load-session",
            snap_s,
            "-n",
            "8",
            "--ignore-eos",
            "--json",
        ]);
        let second = parse_run(&out);
        assert_eq!(
            second.prompt_tokens, 0,
            "{name}: nothing re-processed\n{out}"
        );
        let joined: Vec<u32> = first.ids.iter().chain(&second.ids).copied().collect();
        assert_eq!(joined, all.ids, "{name}: 8 + save + load + 8 must equal 16");
    }
    // A bad snapshot is a clear error.
    let bad = dir.join("bad.lfmsession");
    std::fs::write(&bad, b"not a snapshot at all, just some bytes").expect("write");
    let out = lfm(&[
        "run",
        "-m",
        &m,
        "--load-session",
        bad.to_str().expect("UTF-8"),
        "-n",
        "2",
    ]);
    out.assert_error(&["snapshot", "magic"]);
}

/// `--on-full slide` keeps generating past the context; `stop` ends with context_full.
#[test]
fn run_slides_past_the_context() {
    let m = model("tiny-a-f16.gguf");
    let r = run_ids(
        &m,
        &[1, 20, 30],
        40,
        &["--ctx", "16", "--on-full", "slide", "--ignore-eos"],
    );
    assert_eq!((r.ids.len(), r.stop.as_str()), (40, "length"));
    let r = run_ids(&m, &[1, 20, 30], 40, &["--ctx", "16", "--ignore-eos"]);
    assert_eq!(r.stop, "context_full");
}

/// `info --mem-budget` prints the plan it chose; a budget too small fails with the plan.
#[test]
fn info_prints_the_memory_plan_for_a_budget() {
    let m = model("tiny-a-f16.gguf");
    let out = lfm(&["info", "-m", &m, "--mem-budget", "2MiB"]);
    out.assert_ok();
    let plan = out
        .stdout
        .lines()
        .find(|l| l.starts_with("device memory plan:"))
        .unwrap_or_else(|| panic!("no plan\n{out}"));
    assert!(plan.contains("context") && plan.contains("KV"), "{out}");
    assert!(out.stdout.contains("of a 2.0 MiB budget (fits)"), "{out}");
    for kv in ["f32", "f16", "int8"] {
        assert!(
            out.stdout
                .lines()
                .any(|l| l.trim_start().starts_with(&format!("as {kv}:")) && l.contains(" B ")),
            "KV bytes per token for {kv}\n{out}"
        );
    }
    let out = lfm(&["info", "-m", &m, "--mem-budget", "100KiB"]);
    out.assert_error(&["budget"]);
    assert!(out.stderr.contains("does not fit"), "{out}");
    let out = lfm(&["run", "-m", &m, "--mem-budget", "lots", "-n", "1"]);
    out.assert_error(&["size"]);
}
