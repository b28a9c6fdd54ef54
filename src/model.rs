//! Model weights on the device. Matrices stay in their stored format (the GEMV/GEMM kernels
//! decode them); norms and conv kernels (a few KiB) are uploaded as f32. Bytes are streamed with
//! `queue.write_buffer` in bounded pieces read from a [`WeightSource`] (the memory map natively,
//! `Blob` slices in the browser) and no CPU copy is kept. One async upload path serves both.

use std::sync::Arc;

use crate::config::{LayerKind, Lfm2Config};
use crate::error::{Error, Result};
use crate::format::{ModelFile, QuantFormat, WeightSource};
use crate::gpu::{DeviceNeeds, Gpu};
use crate::ops;

/// A weight matrix in `format` with `cols` columns: `stack` pieces of `rows` rows each (gate and
/// up for SwiGLU; the B, C and x parts of `in_proj`), held in one or more device buffers. Each
/// part holds output rows `row0..row0 + rows` of every piece, pieces one after the other, so a
/// kernel bound to one part sees a complete `[stack * rows, cols]` matrix. There is more than one
/// part only when the matrix exceeds the adapter's storage-binding limit.
pub struct GpuMatrix {
    pub parts: Vec<MatrixPart>,
    pub format: QuantFormat,
    /// Output rows (rows of each piece).
    pub rows: usize,
    pub cols: usize,
    pub stack: usize,
}

/// Output rows `row0..row0 + rows` of a [`GpuMatrix`], in their own buffer.
pub struct MatrixPart {
    pub buf: wgpu::Buffer,
    pub row0: usize,
    pub rows: usize,
}

pub enum Mixer {
    Conv {
        /// `[H, L]` f32
        conv_w: wgpu::Buffer,
        /// `[3H, H]`: B | C | x rows
        in_proj: GpuMatrix,
        out_proj: GpuMatrix,
    },
    Attention {
        q: GpuMatrix,
        k: GpuMatrix,
        v: GpuMatrix,
        o: GpuMatrix,
        q_norm: wgpu::Buffer,
        k_norm: wgpu::Buffer,
    },
}

pub struct GpuLayer {
    pub attn_norm: wgpu::Buffer,
    pub ffn_norm: wgpu::Buffer,
    /// `[2 * ff, H]`: gate rows then up rows.
    pub gate_up: GpuMatrix,
    pub down: GpuMatrix,
    pub mixer: Mixer,
}

/// The whole model on one device.
pub struct GpuModel {
    pub gpu: Arc<Gpu>,
    pub config: Lfm2Config,
    pub embed: GpuMatrix,
    pub final_norm: wgpu::Buffer,
    /// `None` when the output head is the (tied) embedding.
    pub output: Option<GpuMatrix>,
    pub layers: Vec<GpuLayer>,
    /// Bytes of weights on the device.
    pub weight_bytes: u64,
}

/// Which matrices are stacked into one device buffer.
fn groups(file: &ModelFile) -> Vec<Vec<String>> {
    let mut g = vec![vec!["token_embd.weight".to_string()]];
    if file.has_tensor("output.weight") {
        g.push(vec!["output.weight".to_string()]);
    }
    for (i, kind) in file.config.layers.iter().enumerate() {
        let p = |s: &str| format!("blk.{i}.{s}.weight");
        g.push(vec![p("ffn_gate"), p("ffn_up")]);
        g.push(vec![p("ffn_down")]);
        match kind {
            LayerKind::Conv => {
                g.push(vec![p("shortconv.in_proj")]);
                g.push(vec![p("shortconv.out_proj")]);
            }
            LayerKind::Attention => {
                for t in ["attn_q", "attn_k", "attn_v", "attn_output"] {
                    g.push(vec![p(t)]);
                }
            }
        }
    }
    g
}

