//! The browser's loading path, natively: the GGUF header is parsed from a growing prefix
//! (`Error::NeedMoreBytes` says how much to read), the `ModelFile` holds no tensor bytes, and
//! the upload reads every tensor through a `WeightSource` in small ranges whose futures are
//! pending at first (like `Blob.arrayBuffer()`). The model must be bit-identical to the one
//! uploaded from the memory map.

mod common;
mod gpu_common;

use std::borrow::Cow;
use std::future::Future;
use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use lfm::format::WeightSource;
use lfm::model::{GpuModel, UploadOptions};
use lfm::session::{Session, SessionOptions};
use lfm::{Error, ModelFile};

/// Pending once, then ready: a read that completes on a later turn of the event loop.
struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

/// Serves ranges of a file held elsewhere (here: a Vec standing in for a Blob), copying each
/// range into its own buffer as the browser's source does.
struct SlicedSource<'a> {
    file: &'a [u8],
    buf: Vec<u8>,
    reads: usize,
    largest: u64,
    released: u64,
}

impl WeightSource for SlicedSource<'_> {
    async fn read(&mut self, storage: usize, range: Range<u64>) -> lfm::Result<Cow<'_, [u8]>> {
        assert_eq!(storage, 0);
        YieldOnce(false).await;
        self.reads += 1;
        self.largest = self.largest.max(range.end - range.start);
        self.buf.clear();
        self.buf
            .extend_from_slice(&self.file[range.start as usize..range.end as usize]);
        Ok(Cow::Borrowed(&self.buf[..]))
    }

    fn release(&mut self, _storage: usize, range: Range<u64>) {
        self.released += range.end - range.start;
    }
}

/// Parses the header from the shortest prefix that holds it, growing as asked.
fn open_from_prefix(bytes: &[u8], name: &str) -> lfm::Result<(ModelFile, usize)> {
    let mut have = 64usize;
    loop {
        match ModelFile::from_gguf_header(&bytes[..have], bytes.len() as u64, name) {
            Err(Error::NeedMoreBytes { need, .. }) => {
                assert!(need as usize > have, "NeedMoreBytes must ask for more");
                have = (need as usize).max(have * 2).min(bytes.len());
            }
            r => return r.map(|f| (f, have)),
        }
    }
}

#[test]
fn header_only_file_and_sliced_upload_match_the_mapped_upload() -> anyhow::Result<()> {
    let root = common::fixtures_root();
    let Some(gpu) = gpu_common::gpu() else {
        return Ok(());
    };
    for name in ["tiny-a-f16.gguf", "tiny-q-q8_0.gguf", "tiny-q-q4_k_m.gguf"] {
        let path = root.join(name);
        let bytes = std::fs::read(&path)?;
        let (file, prefix) = open_from_prefix(&bytes, name)?;
        assert!(prefix < bytes.len(), "{name}: the header alone must do");
        // No tensor bytes in memory, but the index, config and tokenizer are all there.
        assert!(file.tensor_bytes("token_embd.weight").is_err());
        let mapped = ModelFile::open(&path)?;
        assert_eq!(file.tensors, mapped.tensors, "{name}");
        assert_eq!(file.config, mapped.config, "{name}");
        assert_eq!(
            file.tokenizer()?.encode("hello world")?,
            mapped.tokenizer()?.encode("hello world")?
        );

        let mut src = SlicedSource {
            file: &bytes,
            buf: Vec::new(),
            reads: 0,
            largest: 0,
            released: 0,
        };
        let opts = UploadOptions {
            max_binding: None,
            chunk_bytes: Some(2048),
        };
        let mut last = (0, 0);
        let streamed = pollster::block_on(GpuModel::upload_from(
            gpu.clone(),
            &file,
            &mut src,
            &opts,
            |d, t| last = (d, t),
        ))?;
        assert_eq!(last, (file.weight_bytes(), file.weight_bytes()), "{name}");
        assert!(
            src.reads > file.tensors.len(),
            "{name}: tensors read in pieces"
        );
        // Matrices in pieces of at most the chunk; norms and conv kernels (a few KiB) whole.
        let vectors = file
            .tensors
            .values()
            .filter(|t| t.shape.len() == 1 || t.name.ends_with("shortconv.conv.weight"))
            .map(|t| t.len as u64)
            .max()
            .unwrap_or(0);
        assert!(
            src.largest <= vectors.max(2048),
            "{name}: reads bounded by the chunk, largest {}",
            src.largest
        );
        assert!(src.released > 0);
        let reference = GpuModel::upload(gpu.clone(), &mapped, |_, _| {})?;
        assert_eq!(streamed.weight_bytes, reference.weight_bytes);

        let generate = |model: GpuModel| -> anyhow::Result<Vec<u32>> {
            let mut s = Session::new(Arc::new(model), SessionOptions::default())?;
            Ok(s.generate(&[1, 2, 3, 4], 12, &|_| false, &mut |_| true)?
                .generated)
        };
        assert_eq!(generate(streamed)?, generate(reference)?, "{name}");
    }
    Ok(())
}

#[test]
fn truncated_file_fails_at_the_header() {
    let bytes = std::fs::read(common::fixtures_root().join("tiny-a-f16.gguf")).unwrap();
    let cut = bytes.len() * 2 / 3;
    // The whole header is given, but the declared tensors run past the end of the file.
    let err = ModelFile::from_gguf_header(&bytes[..cut], cut as u64, "cut.gguf").unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("cut.gguf") && (msg.contains("truncated") || msg.contains("outside")),
        "{msg}"
    );
}
