//! Streaming GGUF output: the header is written first (every tensor's size is known from its
//! plan), then each tensor's data in chunks of rows, computed on all cores and written in
//! order. Memory stays bounded by a few chunks whatever the model size.
//!
//! Layout matches gguf-py / llama.cpp: GGUF v3, metadata, tensor infos with offsets relative
//! to the data section, zero padding to `general.alignment` (32 when absent) after the header
//! and after every tensor's data.

use std::io::Write;
use std::ops::Range;

use crate::error::{Error, Result};
use crate::format::QuantFormat;
use crate::format::gguf::{DEFAULT_ALIGNMENT, GgufValue, GgufWriter};

/// Elements computed per chunk (split across the worker threads).
const CHUNK_ELEMS: usize = 1 << 22;
/// Below this many elements a chunk is computed on the calling thread.
const PARALLEL_MIN_ELEMS: usize = 1 << 16;

/// One output tensor: GGUF name, row-major shape (outermost first), stored format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorPlan {
    pub name: String,
    pub shape: Vec<usize>,
    pub format: QuantFormat,
}

impl TensorPlan {
    /// Elements per row (the innermost dimension, ggml's `ne0`).
    pub fn row_len(&self) -> usize {
        self.shape.last().copied().unwrap_or(1)
    }
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn rows(&self) -> usize {
        self.numel() / self.row_len().max(1)
    }
    /// Bytes of one stored row, `None` when the row is not a whole number of blocks.
    pub fn row_bytes(&self) -> Option<usize> {
        self.format.row_bytes(self.row_len())
    }
    /// ggml `ne` (innermost first).
    pub fn ne(&self) -> Vec<u64> {
        self.shape.iter().rev().map(|&d| d as u64).collect()
    }
}

/// What a quantizer/writer reports after each chunk.
#[derive(Clone, Debug)]
pub struct Progress<'a> {
    /// The tensor being written.
    pub tensor: &'a str,
    /// Its index in the write order, and the number of tensors.
    pub index: usize,
    pub count: usize,
    /// Output data bytes written so far, and in all.
    pub bytes_done: u64,
    pub bytes_total: u64,
}

/// Where tensor values come from. Implementations are called from several threads at once.
pub(crate) trait TensorSource: Sync {
    /// Rows `rows` of tensor `t` as f32 (row-major), replacing the contents of `out`.
    fn rows_f32(&self, t: &TensorPlan, rows: Range<usize>, out: &mut Vec<f32>) -> Result<()>;
    /// The tensor's bytes when the source already stores it in `t.format` (copied as is).
    fn raw(&self, _t: &TensorPlan) -> Option<&[u8]> {
        None
    }
}

/// The alignment a GGUF with this metadata uses.
pub(crate) fn alignment_of(metadata: &[(String, GgufValue)], file: &str) -> Result<u64> {
    match metadata.iter().find(|(k, _)| k == "general.alignment") {
        None => Ok(DEFAULT_ALIGNMENT),
        Some((_, v)) => v
            .as_u64()
            .filter(|a| a.is_power_of_two() && *a <= 1 << 20)
            .ok_or_else(|| {
                Error::config(
                    file,
                    "general.alignment",
                    format!("{v} is not a power of two"),
                )
            }),
    }
}

