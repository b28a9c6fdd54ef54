//! `lfm quantize` and `lfm synth`: write GGUF files on the CPU, with a progress bar on stderr.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use lfm::ModelFile;
use lfm::quantize::synth::{self, Preset};
use lfm::quantize::{self, FileType, Progress, QuantizeOptions, Summary};

#[derive(Args)]
pub struct QuantizeArgs {
    /// Source model: a Hugging Face directory (f32/f16/bf16) or an F32/F16/BF16 .gguf.
    #[arg(short = 'm', long = "model")]
    pub model: PathBuf,
    /// Output type: q4_0, q8_0, q4_k_m (llama.cpp's per-tensor rules), or f16.
    #[arg(short = 't', long = "type")]
    pub file_type: FileType,
    /// Output .gguf file.
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
    /// Accept a source that is already block-quantized (precision is lost twice).
    #[arg(long = "allow-requantize")]
    pub allow_requantize: bool,
}

#[derive(Args)]
pub struct SynthArgs {
    /// Model size: micro, tiny, 350m, 700m, 1.2b or 2.6b (the released LFM2 shapes).
    #[arg(long)]
    pub preset: Preset,
    /// Weight type: f16, q8_0, q4_0 or q4_k_m.
    #[arg(long = "quant", default_value = "f16")]
    pub quant: FileType,
    /// Seed of the random weights.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output .gguf file.
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
}

/// A byte-count progress bar that follows [`Progress`] reports.
pub fn bar() -> ProgressBar {
    let pb = ProgressBar::new(0);
    pb.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({eta}) {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    pb
}

fn on_progress(pb: &ProgressBar) -> impl FnMut(&Progress) + '_ {
    let mut last = usize::MAX;
    move |p: &Progress| {
        pb.set_length(p.bytes_total);
        pb.set_position(p.bytes_done);
        if p.index != last {
            last = p.index;
            pb.set_message(format!("{}/{} {}", p.index + 1, p.count, p.tensor));
        }
    }
}

fn report(s: &Summary, out: &std::path::Path, started: Instant) {
    for note in &s.notes {
        eprintln!("note: {note}");
    }
    let formats: Vec<String> = s.formats.iter().map(|(f, n)| format!("{n} {f}")).collect();
    eprintln!(
        "wrote {} ({:.1} MiB, {} tensors: {}) in {:.1} s",
        out.display(),
        s.bytes as f64 / (1 << 20) as f64,
        s.tensors.len(),
        formats.join(", "),
        started.elapsed().as_secs_f64()
    );
}

pub fn quantize(a: QuantizeArgs) -> Result<()> {
    let started = Instant::now();
    let model = ModelFile::open(&a.model)?;
    let opts = QuantizeOptions {
        file_type: a.file_type,
        allow_requantize: a.allow_requantize,
    };
    let pb = bar();
    let r = quantize::quantize_model(&model, opts, &a.output, &mut on_progress(&pb));
    pb.finish_and_clear();
    let s = r.with_context(|| format!("quantizing {} to {}", a.model.display(), a.file_type))?;
    report(&s, &a.output, started);
    Ok(())
}

pub fn synth(a: SynthArgs) -> Result<()> {
    let started = Instant::now();
    let pb = bar();
    let r = synth::synth(a.preset, a.quant, a.seed, &a.output, &mut on_progress(&pb));
    pb.finish_and_clear();
    let s = r.with_context(|| format!("writing the {} {} model", a.preset, a.quant))?;
    report(&s, &a.output, started);
    Ok(())
}
