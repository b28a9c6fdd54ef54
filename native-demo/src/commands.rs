//! `run`, `chat` and `eval`.

use std::io::{BufRead, Write};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use lfm::ModelFile;
use lfm::chat::ChatMessage;
use lfm::conversation::Conversation;
use lfm::gpu::{Gpu, GpuOptions};
use lfm::memory::{self, MemoryPlan};
use lfm::model::GpuModel;
use lfm::ops::attention::KvType;
use lfm::sampling::SamplerConfig;
use lfm::session::{OnFull, Session, SessionOptions, StopReason};
use lfm::tokenizer::{StreamDecoder, Tokenizer};

use crate::{ChatArgs, EvalArgs, ModelArgs, PlanArgs, RunArgs, SampleArgs};

/// The built-in model: lfm2-tiny-py, a 4.5M-parameter LFM2 trained on Python's standard library
/// by tools/train_demo.py (model card: models/demo/README.md).
const BUILTIN: &[u8] = include_bytes!("../../models/demo/lfm2-tiny-py-q8_0.gguf");
const BUILTIN_NAME: &str = "built-in lfm2-tiny-py (Q8_0)";

pub fn open_model(path: Option<&std::path::Path>) -> Result<ModelFile> {
    Ok(match path {
        Some(p) => ModelFile::open(p)?,
        None => ModelFile::from_gguf_bytes(BUILTIN.to_vec(), BUILTIN_NAME)?,
    })
}

pub struct Loaded {
    pub file: ModelFile,
    pub tok: Tokenizer,
    pub session: Session,
}

/// The session options `plan` asks for (with `--mem-budget`, the ones that fit it) and the
/// memory plan they give. `ctx_floor`: the least context the command needs.
pub fn session_options(
    file: &ModelFile,
    plan: &PlanArgs,
    logits_all: bool,
    ctx_floor: usize,
) -> Result<MemoryPlan> {
    let c = &file.config;
    let kv = match &plan.kv {
        Some(k) => KvType::parse(k)?,
        None => KvType::F16,
    };
    let default_ctx = 4096.min(lfm::session::max_context(c));
    let want = SessionOptions {
        ctx: plan.ctx.unwrap_or(default_ctx).max(ctx_floor),
        chunk: plan.chunk,
        logits_all,
        kv,
        on_full: OnFull::parse(&plan.on_full)?,
        sinks: plan.keep_sink,
    };
    let weights = memory::weight_device_bytes(file)?;
    let mp = match &plan.mem_budget {
        Some(b) => {
            let budget = memory::parse_bytes(b)?;
            let mp = memory::plan_for_budget(
                c,
                weights,
                budget,
                &want,
                plan.ctx.is_some(),
                plan.kv.is_some(),
            )?;
            if mp.opts.ctx < ctx_floor {
                bail!(
                    "this command needs a context of {ctx_floor} tokens; the budget allows {}:\n{mp}",
                    mp.opts.ctx
                );
            }
            mp
        }
        None => MemoryPlan::new(c, weights, want),
    };
    mp.opts.check(c)?;
    Ok(mp)
}

/// Opens the model and uploads it to the chosen adapter.
pub fn load_model(args: &ModelArgs) -> Result<(ModelFile, Tokenizer, Arc<GpuModel>)> {
    let file = open_model(args.model.as_deref())?;
    let tok = file.tokenizer()?;
    let needs = lfm::model::device_needs(&file)?;
    let opts = GpuOptions {
        backends: None,
        adapter_name: args.adapter.clone(),
        ..Default::default()
    };
    let gpu = Arc::new(pollster::block_on(Gpu::new(&opts, &needs))?);
    let total = file.weight_bytes();
    // A progress bar for anything that takes a moment (indicatif hides it off a terminal).
    let pb = (total > (16 << 20)).then(|| {
        let pb = crate::tools::bar();
        pb.set_length(total);
        pb.set_message("uploading weights");
        pb
    });
    let model = GpuModel::upload(gpu, &file, |done, _| {
        if let Some(pb) = &pb {
            pb.set_position(done);
        }
    })?;
    if let Some(pb) = pb {
        pb.finish_and_clear();
    }
    Ok((file, tok, Arc::new(model)))
}

