//! Model files: GGUF (v2/v3) and Hugging Face directories (config.json + safetensors +
//! tokenizer.json). Parsing reads headers and the tensor index only; tensor bytes are served
//! from memory maps and are never copied as a whole.
//!
//! Tensor naming: every tensor is known by its GGUF name (`token_embd.weight`,
//! `blk.3.shortconv.in_proj.weight`...), whatever the source. Shapes are row-major, outermost
//! first (PyTorch order; the reverse of GGUF's `ne`). The short-conv kernel is `[H, L]`.

pub mod gguf;
mod gguf_value;
pub mod hf;
pub mod quant;
mod source;

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

pub use quant::QuantFormat;
pub use source::{MappedSource, WeightSource};

use crate::config::Lfm2Config;
use crate::error::{Error, Result};

/// Which kind of file a model came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceKind {
    Gguf,
    HfDir,
}

/// One tensor of the index.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorEntry {
    /// GGUF name.
    pub name: String,
    /// Row-major shape, outermost first.
    pub shape: Vec<usize>,
    pub format: QuantFormat,
    /// Index of the backing storage (memory map) in the `ModelFile`.
    pub storage: usize,
    /// Byte offset of the tensor inside that storage (u64: a file streamed from a `Blob` in the
    /// browser may be larger than wasm32's address space).
    pub offset: u64,
    /// Byte length of the tensor data.
    pub len: usize,
}

impl TensorEntry {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// Bytes backing tensors: a memory map (native), an owned buffer (tests, built-in models), or
/// bytes that stay outside the process (a `Blob` in the browser) and are read range by range
/// through a [`WeightSource`] during upload.
pub(crate) enum Storage {
    #[cfg(not(target_arch = "wasm32"))]
    Mmap(memmap2::Mmap),
    Owned(Vec<u8>),
    External {
        len: u64,
    },
}

impl Storage {
    /// Tells the OS the pages of `range` will not be read again soon (after their upload), so
    /// the mapped file does not stay resident. A hint only; nothing to do for owned bytes.
    pub(crate) fn release(&self, range: Range<u64>) {
        #[cfg(unix)]
        if let Storage::Mmap(m) = self {
            // Page-align inward; errors are ignored (it is advice).
            let page = 4096;
            let start = range.start.div_ceil(page) as usize * page as usize;
            let end = (range.end / page) as usize * page as usize;
            if end > start {
                // SAFETY: the map is a read-only, shared mapping of a file we never write: after
                // MADV_DONTNEED a read faults the same bytes back in from the file, so slices
                // into the map stay valid and unchanged.
                let _ = unsafe {
                    m.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, end - start)
                };
            }
        }
        #[cfg(not(unix))]
        let _ = range;
    }

    /// The bytes, when they are in memory (`None` for external storage).
    pub(crate) fn bytes(&self) -> Option<&[u8]> {
        match self {
            #[cfg(not(target_arch = "wasm32"))]
            Storage::Mmap(m) => Some(m),
            Storage::Owned(v) => Some(v),
            Storage::External { .. } => None,
        }
    }

    /// Length in bytes.
    pub(crate) fn len(&self) -> u64 {
        match self {
            Storage::External { len } => *len,
            s => s.bytes().map_or(0, |b| b.len() as u64),
        }
    }

    /// Maps `path` read-only (reads it on wasm32, which has no mmap).
    pub(crate) fn map(path: &Path) -> Result<Storage> {
        let file = std::fs::File::open(path).map_err(|e| Error::io(path.display(), e))?;
        #[cfg(not(target_arch = "wasm32"))]
        {
            // SAFETY: the map is read-only. Like every mmap-based loader we assume the file is not
            // truncated or rewritten while the model is open.
            let map =
                unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path.display(), e))?;
            Ok(Storage::Mmap(map))
        }
        #[cfg(target_arch = "wasm32")]
        {
            use std::io::Read;
            let mut v = Vec::new();
            let mut file = file;
            file.read_to_end(&mut v)
                .map_err(|e| Error::io(path.display(), e))?;
            Ok(Storage::Owned(v))
        }
    }
}

