//! End-to-end decode benchmark: prefill and decode tokens/s, submits and dispatches per token.
//! `cargo bench --bench decode [-- MODEL_PATH]` (default: the tiny fixture model). Timings are
//! wall-clock over whole steps including the 4-byte readback; per-kernel GPU times are in
//! `benches/kernels.rs`.

use std::sync::Arc;

use lfm::ModelFile;
use lfm::gpu::{Gpu, GpuOptions};
use lfm::model::{GpuModel, device_needs};
use lfm::session::{Session, SessionOptions};

fn main() -> anyhow::Result<()> {
    let path = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .unwrap_or_else(|| {
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/tiny-a-f16.gguf"
            )
            .into()
        });
    let file = ModelFile::open(std::path::Path::new(&path))?;
    let gpu = Arc::new(pollster::block_on(Gpu::new(
        &GpuOptions::default(),
        &device_needs(&file)?,
    ))?);
    let adapter = gpu.describe();
    let model = Arc::new(GpuModel::upload(gpu, &file, |_, _| {})?);
    let (pp, tg) = (128usize, 64usize);
    let mut s = Session::new(
        model,
        SessionOptions {
            ctx: pp + tg + 8,
            chunk: 128,
            logits_all: false,
            ..Default::default()
        },
    )?;
    let prompt: Vec<u32> = (0..pp as u32)
        .map(|i| 1 + i % (file.config.vocab_size as u32 - 1))
        .collect();
    // Warm-up (pipelines, first submit), then the measured run.
    s.generate(&prompt[..8], 4, &|_| false, &mut |_| true)?;
    s.reset();
    let st = s.generate(&prompt, tg, &|_| false, &mut |_| true)?;
    println!("model {path}");
    println!("adapter {adapter}");
    println!(
        "pp{pp}: {:.1} tok/s (prefill + first token {:.1} ms)",
        st.prefill_tok_s(),
        st.prefill_seconds * 1e3
    );
    println!(
        "tg{tg}: {:.1} tok/s ({:.2} ms/token)",
        st.decode_tok_s(),
        1e3 * st.decode_seconds / (tg - 1) as f64
    );
    println!(
        "submits per decode token: {:.2}; dispatches per decode token: {}; bytes read back per token: 4",
        (st.submits - prompt.len().div_ceil(128)) as f64 / (tg - 1) as f64,
        s.dispatches_per_token()
    );
    println!("device bytes: {}", s.device_bytes());
    Ok(())
}
