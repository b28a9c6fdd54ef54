//! Controlling sessions: cancelling mid-prefill and mid-decode leaves a usable session that
//! continues exactly; two sessions on one uploaded model generate independently from two
//! threads.

mod common;
mod gpu_common;

use std::sync::Arc;

use lfm::ModelFile;
use lfm::model::GpuModel;
use lfm::sampling::SamplerConfig;
use lfm::session::{Session, SessionOptions, StopReason};

fn model(gpu: Arc<lfm::gpu::Gpu>) -> Arc<GpuModel> {
    let f = ModelFile::open(&common::fixtures_root().join("tiny-a-f16.gguf"))
        .unwrap_or_else(|e| panic!("{e}"));
    Arc::new(GpuModel::upload(gpu, &f, |_, _| {}).unwrap_or_else(|e| panic!("{e}")))
}

fn prompt() -> Vec<u32> {
    common::exact_cases()
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .find(|c| c.variant == "tiny-a" && c.prompt == "p2")
        .map(|c| c.tokens)
        .unwrap_or_else(|| panic!("fixture tiny-a p2 is missing"))
}

fn opts() -> SessionOptions {
    SessionOptions {
        ctx: 512,
        chunk: 16,
        ..Default::default()
    }
}

#[test]
fn cancel_mid_prefill_keeps_the_session_usable() -> anyhow::Result<()> {
    let prompt = prompt();
    for (backend, gpu) in gpu_common::gpus() {
        let m = model(gpu);
        let want = Session::new(m.clone(), opts())?
            .generate(&prompt, 8, &|_| false, &mut |_| true)?
            .generated;
        let mut s = Session::new(m.clone(), opts())?;
        let cancel = s.cancel_token();
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen2 = seen.clone();
        s.set_prefill_progress(Some(Box::new(move |done, total| {
            if let Ok(mut v) = seen2.lock() {
                v.push((done, total));
            }
            if done >= 32 {
                cancel.cancel();
            }
        })));
        let st = s.generate(&prompt, 8, &|_| false, &mut |_| true)?;
        assert_eq!(st.stop, StopReason::Cancelled, "{backend}");
        assert!(st.generated.is_empty(), "{backend}: nothing sampled");
        let pos = s.position();
        assert!(
            (32..prompt.len()).contains(&pos) && pos % 16 == 0,
            "{backend}: stopped at a chunk boundary after 32 tokens, at {pos}"
        );
        assert_eq!(
            s.tokens(),
            &prompt[..pos],
            "{backend}: processed prefix kept"
        );
        let progress = seen.lock().map(|v| v.clone()).unwrap_or_default();
        assert_eq!(
            progress.first(),
            Some(&(16, prompt.len())),
            "{backend}: {progress:?}"
        );
        // Continue with the rest of the prompt: the same tokens as without the stop.
        s.set_prefill_progress(None);
        let rest = s.generate(&prompt[pos..], 8, &|_| false, &mut |_| true)?;
        assert_eq!(
            rest.generated, want,
            "{backend}: continued after a cancelled prefill"
        );
    }
    Ok(())
}

#[test]
fn cancel_mid_decode_then_continue_loses_nothing() -> anyhow::Result<()> {
    let prompt = &prompt()[..40];
    for (backend, gpu) in gpu_common::gpus() {
        let m = model(gpu);
        let want = Session::new(m.clone(), opts())?
            .generate(prompt, 12, &|_| false, &mut |_| true)?
            .generated;
        let mut s = Session::new(m.clone(), opts())?;
        let cancel = s.cancel_token();
        let mut n = 0;
        let a = s.generate(prompt, 12, &|_| false, &mut |_| {
            n += 1;
            if n == 5 {
                cancel.cancel();
            }
            true
        })?;
        assert_eq!(a.stop, StopReason::Cancelled, "{backend}");
        assert_eq!(a.generated.len(), 5, "{backend}");
        let b = s.generate(&[], 7, &|_| false, &mut |_| true)?;
        let joined: Vec<u32> = a.generated.iter().chain(&b.generated).copied().collect();
        assert_eq!(joined, want, "{backend}: 5 + stop + 7 = 12");
    }
    Ok(())
}

/// Two sessions share one uploaded model (weights, pipelines) and run on two threads at once:
/// each produces what it produces alone.
#[test]
fn two_sessions_on_one_model_from_two_threads() -> anyhow::Result<()> {
    let prompt = prompt();
    for (backend, gpu) in gpu_common::gpus() {
        let m = model(gpu);
        let jobs: Vec<(Vec<u32>, SamplerConfig)> = vec![
            (prompt[..60].to_vec(), SamplerConfig::greedy()),
            (
                prompt[100..170].to_vec(),
                SamplerConfig {
                    temperature: 0.8,
                    top_p: 0.9,
                    seed: 42,
                    ..SamplerConfig::default()
                },
            ),
        ];
        let alone: Vec<Vec<u32>> = jobs
            .iter()
            .map(|(p, sc)| -> anyhow::Result<Vec<u32>> {
                let mut s = Session::new(m.clone(), opts())?;
                s.set_sampler(sc.clone())?;
                Ok(s.generate(p, 24, &|_| false, &mut |_| true)?.generated)
            })
            .collect::<anyhow::Result<_>>()?;
        let together: Vec<Vec<u32>> = std::thread::scope(|sc| {
            let handles: Vec<_> = jobs
                .iter()
                .map(|(p, cfg)| {
                    let m = m.clone();
                    sc.spawn(move || -> lfm::Result<Vec<u32>> {
                        let mut s = Session::new(m, opts())?;
                        s.set_sampler(cfg.clone())?;
                        Ok(s.generate(p, 24, &|_| false, &mut |_| true)?.generated)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| match h.join() {
                    Ok(r) => r.map_err(anyhow::Error::from),
                    Err(_) => Err(anyhow::anyhow!("a session thread panicked")),
                })
                .collect::<anyhow::Result<Vec<_>>>()
        })?;
        assert_eq!(together, alone, "{backend}: concurrent sessions");
    }
    Ok(())
}
