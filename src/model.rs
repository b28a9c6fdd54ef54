//! Model weights on the device. Matrices stay in their stored format (the GEMV/GEMM kernels
//! decode them); norms and conv kernels (a few KiB) are uploaded as f32. Bytes are streamed from
//! the file's memory map with `queue.write_buffer` and no CPU copy is kept.

use std::sync::Arc;

use crate::config::{LayerKind, Lfm2Config};
use crate::error::{Error, Result};
use crate::format::{ModelFile, QuantFormat};
use crate::gpu::{DeviceNeeds, Gpu};
use crate::ops;

/// A weight matrix `[rows, cols]` in `format`, possibly several tensors stacked by rows.
pub struct GpuMatrix {
    pub buf: wgpu::Buffer,
    pub format: QuantFormat,
    pub rows: usize,
    pub cols: usize,
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
    /// RoPE inverse frequencies `[head_dim / 2]`.
    pub inv_freq: wgpu::Buffer,
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

/// The device limits this model needs (largest binding = largest stacked matrix).
pub fn device_needs(file: &ModelFile) -> Result<DeviceNeeds> {
    let mut max = 0u64;
    for names in groups(file) {
        let mut bytes = 0u64;
        for n in &names {
            bytes += file.tensor(n)?.len as u64;
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
    /// Uploads every weight; `progress(done_bytes, total_bytes)` is called after each tensor.
    pub fn upload(
        gpu: Arc<Gpu>,
        file: &ModelFile,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<GpuModel> {
        let c = file.config.clone();
        let total = file.weight_bytes();
        let mut done = 0u64;
        let start_bytes = gpu.bytes.get();
        let mut up = Uploader {
            gpu: &gpu,
            file,
            done: &mut done,
            total,
            progress: &mut progress,
        };
        let h = c.hidden_size;
        let embed = up.matrix(&["token_embd.weight"])?;
        let output = if file.has_tensor("output.weight") {
            Some(up.matrix(&["output.weight"])?)
        } else {
            None
        };
        let final_norm = up.vector("token_embd_norm.weight")?;
        let mut layers = Vec::with_capacity(c.layers.len());
        for (i, kind) in c.layers.iter().enumerate() {
            let p = |s: &str| format!("blk.{i}.{s}.weight");
            let attn_norm = up.vector(&p("attn_norm"))?;
            let ffn_norm = up.vector(&p("ffn_norm"))?;
            let gate_up = up.matrix(&[&p("ffn_gate"), &p("ffn_up")])?;
            let down = up.matrix(&[&p("ffn_down")])?;
            let mixer = match kind {
                LayerKind::Conv => Mixer::Conv {
                    conv_w: up.vector(&p("shortconv.conv"))?,
                    in_proj: up.matrix(&[&p("shortconv.in_proj")])?,
                    out_proj: up.matrix(&[&p("shortconv.out_proj")])?,
                },
                LayerKind::Attention => Mixer::Attention {
                    q: up.matrix(&[&p("attn_q")])?,
                    k: up.matrix(&[&p("attn_k")])?,
                    v: up.matrix(&[&p("attn_v")])?,
                    o: up.matrix(&[&p("attn_output")])?,
                    q_norm: up.vector(&p("attn_q_norm"))?,
                    k_norm: up.vector(&p("attn_k_norm"))?,
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
        let inv = ops::attention::inv_freq(c.head_dim, c.rope_theta);
        let inv_freq = gpu.storage_init("inv_freq", bytemuck::cast_slice(&inv));
        gpu.queue.submit([]);
        let weight_bytes = gpu.bytes.get() - start_bytes;
        Ok(GpuModel {
            gpu,
            config: c,
            embed,
            final_norm,
            output,
            layers,
            inv_freq,
            weight_bytes,
        })
    }

    /// The output head (the embedding when tied).
    pub fn head(&self) -> &GpuMatrix {
        self.output.as_ref().unwrap_or(&self.embed)
    }
}

struct Uploader<'a, P: FnMut(u64, u64)> {
    gpu: &'a Gpu,
    file: &'a ModelFile,
    done: &'a mut u64,
    total: u64,
    progress: &'a mut P,
}

/// Largest `write_buffer` at once: bounds the staging memory wgpu allocates.
const UPLOAD_CHUNK: usize = 64 << 20;

impl<P: FnMut(u64, u64)> Uploader<'_, P> {
    fn file_name(&self) -> String {
        self.file.path.display().to_string()
    }

    /// Stacks `names` (same format and width) by rows into one device buffer.
    fn matrix(&mut self, names: &[&str]) -> Result<GpuMatrix> {
        let first = self.file.tensor(names[0])?;
        let (format, cols) = (first.format, *first.shape.last().unwrap_or(&0));
        let mut rows = 0;
        let mut bytes = 0usize;
        for n in names {
            let t = self.file.tensor(n)?;
            if t.format != format || t.shape.len() != 2 || t.shape[1] != cols {
                return Err(Error::tensor(
                    self.file_name(),
                    *n,
                    format!(
                        "cannot stack with `{}`: {} {:?} vs {} {:?}",
                        names[0], t.format, t.shape, format, first.shape
                    ),
                ));
            }
            if !ops::GPU_FORMATS.contains(&format) {
                return Err(Error::unsupported(
                    "weight format on the GPU",
                    format!("tensor `{n}` is {format}; this build runs f32, f16 and bf16"),
                ));
            }
            if cols % 8 != 0 || t.len % 4 != 0 {
                return Err(Error::unsupported(
                    "matrix width",
                    format!(
                        "tensor `{n}` has rows of {cols} elements; the kernels need a multiple of 8"
                    ),
                ));
            }
            rows += t.shape[0];
            bytes += t.len;
        }
        let label = names.join("+");
        let buf = self.gpu.storage(&label, bytes as u64);
        let mut off = 0u64;
        for n in names {
            let data = self.file.tensor_bytes(n)?;
            for chunk in data.chunks(UPLOAD_CHUNK) {
                self.gpu.queue.write_buffer(&buf, off, chunk);
                off += chunk.len() as u64;
            }
            // Flush the staging copies so host memory stays bounded by one chunk.
            self.gpu.queue.submit([]);
            *self.done += data.len() as u64;
            (self.progress)(*self.done, self.total);
        }
        Ok(GpuMatrix {
            buf,
            format,
            rows,
            cols,
        })
    }

    /// A small tensor (norm, conv kernel) as f32.
    fn vector(&mut self, name: &str) -> Result<wgpu::Buffer> {
        let t = self.file.tensor(name)?;
        let v = self.file.tensor_f32(name)?;
        *self.done += t.len as u64;
        (self.progress)(*self.done, self.total);
        Ok(self.gpu.storage_init(name, bytemuck::cast_slice(&v)))
    }
}