/// What the source holds besides tensors.
enum Source {
    Gguf(gguf::GgufFile),
    Hf(hf::HfInfo),
}

/// An opened model: config, tensor index (GGUF names), and the mapped bytes.
pub struct ModelFile {
    pub path: PathBuf,
    pub kind: SourceKind,
    pub config: Lfm2Config,
    pub tensors: BTreeMap<String, TensorEntry>,
    storages: Vec<Storage>,
    source: Source,
}

impl std::fmt::Debug for ModelFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelFile")
            .field("path", &self.path)
            .field("kind", &self.kind)
            .field("config", &self.config)
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

impl ModelFile {
    /// Opens a `.gguf` file or a Hugging Face directory, and checks the config and every
    /// expected tensor's shape.
    pub fn open(path: &Path) -> Result<ModelFile> {
        let meta = std::fs::metadata(path).map_err(|e| Error::io(path.display(), e))?;
        if meta.is_dir() {
            let (info, storages, tensors) = hf::open_dir(path)?;
            let file = path.join("config.json").display().to_string();
            return ModelFile::finish(
                path,
                SourceKind::HfDir,
                info.config.clone(),
                tensors,
                storages,
                Source::Hf(info),
                &file,
            );
        }
        let is_gguf = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("gguf"));
        if !is_gguf {
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
            let in_dir = name.as_deref() == Some("config.json")
                || path.extension().is_some_and(|e| e == "safetensors");
            let hint = if in_dir {
                "open the directory that holds it, not the file"
            } else {
                "expected a `.gguf` file or a Hugging Face directory (config.json + *.safetensors)"
            };
            return Err(Error::format(
                path.display(),
                format!("not a model: {hint}"),
            ));
        }
        let storage = Storage::map(path)?;
        ModelFile::from_gguf_storage(path, storage, None)
    }

    /// Parses GGUF bytes already in memory (`name` is used in errors).
    pub fn from_gguf_bytes(bytes: Vec<u8>, name: &str) -> Result<ModelFile> {
        ModelFile::from_gguf_storage(Path::new(name), Storage::Owned(bytes), None)
    }

    /// Opens a GGUF file of `file_len` bytes from a prefix `header` that holds at least its
    /// header; tensor bytes stay where they are (a `Blob` in the browser) and are read through a
    /// [`WeightSource`] at upload. A prefix that is too short gives [`Error::NeedMoreBytes`]
    /// with the length to read next.
    pub fn from_gguf_header(header: &[u8], file_len: u64, name: &str) -> Result<ModelFile> {
        ModelFile::from_gguf_storage(
            Path::new(name),
            Storage::External { len: file_len },
            Some(header),
        )
    }

    fn from_gguf_storage(
        path: &Path,
        storage: Storage,
        header: Option<&[u8]>,
    ) -> Result<ModelFile> {
        let file = path.display().to_string();
        let bytes = header.or(storage.bytes()).unwrap_or_default();
        let g = gguf::GgufFile::parse(bytes, storage.len(), &file)?;
        let config = Lfm2Config::from_gguf(&g)?;
        let mut tensors = BTreeMap::new();
        for t in &g.tensors {
            let to_usize = |v: u64| {
                usize::try_from(v)
                    .map_err(|_| Error::tensor(&file, &t.name, "too large for this platform"))
            };
            let shape = t
                .shape()
                .into_iter()
                .map(to_usize)
                .collect::<Result<Vec<_>>>()?;
            let entry = TensorEntry {
                name: t.name.clone(),
                shape,
                format: t.format,
                storage: 0,
                offset: g.data_offset + t.offset,
                len: to_usize(t.size)?,
            };
            tensors.insert(t.name.clone(), entry);
        }
        ModelFile::finish(
            path,
            SourceKind::Gguf,
            config,
            tensors,
            vec![storage],
            Source::Gguf(g),
            &file,
        )
    }

    fn finish(
        path: &Path,
        kind: SourceKind,
        config: Lfm2Config,
        tensors: BTreeMap<String, TensorEntry>,
        storages: Vec<Storage>,
        source: Source,
        file: &str,
    ) -> Result<ModelFile> {
        config.validate(file)?;
        let model = ModelFile {
            path: path.to_path_buf(),
            kind,
            config,
            tensors,
            storages,
            source,
        };
        model.check_tensors()?;
        Ok(model)
    }

    /// Every expected tensor is present with the expected shape, and its bytes are in range.
    fn check_tensors(&self) -> Result<()> {
        let file = self.path.display().to_string();
        for (name, shape) in expected_tensors(&self.config) {
            let t = self
                .tensors
                .get(&name)
                .ok_or_else(|| Error::tensor(&file, &name, "missing"))?;
            if t.shape != shape {
                return Err(Error::Shape {
                    file: file.clone(),
                    tensor: name,
                    expected: shape,
                    got: t.shape.clone(),
                });
            }
        }
        if let Some(t) = self.tensors.get("output.weight") {
            let want = vec![self.config.vocab_size, self.config.hidden_size];
            if t.shape != want {
                return Err(Error::Shape {
                    file,
                    tensor: t.name.clone(),
                    expected: want,
                    got: t.shape.clone(),
                });
            }
        }
        for t in self.tensors.values() {
            self.tensor_range(&t.name)?;
        }
        Ok(())
    }

    /// Where tensor `name` lies: its storage index and byte range, checked against the
    /// storage's length.
    pub fn tensor_range(&self, name: &str) -> Result<(usize, Range<u64>)> {
        let t = self.tensor(name)?;
        let end = t.offset.checked_add(t.len as u64);
        match (self.storages.get(t.storage), end) {
            (Some(st), Some(end)) if end <= st.len() => Ok((t.storage, t.offset..end)),
            _ => Err(Error::tensor(
                self.path.display(),
                name,
                "data lies outside its file",
            )),
        }
    }

    /// Reads tensor bytes straight from this file's memory (maps or owned buffers).
    pub fn mapped(&self) -> MappedSource<'_> {
        MappedSource(self)
    }

    pub fn tensor(&self, name: &str) -> Result<&TensorEntry> {
        self.tensors
            .get(name)
            .ok_or_else(|| Error::tensor(self.path.display(), name, "not in the model"))
    }

    pub fn has_tensor(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// The tensor's bytes, borrowed from the memory map (an error for a file opened with
    /// [`ModelFile::from_gguf_header`], whose bytes are read through a [`WeightSource`]).
    pub fn tensor_bytes(&self, name: &str) -> Result<&[u8]> {
        let (storage, range) = self.tensor_range(name)?;
        self.storage_bytes(storage, range)
            .map_err(|msg| Error::tensor(self.path.display(), name, msg))
    }

    fn storage_bytes(
        &self,
        storage: usize,
        range: Range<u64>,
    ) -> std::result::Result<&[u8], &'static str> {
        let st = self.storages.get(storage).ok_or("no such storage")?;
        let bytes = st
            .bytes()
            .ok_or("the bytes are not in memory (read them through a WeightSource)")?;
        let (Ok(a), Ok(b)) = (usize::try_from(range.start), usize::try_from(range.end)) else {
            return Err("data lies outside its file");
        };
        bytes.get(a..b).ok_or("data lies outside its file")
    }

    /// The tensor dequantized to f32 (row-major).
    /// Drops the file pages of tensor `name` from memory once it has been uploaded (they are
    /// read again from the file if needed). Keeps host RSS bounded during a streaming load.
    pub fn release_tensor(&self, name: &str) {
        if let Some(t) = self.tensors.get(name)
            && let Some(st) = self.storages.get(t.storage)
        {
            st.release(t.offset..t.offset + t.len as u64);
        }
    }

    pub fn tensor_f32(&self, name: &str) -> Result<Vec<f32>> {
        let t = self.tensor(name)?;
        let mut out = Vec::with_capacity(t.numel());
        t.format
            .dequantize(self.tensor_bytes(name)?, &mut out)
            .map_err(|msg| Error::tensor(self.path.display(), name, msg))?;
        Ok(out)
    }

    /// `output.weight`, or `token_embd.weight` when the embeddings are tied.
    pub fn output_tensor_name(&self) -> &str {
        if !self.config.tie_embeddings && self.has_tensor("output.weight") {
            "output.weight"
        } else {
            "token_embd.weight"
        }
    }

    /// Total bytes of all tensors.
    pub fn weight_bytes(&self) -> u64 {
        self.tensors.values().map(|t| t.len as u64).sum()
    }

    /// The parsed GGUF header, for GGUF sources.
    pub fn gguf(&self) -> Option<&gguf::GgufFile> {
        match &self.source {
            Source::Gguf(g) => Some(g),
            Source::Hf(_) => None,
        }
    }

    /// The tokenizer: from GGUF metadata or the directory's tokenizer files.
    pub fn tokenizer(&self) -> Result<crate::tokenizer::Tokenizer> {
        match &self.source {
            Source::Gguf(g) => crate::tokenizer::Tokenizer::from_gguf(g),
            Source::Hf(info) => info.tokenizer(),
        }
    }

    /// Key/value lines describing the file (for `lfm info`): source, sizes, then the raw
    /// metadata (GGUF key/values or config.json entries), arrays abbreviated.
    pub fn metadata_summary(&self) -> Vec<(String, String)> {
        let mut out = vec![
            ("path".to_string(), self.path.display().to_string()),
            ("tensors".to_string(), self.tensors.len().to_string()),
            ("weight bytes".to_string(), self.weight_bytes().to_string()),
        ];
        let mut formats: BTreeMap<QuantFormat, usize> = BTreeMap::new();
        for t in self.tensors.values() {
            *formats.entry(t.format).or_default() += 1;
        }
        let formats: Vec<String> = formats.iter().map(|(f, n)| format!("{n} {f}")).collect();
        out.push(("tensor formats".to_string(), formats.join(", ")));
        match &self.source {
            Source::Gguf(g) => {
                out.push(("format".to_string(), format!("GGUF v{}", g.version)));
                out.push(("alignment".to_string(), g.alignment.to_string()));
                out.extend(
                    g.metadata
                        .iter()
                        .map(|(k, v)| (k.clone(), v.short_display())),
                );
            }
            Source::Hf(info) => {
                out.push(("format".to_string(), "Hugging Face safetensors".to_string()));
                out.extend(info.summary());
            }
        }
        out
    }
}

