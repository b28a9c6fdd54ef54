//! `lfm bench`: prompt processing (pp) and decode (tg) speed in the style of llama-bench, with
//! the scheduler's counters (dispatches and submits per token, bytes read back) and memory.

use std::time::Instant;

use anyhow::{Result, bail};
use clap::Args;
use lfm::sampling::SamplerConfig;

use crate::ModelArgs;
use crate::commands::{human_bytes, load};

#[derive(Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Prompt tokens to process (pp).
    #[arg(short = 'p', long = "n-prompt", default_value_t = 512)]
    pub n_prompt: usize,
    /// Tokens to generate (tg).
    #[arg(short = 'n', long = "n-gen", default_value_t = 128)]
    pub n_gen: usize,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Start with the KV ring at this many tokens (comma-separated for several runs, e.g.
    /// 1024,4096,16384,32768), to measure decode at long context. The ring is positioned, not
    /// prefilled: its keys are zeros, which cost attention the same as real ones.
    #[arg(long, value_delimiter = ',')]
    pub fill: Vec<usize>,
}

pub fn bench(a: BenchArgs) -> Result<()> {
    if a.n_prompt == 0 || a.n_gen == 0 {
        bail!("-p and -n must be at least 1");
    }
    if !a.fill.is_empty() {
        return bench_fill(&a);
    }
    let ctx = a
        .model
        .plan
        .ctx
        .unwrap_or(4096)
        .max(a.n_prompt + a.n_gen + 1);
    let t0 = Instant::now();
    let mut l = load(&a.model, false, ctx)?;
    let load_s = t0.elapsed().as_secs_f64();
    l.session.set_sampler(SamplerConfig::greedy())?;
    let v = l.file.config.vocab_size as u32;
    // Deterministic ids that avoid the special tokens.
    let prompt: Vec<u32> = (0..a.n_prompt as u32)
        .map(|i| 16 + (i * 7919) % (v - 16))
        .collect();
    // Warm-up: builds the prefill and decode plans (pipelines, bind groups).
    l.session
        .generate(&prompt[..a.n_prompt.min(8)], 2, &|_| false, &mut |_| true)?;
    l.session.reset();
    let submits0 = l.session.submits();
    let st = l
        .session
        .generate(&prompt, a.n_gen, &|_| false, &mut |_| true)?;
    let prefill_submits = a.n_prompt.div_ceil(l.session.options().chunk);
    let decode_steps = st.generated.len().saturating_sub(1).max(1);
    let submits_per_token =
        (l.session.submits() - submits0 - prefill_submits) as f64 / decode_steps as f64;
    let rss = lfm::platform::peak_rss_bytes();
    let gpu = &l.session.model().gpu;
    let r = serde_json::json!({
        "model": l.file.path.display().to_string(),
        "adapter": gpu.describe(),
        "n_prompt": a.n_prompt,
        "n_gen": st.generated.len(),
        "pp_tok_s": st.prefill_tok_s(),
        "tg_tok_s": st.decode_tok_s(),
        "ttft_ms": st.prefill_seconds * 1e3,
        "load_s": load_s,
        "dispatches_per_token": l.session.dispatches_per_token(),
        "submits_per_token": submits_per_token,
        "readback_bytes_per_token": 4,
        "weight_bytes": l.session.model().weight_bytes,
        "device_bytes": l.session.device_bytes(),
        "peak_rss_bytes": rss,
    });
    if a.json {
        println!("{r}");
        return Ok(());
    }
    println!("model    {}", l.file.path.display());
    println!("adapter  {}", gpu.describe());
    println!("| test  | tok/s | notes |");
    println!("|-------|------:|-------|");
    println!(
        "| pp{} | {:.2} | time to first token {:.1} ms |",
        a.n_prompt,
        st.prefill_tok_s(),
        st.prefill_seconds * 1e3
    );
    println!(
        "| tg{} | {:.2} | {:.2} ms/token |",
        st.generated.len(),
        st.decode_tok_s(),
        1e3 * st.decode_seconds / decode_steps as f64
    );
    println!(
        "dispatches/token {}, submits/token {:.2}, readback 4 B/token, load {:.2} s",
        l.session.dispatches_per_token(),
        submits_per_token,
        load_s
    );
    println!(
        "device {} (weights {}), peak host RSS {}",
        human_bytes(l.session.device_bytes()),
        human_bytes(l.session.model().weight_bytes),
        rss.map_or("n/a".into(), human_bytes)
    );
    Ok(())
}

/// Decode speed and device bytes with the KV ring positioned at each `--fill` length.
fn bench_fill(a: &BenchArgs) -> Result<()> {
    let mut rows = Vec::new();
    for &fill in &a.fill {
        let ctx = a
            .model
            .plan
            .ctx
            .unwrap_or(0)
            .max(fill + a.n_prompt + a.n_gen + 1);
        let mut l = load(&a.model, false, ctx)?;
        l.session.set_sampler(SamplerConfig::greedy())?;
        let v = l.file.config.vocab_size as u32;
        let prompt: Vec<u32> = (0..a.n_prompt as u32)
            .map(|i| 16 + (i * 7919) % (v - 16))
            .collect();
        // Warm-up at the same fill, then the measured run.
        l.session.bench_seek(fill)?;
        l.session.generate(&prompt, 2, &|_| false, &mut |_| true)?;
        l.session.bench_seek(fill)?;
        let bytes0 = l.session.device_bytes();
        let st = l
            .session
            .generate(&prompt, a.n_gen, &|_| false, &mut |_| true)?;
        let o = l.session.options();
        let c = &l.file.config;
        let r = serde_json::json!({
            "model": l.file.path.display().to_string(),
            "adapter": l.session.model().gpu.describe(),
            "fill": fill,
            "ctx": o.ctx,
            "kv": o.kv.name(),
            "kv_bytes_per_token": lfm::memory::kv_bytes_per_token(c, o.kv),
            "n_gen": st.generated.len(),
            "decode_tok_s": st.decode_tok_s(),
            "device_bytes": l.session.device_bytes(),
            "device_bytes_grew": l.session.device_bytes() != bytes0,
        });
        if a.json {
            println!("{r}");
        } else {
            println!(
                "fill {:>6}  ctx {:>6}  KV {:<5} {:>6} B/token  decode {:>8.3} tok/s  device {}",
                fill,
                o.ctx,
                o.kv.name(),
                lfm::memory::kv_bytes_per_token(c, o.kv),
                st.decode_tok_s(),
                human_bytes(l.session.device_bytes())
            );
        }
        rows.push(r);
    }
    Ok(())
}