/// Upload settings.
#[derive(Clone, Debug, Default)]
pub struct UploadOptions {
    /// Largest storage binding to use (default: the device's limit). Tensors larger than this
    /// are split by rows across bindings.
    pub max_binding: Option<u64>,
    /// Largest piece read from the source and written at once (default 64 MiB): bounds the
    /// host memory an upload holds (the browser uses less, wasm memory never shrinks).
    pub chunk_bytes: Option<usize>,
}

/// The device limits this model would like: bindings and buffers as large as its largest
/// stacked matrix (the device grants what it can; larger matrices are split by rows).
pub fn device_needs(file: &ModelFile) -> Result<DeviceNeeds> {
    let mut max = 0u64;
    for names in groups(file) {
        let mut bytes = 0u64;
        for n in &names {
            let t = file.tensor(n)?;
            let cols = *t.shape.last().unwrap_or(&0);
            bytes += (ops::layout::gpu_row_bytes(t.format, cols)
                * t.shape.first().copied().unwrap_or(0)) as u64;
        }
        max = max.max(bytes);
    }
    Ok(DeviceNeeds {
        max_binding: max,
        max_buffer: max,
        storage_buffers_per_stage: 8,
    })
}

impl GpuModel {
    /// Uploads every weight from the file's memory map; `progress(done_bytes, total_bytes)` is
    /// called as bytes go up. Blocks (native only; the browser awaits [`GpuModel::upload_from`]).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn upload(
        gpu: Arc<Gpu>,
        file: &ModelFile,
        progress: impl FnMut(u64, u64),
    ) -> Result<GpuModel> {
        Self::upload_with(gpu, file, &UploadOptions::default(), progress)
    }

    /// [`GpuModel::upload`] with options (a lower binding limit, to test splitting).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn upload_with(
        gpu: Arc<Gpu>,
        file: &ModelFile,
        opts: &UploadOptions,
        progress: impl FnMut(u64, u64),
    ) -> Result<GpuModel> {
        crate::platform::block_on(Self::upload_from(
            gpu,
            file,
            &mut file.mapped(),
            opts,
            progress,
        ))
    }

    /// Uploads every weight of `file` (its index), reading the bytes from `source` one bounded
    /// range at a time, tensor by tensor; `progress(done_bytes, total_bytes)` is called as bytes
    /// go up. Never blocks: in the browser each read is a `Blob` slice awaited on the event loop.
    pub async fn upload_from<S: WeightSource>(
        gpu: Arc<Gpu>,
        file: &ModelFile,
        source: &mut S,
        opts: &UploadOptions,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<GpuModel> {
        let c = file.config.clone();
        let total = file.weight_bytes();
        let mut done = 0u64;
        let start_bytes = gpu.bytes.get();
        let oom = gpu.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let limit = gpu
            .limits
            .max_storage_buffer_binding_size
            .min(gpu.limits.max_buffer_size);
        let max_binding = opts.max_binding.map_or(limit, |m| m.min(limit));
        let mut up = Uploader {
            gpu: &gpu,
            file,
            source,
            done: &mut done,
            total,
            progress: &mut progress,
            max_binding,
            chunk: opts.chunk_bytes.unwrap_or(UPLOAD_CHUNK).max(1),
            scratch: Vec::new(),
        };
        let h = c.hidden_size;
        let embed = up.matrix(&["token_embd.weight"], 1).await?;
        let output = if file.has_tensor("output.weight") {
            Some(up.matrix(&["output.weight"], 1).await?)
        } else {
            None
        };
        let final_norm = up.vector("token_embd_norm.weight").await?;
        let mut layers = Vec::with_capacity(c.layers.len());
        for (i, kind) in c.layers.iter().enumerate() {
            let p = |s: &str| format!("blk.{i}.{s}.weight");
            let attn_norm = up.vector(&p("attn_norm")).await?;
            let ffn_norm = up.vector(&p("ffn_norm")).await?;
            let gate_up = up.matrix(&[&p("ffn_gate"), &p("ffn_up")], 1).await?;
            let down = up.matrix(&[&p("ffn_down")], 1).await?;
            let mixer = match kind {
                LayerKind::Conv => Mixer::Conv {
                    conv_w: up.vector(&p("shortconv.conv")).await?,
                    in_proj: up.matrix(&[&p("shortconv.in_proj")], 3).await?,
                    out_proj: up.matrix(&[&p("shortconv.out_proj")], 1).await?,
                },
                LayerKind::Attention => Mixer::Attention {
                    q: up.matrix(&[&p("attn_q")], 1).await?,
                    k: up.matrix(&[&p("attn_k")], 1).await?,
                    v: up.matrix(&[&p("attn_v")], 1).await?,
                    o: up.matrix(&[&p("attn_output")], 1).await?,
                    q_norm: up.vector(&p("attn_q_norm")).await?,
                    k_norm: up.vector(&p("attn_k_norm")).await?,
                },
            };
            layers.push(GpuLayer {
                attn_norm,
                ffn_norm,
                gate_up,
                down,
                mixer,
            });
        }
        debug_assert_eq!(embed.cols, h);
        gpu.queue.submit([]);
        if let Some(e) = oom.pop().await {
            return Err(Error::OutOfMemory(format!(
                "the device could not hold the weights ({} of {} uploaded): {e}",
                crate::memory::human_bytes(gpu.bytes.get() - start_bytes),
                crate::memory::human_bytes(total)
            )));
        }
        gpu.faults.check()?;
        let weight_bytes = gpu.bytes.get() - start_bytes;
        Ok(GpuModel {
            gpu,
            config: c,
            embed,
            final_norm,
            output,
            layers,
            weight_bytes,
        })
    }

    /// The output head (the embedding when tied).
    pub fn head(&self) -> &GpuMatrix {
        self.output.as_ref().unwrap_or(&self.embed)
    }
}

