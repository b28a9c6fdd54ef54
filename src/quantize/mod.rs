//! Model quantization on the CPU: f32 -> ggml blocks ([`blocks`]), llama.cpp's per-tensor type
//! rules for LFM2 ([`plan`], spec §3.3), a streaming GGUF writer ([`stream`]), and random-weight
//! models with the released shapes ([`synth`]).
//!
//! [`quantize_model`] reads a [`ModelFile`] (HF directory in f32/f16/bf16, or a GGUF) and writes
//! a GGUF tensor by tensor. A GGUF source's metadata is copied (`general.file_type` and
//! `general.quantization_version` set last, as llama-quantize does); an HF source gets the
//! key/value set llama.cpp's converter writes (`metadata.rs`).
//!
//! Type rules (llama-quantize for LFM2):
//! - 1-D tensors, `*_norm.weight` and `shortconv.conv.weight` are not quantized: a GGUF source
//!   keeps their stored type, an HF source gets F32 (the converter's forced-F32 list).
//! - Every other matrix gets the file type's base format (F16, Q4_0, Q8_0 or Q4_K).
//! - The tied `token_embd.weight` (no `output.weight`), or `output.weight`: Q6_K, except Q8_0
//!   when the base is Q8_0 or the row length is not a multiple of the base's block.
//! - Q4_K_M: `attn_v` and `ffn_down` get Q6_K where `use_more_bits(i, n)` holds, counted over
//!   the `attn_v` tensors and over the `ffn_down` tensors separately, in write order (layer
//!   by layer, as llama.cpp's loader sorts them).
//! - Row length not a multiple of the chosen block: Q6_K -> Q8_0 (as llama.cpp); Q4_K / Q5_K ->
//!   Q8_0 (llama.cpp picks Q5_0 / Q5_1, formats this crate does not have; Q8_0 is the nearest
//!   supported type of at least their precision); Q4_0 / Q8_0 -> F16 (llama.cpp refuses such a
//!   tensor); and F16 when the row does not fit the fallback either.

pub mod blocks;
mod metadata;
pub mod stream;
pub mod synth;

use std::collections::BTreeMap;
use std::io::BufWriter;
use std::ops::Range;
use std::path::Path;

use crate::error::{Error, Result};
use crate::format::gguf::GgufValue;
use crate::format::{ModelFile, QuantFormat, SourceKind};

pub use stream::{Progress, TensorPlan};

/// The file types this crate writes (`general.file_type`, llama.cpp's `llama_ftype`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FileType {
    F16,
    Q4_0,
    Q8_0,
    Q4KM,
}

impl FileType {
    pub const ALL: [FileType; 4] = [
        FileType::F16,
        FileType::Q4_0,
        FileType::Q8_0,
        FileType::Q4KM,
    ];

    /// Lower-case name as llama.cpp's tools spell it (`q4_k_m`).
    pub fn name(self) -> &'static str {
        match self {
            FileType::F16 => "f16",
            FileType::Q4_0 => "q4_0",
            FileType::Q8_0 => "q8_0",
            FileType::Q4KM => "q4_k_m",
        }
    }
    /// `general.file_type` value.
    pub fn ggml_file_type(self) -> u32 {
        match self {
            FileType::F16 => 1,
            FileType::Q4_0 => 2,
            FileType::Q8_0 => 7,
            FileType::Q4KM => 15,
        }
    }
    /// The format of an ordinary matrix.
    pub fn base_format(self) -> QuantFormat {
        match self {
            FileType::F16 => QuantFormat::F16,
            FileType::Q4_0 => QuantFormat::Q4_0,
            FileType::Q8_0 => QuantFormat::Q8_0,
            FileType::Q4KM => QuantFormat::Q4K,
        }
    }
}

impl std::fmt::Display for FileType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for FileType {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<FileType, String> {
        FileType::ALL
            .into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                let names: Vec<_> = FileType::ALL.iter().map(|t| t.name()).collect();
                format!("unknown type `{s}` (expected one of {})", names.join(", "))
            })
    }
}

/// llama.cpp's `use_more_bits`: the first and last eighth of the layers, and every third
/// one in between.
pub fn use_more_bits(i: usize, n: usize) -> bool {
    i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2
}

/// Whether llama-quantize quantizes this tensor at all.
pub fn is_quantizable(name: &str, shape: &[usize]) -> bool {
    name.ends_with("weight")
        && shape.len() >= 2
        && !name.contains("_norm.weight")
        && !name.contains("shortconv.conv.weight")
}

/// `N` of a `blk.N.` name.
fn layer_of(name: &str) -> Option<usize> {
    name.strip_prefix("blk.")?.split('.').next()?.parse().ok()
}

/// One tensor of the source, for [`plan`].
#[derive(Clone, Debug)]
pub struct SourceTensor {
    pub name: String,
    /// Row-major shape.
    pub shape: Vec<usize>,
    /// Stored format.
    pub format: QuantFormat,
}