/// Every tensor the config requires, with its row-major shape (`output.weight` only when the
/// embeddings are not tied).
pub fn expected_tensors(config: &Lfm2Config) -> Vec<(String, Vec<usize>)> {
    let (h, v, ff, l) = (
        config.hidden_size,
        config.vocab_size,
        config.ff_size,
        config.conv_kernel,
    );
    let (hd, q, kv) = (config.head_dim, config.q_dim(), config.kv_dim());
    let mut out = vec![
        ("token_embd.weight".to_string(), vec![v, h]),
        ("token_embd_norm.weight".to_string(), vec![h]),
    ];
    if !config.tie_embeddings {
        out.push(("output.weight".to_string(), vec![v, h]));
    }
    for (i, kind) in config.layers.iter().enumerate() {
        let mut add = |n: &str, s: Vec<usize>| out.push((format!("blk.{i}.{n}.weight"), s));
        add("attn_norm", vec![h]);
        add("ffn_norm", vec![h]);
        add("ffn_gate", vec![ff, h]);
        add("ffn_up", vec![ff, h]);
        add("ffn_down", vec![h, ff]);
        match kind {
            crate::config::LayerKind::Conv => {
                add("shortconv.conv", vec![h, l]);
                add("shortconv.in_proj", vec![3 * h, h]);
                add("shortconv.out_proj", vec![h, h]);
            }
            crate::config::LayerKind::Attention => {
                add("attn_q", vec![q, h]);
                add("attn_k", vec![kv, h]);
                add("attn_v", vec![kv, h]);
                add("attn_output", vec![h, q]);
                add("attn_q_norm", vec![hd]);
                add("attn_k_norm", vec![hd]);
            }
        }
    }
    out
}
