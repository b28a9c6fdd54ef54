//! `lfm`: run LFM2 models on WebGPU from the command line.
//!
//! `lfm run`, `lfm chat`, `lfm eval`, `lfm info`, `lfm devices`, `lfm quantize`, `lfm synth`.
//! With no `-m`, `run` and `chat` use the small model built into the binary (see README.md).

mod bench;
mod commands;
mod info;
mod tools;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(name = "lfm", version, about = "LFM2 inference on WebGPU")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Generate text from a prompt, streaming it.
    Run(RunArgs),
    /// Interactive multi-turn chat with the model's chat template.
    Chat(ChatArgs),
    /// Write the logits of every prompt position to a .npy file.
    Eval(EvalArgs),
    /// Describe a model: architecture, layers, tensor formats, memory plan.
    Info(InfoArgs),
    /// List GPU adapters with their backend, features and limits.
    Devices,
    /// Quantize a model (HF directory or GGUF) to a GGUF file: q4_0, q8_0 or q4_k_m.
    Quantize(tools::QuantizeArgs),
    /// Write a random-weight LFM2 with a released shape, as GGUF.
    Synth(tools::SynthArgs),
    /// Measure prompt processing and decode speed, in the style of llama-bench.
    Bench(bench::BenchArgs),
}

/// Model, device and context options shared by the commands that run a model.
#[derive(Args, Clone)]
pub struct ModelArgs {
    /// A .gguf file or a Hugging Face model directory (default: the built-in tiny model).
    #[arg(short = 'm', long = "model")]
    pub model: Option<PathBuf>,
    #[command(flatten)]
    pub plan: PlanArgs,
    /// Adapter whose name contains this text (see `lfm devices`).
    #[arg(long)]
    pub adapter: Option<String>,
}

/// How a session is sized: context, KV storage, what a full context does, memory budget.
#[derive(Args, Clone)]
pub struct PlanArgs {
    /// Context in tokens: the most a token attends to (default 4096, or the largest that fits
    /// --mem-budget).
    #[arg(long)]
    pub ctx: Option<usize>,
    /// KV cache storage: f16, int8 or f32 (default f16; with --mem-budget, int8 when it allows a
    /// longer context).
    #[arg(long)]
    pub kv: Option<String>,
    /// When the context is full: stop, or slide (keep the first --keep-sink tokens and the most
    /// recent ones).
    #[arg(long = "on-full", default_value = "stop")]
    pub on_full: String,
    /// Tokens at the start that sliding never evicts.
    #[arg(long = "keep-sink", default_value_t = 4)]
    pub keep_sink: usize,
    /// Device memory for weights and session (e.g. 1GiB, 512MiB): picks the context and KV type
    /// that fit, or fails up front with the plan.
    #[arg(long = "mem-budget")]
    pub mem_budget: Option<String>,
    /// Prefill chunk length.
    #[arg(long, default_value_t = 128)]
    pub chunk: usize,
}

/// Sampling options.
#[derive(Args, Clone)]
pub struct SampleArgs {
    /// Temperature; 0 = greedy [default: 0.3].
    #[arg(long = "temp")]
    pub temp: Option<f32>,
    /// Keep the k most likely tokens (0 = off) [default: 0].
    #[arg(long = "top-k")]
    pub top_k: Option<u32>,
    /// Keep the smallest set of tokens whose probability reaches p (1 = off) [default: 1].
    #[arg(long = "top-p")]
    pub top_p: Option<f32>,
    /// Drop tokens less likely than min-p times the most likely one (0 = off) [default: 0.15].
    #[arg(long = "min-p")]
    pub min_p: Option<f32>,
    /// Penalise the last 64 tokens (1 = off; default 1.05, or 1 with --temp 0 so that greedy
    /// decoding is the plain argmax).
    #[arg(long = "repeat-penalty")]
    pub repeat_penalty: Option<f32>,
    /// Random seed (default: from the clock).
    #[arg(long)]
    pub seed: Option<u64>,
}