/// The output plan: every source tensor in llama-quantize's order (non-layer tensors first,
/// then layer by layer, by name within a layer) with its output format. `keep_source_format`:
/// tensors that are not quantized keep their format (GGUF source) instead of becoming F32
/// (HF source). Also returns a note for each fallback taken.
pub fn plan(
    ftype: FileType,
    tensors: &[SourceTensor],
    keep_source_format: bool,
) -> (Vec<TensorPlan>, Vec<String>) {
    let mut order: Vec<&SourceTensor> = tensors.iter().collect();
    order.sort_by(|a, b| {
        let key = |t: &SourceTensor| (layer_of(&t.name).map_or(-1, |l| l as i64), t.name.clone());
        key(a).cmp(&key(b))
    });
    let has_output = tensors.iter().any(|t| t.name == "output.weight");
    let count = |pat: &str| tensors.iter().filter(|t| t.name.contains(pat)).count();
    let (n_attn_v, n_ffn_down) = (count("attn_v.weight"), count("ffn_down"));
    let (mut i_attn_v, mut i_ffn_down) = (0, 0);
    let mut notes = Vec::new();
    let mut out = Vec::with_capacity(order.len());
    for t in order {
        let format = if !is_quantizable(&t.name, &t.shape) {
            if keep_source_format {
                t.format
            } else {
                QuantFormat::F32
            }
        } else {
            let base = ftype.base_format();
            let ne0 = t.shape.last().copied().unwrap_or(1);
            let mut f = base;
            if base.is_quantized() {
                if t.name == "output.weight" || (!has_output && t.name == "token_embd.weight") {
                    f = if !ne0.is_multiple_of(base.block_elems()) || base == QuantFormat::Q8_0 {
                        QuantFormat::Q8_0
                    } else {
                        QuantFormat::Q6K
                    };
                } else if t.name.contains("attn_v.weight") {
                    if ftype == FileType::Q4KM && use_more_bits(i_attn_v, n_attn_v) {
                        f = QuantFormat::Q6K;
                    }
                    i_attn_v += 1;
                } else if t.name.contains("ffn_down") {
                    if ftype == FileType::Q4KM && use_more_bits(i_ffn_down, n_ffn_down) {
                        f = QuantFormat::Q6K;
                    }
                    i_ffn_down += 1;
                }
            }
            if !ne0.is_multiple_of(f.block_elems()) {
                let mut fb = match f {
                    QuantFormat::Q4K | QuantFormat::Q5K | QuantFormat::Q6K => QuantFormat::Q8_0,
                    _ => QuantFormat::F16,
                };
                if !ne0.is_multiple_of(fb.block_elems()) {
                    fb = QuantFormat::F16;
                }
                notes.push(format!(
                    "{}: row length {ne0} is not a multiple of {} ({f}); using {fb}",
                    t.name,
                    f.block_elems()
                ));
                f = fb;
            }
            f
        };
        out.push(TensorPlan {
            name: t.name.clone(),
            shape: t.shape.clone(),
            format,
        });
    }
    (out, notes)
}

/// Options of [`quantize_model`].
#[derive(Clone, Copy, Debug)]
pub struct QuantizeOptions {
    pub file_type: FileType,
    /// Accept a source whose matrices are already block-quantized (they are dequantized and
    /// quantized again, which loses precision twice). Off by default, as in llama.cpp.
    pub allow_requantize: bool,
}

impl QuantizeOptions {
    pub fn new(file_type: FileType) -> QuantizeOptions {
        QuantizeOptions {
            file_type,
            allow_requantize: false,
        }
    }
}

/// What was written.
#[derive(Clone, Debug)]
pub struct Summary {
    /// File size in bytes.
    pub bytes: u64,
    /// Tensors per stored format.
    pub formats: BTreeMap<QuantFormat, usize>,
    /// The tensors in write order.
    pub tensors: Vec<TensorPlan>,
    /// Fallbacks taken (tensor, reason).
    pub notes: Vec<String>,
}

impl Summary {
    fn new(bytes: u64, tensors: Vec<TensorPlan>, notes: Vec<String>) -> Summary {
        let mut formats = BTreeMap::new();
        for t in &tensors {
            *formats.entry(t.format).or_insert(0) += 1;
        }
        Summary {
            bytes,
            formats,
            tensors,
            notes,
        }
    }
}

/// Tensor data from an opened model: stored bytes dequantized row range by row range.
struct ModelSource<'a> {
    model: &'a ModelFile,
}