/// Writes a whole GGUF: `metadata`, then the tensors of `plan` in order with data from `src`.
/// Returns the number of bytes written. `file` names errors.
pub(crate) fn write_gguf<W: Write>(
    out: &mut W,
    metadata: Vec<(String, GgufValue)>,
    plan: &[TensorPlan],
    src: &dyn TensorSource,
    file: &str,
    progress: &mut dyn FnMut(&Progress),
) -> Result<u64> {
    let align = alignment_of(&metadata, file)?;
    let mut sizes = Vec::with_capacity(plan.len());
    for t in plan {
        let rb = t.row_bytes().ok_or_else(|| {
            Error::tensor(
                file,
                &t.name,
                format!(
                    "row length {} is not a whole number of {} blocks",
                    t.row_len(),
                    t.format
                ),
            )
        })?;
        sizes.push(rb as u64 * t.rows() as u64);
    }
    let mut header = GgufWriter::new();
    header.metadata = metadata;
    let mut offset = 0u64;
    for (t, &size) in plan.iter().zip(&sizes) {
        header.add_tensor(&t.name, &t.ne(), t.format.ggml_type(), Vec::new());
        if let Some(w) = header.tensors.last_mut() {
            w.offset_override = Some(offset);
        }
        offset = (offset + size).div_ceil(align) * align;
    }
    // With no tensor data attached, the writer emits exactly the padded header.
    let header = header.to_bytes();
    let io = |e: std::io::Error| Error::io(file, e);
    out.write_all(&header).map_err(io)?;
    let bytes_total: u64 = sizes.iter().sum();
    let mut done = 0u64;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(16));
    for (index, (t, &size)) in plan.iter().zip(&sizes).enumerate() {
        let mut report = |done: u64| {
            progress(&Progress {
                tensor: &t.name,
                index,
                count: plan.len(),
                bytes_done: done,
                bytes_total,
            })
        };
        let mut written = 0u64;
        if let Some(raw) = src.raw(t) {
            if raw.len() as u64 != size {
                return Err(Error::tensor(
                    file,
                    &t.name,
                    format!("source holds {} bytes, expected {size}", raw.len()),
                ));
            }
            for piece in raw.chunks(CHUNK_ELEMS) {
                out.write_all(piece).map_err(io)?;
                written += piece.len() as u64;
                report(done + written);
            }
        } else {
            let chunk_rows = (CHUNK_ELEMS / t.row_len().max(1)).max(1);
            let mut r0 = 0;
            while r0 < t.rows() {
                let r1 = (r0 + chunk_rows).min(t.rows());
                let bytes = compute_chunk(src, t, r0..r1, threads)
                    .map_err(|e| Error::tensor(file, &t.name, e))?;
                out.write_all(&bytes).map_err(io)?;
                written += bytes.len() as u64;
                report(done + written);
                r0 = r1;
            }
        }
        if written != size {
            return Err(Error::tensor(
                file,
                &t.name,
                format!("wrote {written} bytes, expected {size}"),
            ));
        }
        let pad = (size.div_ceil(align) * align - size) as usize;
        out.write_all(&vec![0u8; pad]).map_err(io)?;
        done += size;
    }
    out.flush().map_err(io)?;
    Ok(header.len() as u64 + offset)
}

/// Rows `rows` of `t`, stored in `t.format`, computed on up to `threads` threads.
fn compute_chunk(
    src: &dyn TensorSource,
    t: &TensorPlan,
    rows: Range<usize>,
    threads: usize,
) -> std::result::Result<Vec<u8>, String> {
    let one = |rows: Range<usize>| -> std::result::Result<Vec<u8>, String> {
        let mut x = Vec::new();
        src.rows_f32(t, rows.clone(), &mut x)
            .map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        t.format
            .quantize(&x, &mut out)
            .map_err(|e| format!("rows {}..{}: {e}", rows.start, rows.end))?;
        Ok(out)
    };
    let n = rows.len();
    if threads <= 1 || n < 2 || n * t.row_len() < PARALLEL_MIN_ELEMS {
        return one(rows);
    }
    let per = n.div_ceil(threads.min(n));
    let parts: Vec<std::result::Result<Vec<u8>, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (rows.start..rows.end)
            .step_by(per)
            .map(|a| {
                let b = (a + per).min(rows.end);
                s.spawn(move || one(a..b))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("a worker thread panicked".to_string()))
            })
            .collect()
    });
    let mut out = Vec::new();
    for p in parts {
        out.extend_from_slice(&p?);
    }
    Ok(out)
}