#[derive(Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub sample: SampleArgs,
    /// Prompt text, tokenized with the model's own rule (BOS per add_bos).
    #[arg(short = 'p', long = "prompt", conflicts_with = "prompt_ids")]
    pub prompt: Option<String>,
    /// Prompt token ids, fed exactly as given (no BOS added), e.g. 1,2,3.
    // `::std::vec::Vec`: clap takes the list whole, parsed by `lfm::tokenizer::parse_ids`.
    #[arg(long = "prompt-ids", value_parser = lfm::tokenizer::parse_ids)]
    pub prompt_ids: Option<::std::vec::Vec<u32>>,
    /// Tokens to generate.
    #[arg(short = 'n', long = "n-predict", default_value_t = 64)]
    pub n: usize,
    /// Wrap the prompt as a user message in the model's chat template.
    #[arg(long)]
    pub chat: bool,
    /// One JSON object per token, then a summary object.
    #[arg(long)]
    pub json: bool,
    /// Do not stop at end-of-generation tokens.
    #[arg(long = "ignore-eos")]
    pub ignore_eos: bool,
    /// After generating, save the session (KV ring, conv states, position, history, sampler)
    /// to this file.
    #[arg(long = "save-session")]
    pub save_session: Option<PathBuf>,
    /// Continue a session saved with --save-session (same model; no prompt needed; its
    /// context, KV type and sampler settings are restored, sampling flags given here override).
    #[arg(long = "load-session")]
    pub load_session: Option<PathBuf>,
}

#[derive(Args)]
pub struct ChatArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub sample: SampleArgs,
    /// System prompt.
    #[arg(short = 's', long)]
    pub system: Option<String>,
    /// Most tokens per reply.
    #[arg(short = 'n', long = "n-predict", default_value_t = 512)]
    pub n: usize,
}

#[derive(Args)]
pub struct EvalArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Prompt token ids, e.g. 1,2,3.
    #[arg(long = "prompt-ids", value_parser = lfm::tokenizer::parse_ids, required = true)]
    pub prompt_ids: ::std::vec::Vec<u32>,
    /// Output .npy: [T, vocab] little-endian f32.
    #[arg(long = "logits-out")]
    pub logits_out: PathBuf,
}

#[derive(Args)]
pub struct InfoArgs {
    /// A .gguf file or a Hugging Face model directory (default: the built-in tiny model).
    #[arg(short = 'm', long = "model")]
    pub model: Option<PathBuf>,
    /// The memory plan for these session options (see `lfm run --help`).
    #[command(flatten)]
    pub plan: PlanArgs,
}

fn main() -> ExitCode {
    quiet_mesa();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let r = match cli.cmd {
        Cmd::Run(a) => commands::run(a),
        Cmd::Chat(a) => commands::chat(a),
        Cmd::Eval(a) => commands::eval(a),
        Cmd::Info(a) => info::info(a),
        Cmd::Devices => info::devices(),
        Cmd::Quantize(a) => tools::quantize(a),
        Cmd::Synth(a) => tools::synth(a),
        Cmd::Bench(a) => bench::bench(a),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        // The reader went away (`lfm info | head`): stop quietly, as other tools do.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Mesa's Vulkan device-select layer looks for a Wayland display through `XDG_RUNTIME_DIR` and
/// prints "error: XDG_RUNTIME_DIR is invalid" on stderr when it is unset (headless machines, CI).
/// Point it at a private directory so stderr carries only our own messages.
fn quiet_mesa() {
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        let dir = std::env::temp_dir().join("lfm-xdg-runtime");
        if std::fs::create_dir_all(&dir).is_ok() {
            // SAFETY: called first thing in main, before any other thread exists.
            unsafe { std::env::set_var("XDG_RUNTIME_DIR", &dir) };
        }
    }
}