/// Opens the model, uploads it and creates a session; the plan is checked before the upload.
pub fn load(args: &ModelArgs, logits_all: bool, ctx_floor: usize) -> Result<Loaded> {
    let file = open_model(args.model.as_deref())?;
    let plan = session_options(&file, &args.plan, logits_all, ctx_floor)?;
    drop(file);
    let (file, tok, model) = load_model(args)?;
    let session = Session::new(model, plan.opts)?;
    Ok(Loaded { file, tok, session })
}

/// Sampler settings from the flags, over `base` (the defaults, or a restored session's).
fn sampler(a: &SampleArgs, base: Option<&SamplerConfig>) -> SamplerConfig {
    let seed = a.seed.or(base.map(|b| b.seed)).unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
    });
    let temperature = a.temp.or(base.map(|b| b.temperature)).unwrap_or(0.3);
    SamplerConfig {
        temperature,
        top_k: a.top_k.or(base.map(|b| b.top_k)).unwrap_or(0),
        top_p: a.top_p.or(base.map(|b| b.top_p)).unwrap_or(1.0),
        min_p: a.min_p.or(base.map(|b| b.min_p)).unwrap_or(0.15),
        repeat_penalty: a
            .repeat_penalty
            .or(base.map(|b| b.repeat_penalty))
            .unwrap_or(if temperature == 0.0 { 1.0 } else { 1.05 }),
        repeat_last_n: base.map_or(64, |b| b.repeat_last_n),
        seed,
    }
}

pub fn run(a: RunArgs) -> Result<()> {
    let mut l = match &a.load_session {
        Some(path) => {
            let (file, tok, model) = load_model(&a.model)?;
            let bytes =
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            let session = Session::restore(model, &bytes, &path.display().to_string())?;
            Loaded { file, tok, session }
        }
        None => load(&a.model, false, 1)?,
    };
    let base = a.load_session.as_ref().map(|_| l.session.sampler().clone());
    l.session.set_sampler(sampler(&a.sample, base.as_ref()))?;
    let prompt: Vec<u32> = match (&a.prompt_ids, &a.prompt) {
        (Some(ids), _) => ids.clone(),
        (None, Some(text)) if a.chat => {
            l.tok.encode_chat(&[ChatMessage::user(text)], None, true)?
        }
        (None, Some(text)) => l.tok.encode(text)?,
        // A restored session continues from its pending token.
        (None, None) if a.load_session.is_some() => Vec::new(),
        (None, None) => {
            let text = "def fibonacci(n):";
            if a.chat {
                l.tok.encode_chat(&[ChatMessage::user(text)], None, true)?
            } else {
                l.tok.encode(text)?
            }
        }
    };
    if prompt.is_empty() && a.load_session.is_none() {
        bail!("the prompt is empty");
    }
    let tok = &l.tok;
    let mut sink = Sink::new(tok, a.json);
    let eog = |id: u32| !a.ignore_eos && tok.is_eog(id);
    let stats = l
        .session
        .generate(&prompt, a.n, &eog, &mut |id| sink.push(id))?;
    let (rest, mut out) = sink.finish()?;
    if let Some(path) = &a.save_session {
        let bytes = l.session.save()?;
        std::fs::write(path, &bytes).with_context(|| format!("writing {}", path.display()))?;
    }
    let json = a.json;
    if json {
        if !rest.is_empty() {
            eprintln!("(undecodable tail: {rest:?})");
        }
        let done = serde_json::json!({
            "done": true,
            "prompt_tokens": stats.prompt_tokens,
            "generated_tokens": stats.generated.len(),
            "prefill_tok_s": stats.prefill_tok_s(),
            "decode_tok_s": stats.decode_tok_s(),
            "device_bytes": l.session.device_bytes(),
            "stop": stats.stop.as_str(),
        });
        writeln!(out, "{done}")?;
    } else {
        writeln!(out, "{rest}")?;
        eprintln!(
            "[{} prompt tokens, {} generated; prefill {:.1} tok/s, decode {:.1} tok/s; stop: {}; {} on {}]",
            stats.prompt_tokens,
            stats.generated.len(),
            stats.prefill_tok_s(),
            stats.decode_tok_s(),
            stats.stop.as_str(),
            human_bytes(l.session.device_bytes()),
            l.session.model().gpu.describe()
        );
    }
    Ok(())
}

