//! Tensors larger than the storage-binding limit are split by rows across bindings and still run
//! on the GPU. Forcing a tiny limit splits every matrix into many parts; the logits must equal
//! the unsplit run (the per-row arithmetic is the same) and greedy decoding must not change.

mod common;
mod gpu_common;

use std::sync::Arc;

use lfm::ModelFile;
use lfm::model::{GpuModel, UploadOptions};
use lfm::session::{Session, SessionOptions};

#[test]
fn split_matrices_give_the_same_logits() -> anyhow::Result<()> {
    let Some(gpu) = gpu_common::gpu() else {
        return Ok(());
    };
    let root = common::fixtures_root();
    let case = common::exact_cases()?
        .into_iter()
        .find(|c| c.variant == "tiny-a" && c.prompt == "p2")
        .ok_or_else(|| anyhow::anyhow!("fixture tiny-a.p2 missing"))?;
    let mut files = vec![root.join("tiny-a-f32.gguf"), root.join("tiny-b-bf16.gguf")];
    files.extend(
        std::fs::read_dir(&root)?
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("tiny-q-"))
            }),
    );
    for path in files {
        let file = ModelFile::open(&path)?;
        let run = |max_binding: Option<u64>| -> anyhow::Result<(Vec<f32>, Vec<u32>, usize)> {
            // Splitting also reads the file in small pieces (whole blocks), which must not
            // change a byte either.
            let opts = UploadOptions {
                max_binding,
                chunk_bytes: max_binding.map(|_| 4000),
            };
            let model = Arc::new(GpuModel::upload_with(gpu.clone(), &file, &opts, |_, _| {})?);
            let parts = model.embed.parts.len();
            let so = |logits_all| SessionOptions {
                ctx: 400,
                chunk: 64,
                logits_all,
                kv: lfm::ops::attention::KvType::F32,
                ..Default::default()
            };
            let logits = Session::new(model.clone(), so(true))?.eval(&case.tokens[..100])?;
            let greedy = Session::new(model, so(false))?
                .generate(&case.tokens[..100], 16, &|_| false, &mut |_| true)?
                .generated;
            Ok((logits, greedy, parts))
        };
        let (whole, g_whole, p_whole) = run(None)?;
        let (split, g_split, p_split) = run(Some(16 << 10))?;
        assert_eq!(
            p_whole,
            1,
            "{}: the embedding should fit one binding",
            path.display()
        );
        assert!(
            p_split > 2,
            "{}: a 16 KiB limit should split the embedding, got {p_split} parts",
            path.display()
        );
        let d = common::max_abs_diff(&whole, &split);
        eprintln!(
            "{}: {p_split} embedding parts, max |diff| {d:e}",
            path.display()
        );
        assert!(d <= 1e-5, "{}: split logits differ by {d}", path.display());
        assert_eq!(
            g_whole,
            g_split,
            "{}: greedy tokens differ when split",
            path.display()
        );
    }
    Ok(())
}

#[test]
fn device_grants_what_the_adapter_allows() {
    // A model that would like a 1 GiB binding still gets a device; its matrices are split.
    let needs = lfm::gpu::DeviceNeeds {
        max_binding: 1 << 30,
        max_buffer: 1 << 30,
        storage_buffers_per_stage: 8,
    };
    if let Some(gpu) = gpu_common::gpu_with(&needs) {
        assert!(gpu.limits.max_storage_buffer_binding_size >= 128 << 20);
    }
}