struct Uploader<'a, S: WeightSource, P: FnMut(u64, u64)> {
    gpu: &'a Gpu,
    file: &'a ModelFile,
    source: &'a mut S,
    done: &'a mut u64,
    total: u64,
    progress: &'a mut P,
    max_binding: u64,
    /// Largest piece read and written at once.
    chunk: usize,
    /// Repack buffer, reused (at most one upload chunk).
    scratch: Vec<u8>,
}

/// Largest piece written at once by default: bounds the host memory of the staging copies.
const UPLOAD_CHUNK: usize = 64 << 20;

impl<S: WeightSource, P: FnMut(u64, u64)> Uploader<'_, S, P> {
    fn file_name(&self) -> String {
        self.file.path.display().to_string()
    }

    /// Uploads `names` (same format and width), each viewed as `split` pieces of equal rows, as
    /// one stacked matrix of `names.len() * split` pieces; split into parts by output rows when
    /// larger than the binding limit.
    async fn matrix(&mut self, names: &[&str], split: usize) -> Result<GpuMatrix> {
        let first = self.file.tensor(names[0])?;
        let (format, cols) = (first.format, *first.shape.last().unwrap_or(&0));
        let fname = self.file_name();
        // (storage, first byte, rows) of each piece.
        let mut pieces: Vec<(usize, u64, usize)> = Vec::new();
        let mut ranges = Vec::new();
        for n in names {
            let t = self.file.tensor(n)?;
            if t.format != format || t.shape.len() != 2 || t.shape[1] != cols {
                return Err(Error::tensor(
                    &fname,
                    *n,
                    format!(
                        "cannot stack with `{}`: {} {:?} vs {} {:?}",
                        names[0], t.format, t.shape, format, first.shape
                    ),
                ));
            }
            let chunk = ops::layout::chunk_elems(format);
            if cols % chunk != 0 || format.row_bytes(cols).is_none() {
                return Err(Error::unsupported(
                    "matrix width",
                    format!(
                        "tensor `{n}` ({format}) has rows of {cols} elements; the kernels need a multiple of {}",
                        chunk.max(format.block_elems())
                    ),
                ));
            }
            if t.shape[0] % split != 0 {
                return Err(Error::tensor(
                    &fname,
                    *n,
                    format!("{} rows do not split into {split} parts", t.shape[0]),
                ));
            }
            let (storage, range) = self.file.tensor_range(n)?;
            let rows = t.shape[0] / split;
            let piece_bytes = (range.end - range.start) / split as u64;
            for s in 0..split {
                pieces.push((storage, range.start + s as u64 * piece_bytes, rows));
            }
            ranges.push((storage, range));
        }
        let rows = pieces[0].2;
        if pieces.iter().any(|p| p.2 != rows) {
            return Err(Error::tensor(
                &fname,
                names.join("+"),
                "stacked tensors differ in rows",
            ));
        }
        let stack = pieces.len();
        let file_row = format.row_bytes(cols).unwrap_or(0);
        let gpu_row = ops::layout::gpu_row_bytes(format, cols);
        let rows_per_part = (self.max_binding as usize / (gpu_row * stack).max(1)).min(rows);
        if rows_per_part == 0 {
            return Err(Error::Gpu(format!(
                "tensor `{}`: one row ({} bytes) exceeds the storage-binding limit of {} bytes",
                names[0],
                gpu_row * stack,
                self.max_binding
            )));
        }
        let mut parts = Vec::new();
        let mut row0 = 0;
        while row0 < rows {
            let n = rows_per_part.min(rows - row0);
            let label = format!("{}[{row0}..{}]", names.join("+"), row0 + n);
            let buf = self.gpu.storage(&label, (gpu_row * stack * n) as u64);
            let mut off = 0u64;
            for &(storage, start, _) in &pieces {
                let row_byte = |r: usize| start + (r * file_row) as u64;
                let (a, b) = (row_byte(row0), row_byte(row0 + n));
                // Whole blocks per read and write, at most `chunk` bytes.
                let step = (self.chunk / format.block_bytes()).max(1) * format.block_bytes();
                let mut at = a;
                while at < b {
                    let end = (at + step as u64).min(b);
                    let piece = self.source.read(storage, at..end).await?;
                    if piece.len() as u64 != end - at {
                        return Err(Error::tensor(
                            &fname,
                            names.join("+"),
                            format!(
                                "read {} bytes at offset {at}, expected {}",
                                piece.len(),
                                end - at
                            ),
                        ));
                    }
                    let data: &[u8] = if ops::layout::needs_repack(format) {
                        ops::layout::repack(format, &piece, &mut self.scratch);
                        &self.scratch
                    } else {
                        &piece
                    };
                    self.gpu.queue.write_buffer(&buf, off, data);
                    off += data.len() as u64;
                    *self.done += end - at;
                    (self.progress)(*self.done, self.total);
                    at = end;
                }
                // Flush the staging copies so host memory stays bounded.
                self.gpu.queue.submit([]);
            }
            parts.push(MatrixPart { buf, row0, rows: n });
            row0 += n;
        }
        for (storage, range) in ranges {
            self.source.release(storage, range);
        }
        Ok(GpuMatrix {
            parts,
            format,
            rows,
            cols,
            stack,
        })
    }

    /// A small tensor (norm, conv kernel) as f32.
    async fn vector(&mut self, name: &str) -> Result<wgpu::Buffer> {
        let t = self.file.tensor(name)?;
        let (storage, range) = self.file.tensor_range(name)?;
        let fname = self.file_name();
        let mut v = Vec::with_capacity(t.numel());
        let bytes = self.source.read(storage, range).await?;
        t.format
            .dequantize(&bytes, &mut v)
            .map_err(|msg| Error::tensor(&fname, name, msg))?;
        drop(bytes);
        *self.done += t.len as u64;
        (self.progress)(*self.done, self.total);
        Ok(self.gpu.storage_init(name, bytemuck::cast_slice(&v)))
    }
}