pub fn eval(a: EvalArgs) -> Result<()> {
    let mut l = load(&a.model, true, a.prompt_ids.len().max(1))?;
    let logits = l.session.eval(&a.prompt_ids)?;
    let v = l.file.config.vocab_size;
    lfm::npy::write_f32(&a.logits_out, &[a.prompt_ids.len(), v], &logits)
        .with_context(|| format!("writing {}", a.logits_out.display()))?;
    eprintln!(
        "wrote [{}, {v}] logits to {}",
        a.prompt_ids.len(),
        a.logits_out.display()
    );
    Ok(())
}

pub fn chat(a: ChatArgs) -> Result<()> {
    let mut l = load(&a.model, false, 1)?;
    l.session.set_sampler(sampler(&a.sample, None))?;
    if l.tok.chat_template().is_none() {
        bail!("this model has no chat template");
    }
    let mut conv = Conversation::new(a.system.as_deref());
    eprintln!(
        "chatting with {} on {} (context {} tokens). /reset starts over, /exit or Ctrl-D quits.",
        l.file.path.display(),
        l.session.model().gpu.describe(),
        l.session.options().ctx
    );
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        eprint!("> ");
        std::io::stderr().flush()?;
        let Some(line) = lines.next() else { break };
        let line = line?;
        match line.trim() {
            "" => continue,
            "/exit" | "/quit" => break,
            "/reset" => {
                conv.reset();
                l.session.reset();
                continue;
            }
            _ => {}
        }
        let full = conv.push_user(&l.tok, &line)?;
        let start = l.session.reuse_prefix(&full);
        let tok = &l.tok;
        let mut sink = Sink::new(tok, false);
        let stats = l
            .session
            .generate(&full[start..], a.n, &|id| tok.is_eog(id), &mut |id| {
                sink.push(id)
            })?;
        let (rest, mut out) = sink.finish()?;
        writeln!(out, "{rest}")?;
        conv.push_reply(tok, &stats.generated)?;
        eprintln!(
            "[{} new prompt tokens, {} generated, {:.1} tok/s]",
            full.len() - start,
            stats.generated.len(),
            stats.decode_tok_s()
        );
        if stats.stop == StopReason::ContextFull {
            eprintln!("[context full: starting a new conversation]");
            conv.reset();
            l.session.reset();
        }
    }
    Ok(())
}

/// Streams generated ids to stdout as text, or as `{"id","text"}` JSON lines. A write error
/// (e.g. a closed pipe) is kept and stops generation; `finish` returns it.
struct Sink<'a> {
    tok: &'a Tokenizer,
    dec: StreamDecoder,
    out: std::io::StdoutLock<'static>,
    json: bool,
    err: Option<anyhow::Error>,
}

impl<'a> Sink<'a> {
    fn new(tok: &'a Tokenizer, json: bool) -> Self {
        Sink {
            tok,
            dec: StreamDecoder::new(true),
            out: std::io::stdout().lock(),
            json,
            err: None,
        }
    }

    /// Writes the text `id` completes; `false` once writing has failed.
    fn push(&mut self, id: u32) -> bool {
        let r = (|| -> Result<()> {
            let text = self.dec.push(self.tok, id)?;
            if self.json {
                writeln!(
                    self.out,
                    "{}",
                    serde_json::json!({ "id": id, "text": text })
                )?;
            } else {
                write!(self.out, "{text}")?;
            }
            self.out.flush()?;
            Ok(())
        })();
        match r {
            Ok(()) => true,
            Err(e) => {
                self.err = Some(e);
                false
            }
        }
    }

    /// The first write error, or the text still held back and the stream.
    fn finish(mut self) -> Result<(String, std::io::StdoutLock<'static>)> {
        if let Some(e) = self.err.take() {
            return Err(e);
        }
        let rest = self.dec.finish(self.tok)?;
        Ok((rest, self.out))
    }
}

pub use lfm::memory::human_bytes;