impl stream::TensorSource for ModelSource<'_> {
    fn rows_f32(&self, t: &TensorPlan, rows: Range<usize>, out: &mut Vec<f32>) -> Result<()> {
        let file = self.model.path.display();
        let entry = self.model.tensor(&t.name)?;
        let row_len = t.row_len();
        let rb = entry.format.row_bytes(row_len).ok_or_else(|| {
            Error::tensor(
                &file,
                &t.name,
                format!(
                    "row length {row_len} is not a whole number of {} blocks",
                    entry.format
                ),
            )
        })?;
        let bytes = self.model.tensor_bytes(&t.name)?;
        let part = bytes
            .get(rows.start * rb..rows.end * rb)
            .ok_or_else(|| Error::tensor(&file, &t.name, "rows lie outside its data"))?;
        out.clear();
        entry
            .format
            .dequantize(part, out)
            .map_err(|e| Error::tensor(&file, &t.name, e))
    }

    fn raw(&self, t: &TensorPlan) -> Option<&[u8]> {
        let entry = self.model.tensors.get(&t.name)?;
        if entry.format == t.format {
            self.model.tensor_bytes(&t.name).ok()
        } else {
            None
        }
    }
}

/// Everything a GGUF to be written is made of, except the tensor data.
#[derive(Clone, Debug)]
pub struct OutputPlan {
    pub metadata: Vec<(String, GgufValue)>,
    /// The tensors in write order.
    pub tensors: Vec<TensorPlan>,
    /// Fallbacks taken.
    pub notes: Vec<String>,
}

/// The metadata and tensor plan of `model` quantized to `opts.file_type`.
pub fn quantize_plan(model: &ModelFile, opts: QuantizeOptions) -> Result<OutputPlan> {
    let file = model.path.display().to_string();
    let ftype = opts.file_type;
    let sources: Vec<SourceTensor> = model
        .tensors
        .values()
        .map(|t| SourceTensor {
            name: t.name.clone(),
            shape: t.shape.clone(),
            format: t.format,
        })
        .collect();
    let gguf_source = model.kind == SourceKind::Gguf;
    let (tensors, notes) = plan(ftype, &sources, gguf_source);
    for t in &tensors {
        let src = model.tensor(&t.name)?.format;
        if src.is_quantized() && src != t.format && !opts.allow_requantize {
            return Err(Error::tensor(
                &file,
                &t.name,
                format!(
                    "is already quantized ({src}); quantizing it again to {} loses precision \
                     twice (start from an F32/F16/BF16 model, or allow requantizing)",
                    t.format
                ),
            ));
        }
    }
    let meta = match model.gguf() {
        Some(g) => {
            let mut meta = g.metadata.clone();
            let set_last = |meta: &mut Vec<(String, GgufValue)>, k: &str, v: GgufValue| {
                meta.retain(|(key, _)| key != k);
                meta.push((k.to_string(), v));
            };
            meta.retain(|(k, _)| !k.starts_with("split."));
            set_last(&mut meta, "general.quantization_version", GgufValue::U32(2));
            set_last(
                &mut meta,
                "general.file_type",
                GgufValue::U32(ftype.ggml_file_type()),
            );
            meta
        }
        None => metadata::hf_metadata(model, ftype)?,
    };
    Ok(OutputPlan {
        metadata: meta,
        tensors,
        notes,
    })
}

/// Quantizes `model` into a GGUF at `out`, streaming tensor by tensor. `progress` is called
/// after every chunk. On error the partial output is removed.
pub fn quantize_model(
    model: &ModelFile,
    opts: QuantizeOptions,
    out: &Path,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Summary> {
    let OutputPlan {
        metadata: meta,
        tensors,
        notes,
    } = quantize_plan(model, opts)?;
    if same_file(&model.path, out) {
        return Err(Error::InvalidArgument(format!(
            "the output {} is the input model",
            out.display()
        )));
    }
    let bytes = write_file(out, |w, name| {
        stream::write_gguf(w, meta, &tensors, &ModelSource { model }, name, progress)
    })?;
    Ok(Summary::new(bytes, tensors, notes))
}

/// [`quantize_model`] into memory (small models and tests).
pub fn quantize_model_to_vec(
    model: &ModelFile,
    opts: QuantizeOptions,
) -> Result<(Vec<u8>, Summary)> {
    let OutputPlan {
        metadata: meta,
        tensors,
        notes,
    } = quantize_plan(model, opts)?;
    let mut buf = Vec::new();
    let bytes = stream::write_gguf(
        &mut buf,
        meta,
        &tensors,
        &ModelSource { model },
        "<memory>",
        &mut |_| {},
    )?;
    Ok((buf, Summary::new(bytes, tensors, notes)))
}

/// Whether `out` names the same existing file as `input` (writing over a memory-mapped
/// input would corrupt the source while it is read).
fn same_file(input: &Path, out: &Path) -> bool {
    match (std::fs::canonicalize(input), std::fs::canonicalize(out)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Creates `path`, runs `write` on a buffered writer, removes the file if it fails.
pub(crate) fn write_file(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<std::fs::File>, &str) -> Result<u64>,
) -> Result<u64> {
    let name = path.display().to_string();
    let file = std::fs::File::create(path).map_err(|e| Error::io(&name, e))?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    let r = write(&mut w, &name);
    if r.is_err() {
        drop(w);
        let _ = std::fs::remove_file(path);
    }
    r
}
