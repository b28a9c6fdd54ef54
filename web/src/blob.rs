//! Reading a model from a `Blob` (a `File` the user picked, or a cached download) in slices.
//! `Blob.slice(a, b).arrayBuffer()` copies only that range into the JS heap and then into one
//! reused wasm buffer, so the upload holds at most one chunk at a time.

use std::borrow::Cow;
use std::ops::Range;

use js_sys::{ArrayBuffer, Uint8Array};
use lfm::format::WeightSource;
use lfm::{Error, ModelFile};
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::Blob;

/// First prefix read for the header; grown as `Error::NeedMoreBytes` asks.
const FIRST_HEADER_READ: u64 = 1 << 20;

fn read_error(name: &str, e: impl std::fmt::Debug) -> Error {
    Error::io(
        name,
        std::io::Error::other(format!("reading the file failed: {e:?}")),
    )
}

/// Bytes `range` of `blob`, as a JS `ArrayBuffer`.
async fn read_range(blob: &Blob, range: Range<u64>, name: &str) -> lfm::Result<ArrayBuffer> {
    let part = blob
        .slice_with_f64_and_f64(range.start as f64, range.end as f64)
        .map_err(|e| read_error(name, e))?;
    let buf = JsFuture::from(part.array_buffer())
        .await
        .map_err(|e| read_error(name, e))?;
    buf.dyn_into::<ArrayBuffer>()
        .map_err(|e| read_error(name, e))
}

/// Parses the GGUF header from the start of `blob`, reading more while it asks for more.
pub async fn open_header(blob: &Blob, name: &str) -> lfm::Result<ModelFile> {
    let len = blob.size() as u64;
    let mut have = len.min(FIRST_HEADER_READ);
    loop {
        let buf = read_range(blob, 0..have, name).await?;
        let bytes = Uint8Array::new(&buf).to_vec();
        match ModelFile::from_gguf_header(&bytes, len, name) {
            Err(Error::NeedMoreBytes { need, .. }) if need > have && have < len => {
                have = need.max(have * 2).min(len);
            }
            r => return r,
        }
    }
}

/// Tensor bytes from a `Blob`, one range at a time into a reused buffer.
pub struct BlobSource {
    blob: Blob,
    name: String,
    buf: Vec<u8>,
}

impl BlobSource {
    pub fn new(blob: Blob, name: &str) -> BlobSource {
        BlobSource {
            blob,
            name: name.to_string(),
            buf: Vec::new(),
        }
    }
}

impl WeightSource for BlobSource {
    async fn read(&mut self, _storage: usize, range: Range<u64>) -> lfm::Result<Cow<'_, [u8]>> {
        let ab = read_range(&self.blob, range, &self.name).await?;
        let arr = Uint8Array::new(&ab);
        self.buf.resize(arr.length() as usize, 0);
        arr.copy_to(&mut self.buf);
        Ok(Cow::Borrowed(&self.buf[..]))
    }
}
