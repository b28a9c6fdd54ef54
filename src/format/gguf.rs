//! GGUF v2/v3: header, metadata and tensor index (the tensor data is never read here).
//!
//! Layout (little-endian): `GGUF`, version u32, tensor count u64, metadata count u64, the
//! metadata key/values, the tensor infos (name, n_dims u32, `ne` u64 x n_dims, ggml type u32,
//! offset u64 relative to the data section), padding to `general.alignment` (default 32),
//! then the data section. [`GgufFile::parse`] works on a prefix holding at least the header, so a
//! browser can feed it the start of a `Blob`; [`Error::NeedMoreBytes`] says how much to read.
//!
//! Every count and length is checked against the bytes left in the file and against a sane
//! bound (`MAX_*` below) before anything is allocated, every tensor's data range against the
//! file length; errors name the field.

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::format::QuantFormat;

pub use super::gguf_value::{GgufType, GgufValue, GgufWriter};

/// `general.alignment` when the key is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// Deepest array nesting accepted (arrays of arrays of ...).
const MAX_ARRAY_DEPTH: usize = 8;
/// Most dimensions a tensor may have.
const MAX_DIMS: usize = 4;
/// Most tensors an index may list (an LFM2 has a few hundred).
pub const MAX_TENSORS: u64 = 1 << 16;
/// Most metadata keys (a model has a few dozen).
pub const MAX_METADATA_KEYS: u64 = 1 << 16;
/// Most metadata values in all arrays together (a 256K vocabulary with its merges and token
/// types is under 1M); each takes 32 bytes in memory, whatever its size in the file.
pub const MAX_METADATA_VALUES: u64 = 1 << 24;
/// Longest metadata key (the GGUF spec's limit) and tensor name.
pub const MAX_KEY_LEN: u64 = 65535;
pub const MAX_TENSOR_NAME_LEN: u64 = 1024;
/// Longest string value (chat templates are tens of KiB).
pub const MAX_STRING_LEN: u64 = 16 << 20;

/// One tensor of the index, as the file states it.
#[derive(Clone, Debug, PartialEq)]
pub struct GgufTensorInfo {
    pub name: String,
    /// ggml `ne`: innermost (contiguous) dimension first.
    pub ne: Vec<u64>,
    pub ggml_type: u32,
    pub format: QuantFormat,
    /// Offset relative to the start of the data section.
    pub offset: u64,
    /// Byte size of the data.
    pub size: u64,
}

impl GgufTensorInfo {
    /// Row-major shape, outermost first (the reverse of `ne`).
    pub fn shape(&self) -> Vec<u64> {
        self.ne.iter().rev().copied().collect()
    }
}

/// A parsed GGUF header.
#[derive(Clone, Debug)]
pub struct GgufFile {
    pub file_name: String,
    pub version: u32,
    /// Key/values in file order.
    pub metadata: Vec<(String, GgufValue)>,
    pub tensors: Vec<GgufTensorInfo>,
    pub alignment: u64,
    /// Absolute offset of the data section.
    pub data_offset: u64,
    /// Total file length the header was validated against.
    pub file_len: u64,
    kv_index: HashMap<String, usize>,
    tensor_index: HashMap<String, usize>,
}

/// Cursor over the header bytes.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    file_len: u64,
    file: &'a str,
    /// Metadata array elements still allowed ([`MAX_METADATA_VALUES`]).
    values_left: u64,
}

impl<'a> Reader<'a> {
    fn remaining_in_file(&self) -> u64 {
        self.file_len.saturating_sub(self.pos as u64)
    }

    fn take(&mut self, n: usize, what: &dyn Fn() -> String) -> Result<&'a [u8]> {
        let bytes = self
            .pos
            .checked_add(n)
            .and_then(|end| Some((end, self.buf.get(self.pos..end)?)));
        match bytes {
            Some((end, s)) => {
                self.pos = end;
                Ok(s)
            }
            None => {
                let need = (self.pos as u64).saturating_add(n as u64);
                if need <= self.file_len && (self.buf.len() as u64) < self.file_len {
                    Err(Error::NeedMoreBytes {
                        file: self.file.to_string(),
                        have: self.buf.len() as u64,
                        need,
                    })
                } else {
                    Err(Error::format(
                        self.file,
                        format!(
                            "truncated: {} at offset {} needs {} bytes but the file has {}",
                            what(),
                            self.pos,
                            n,
                            self.file_len
                        ),
                    ))
                }
            }
        }
    }

    /// The next `N` bytes as an array.
    fn array<const N: usize>(&mut self, what: &dyn Fn() -> String) -> Result<[u8; N]> {
        let b = self.take(N, what)?;
        // `take` returned exactly N bytes.
        Ok(b.try_into().unwrap_or([0; N]))
    }

    fn u8(&mut self, what: &dyn Fn() -> String) -> Result<u8> {
        Ok(u8::from_le_bytes(self.array(what)?))
    }

    fn u16(&mut self, what: &dyn Fn() -> String) -> Result<u16> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }

    fn u32(&mut self, what: &dyn Fn() -> String) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &dyn Fn() -> String) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// Checks `count` (of the field `what()` names) against a sane upper bound `max`.
    fn check_max(&self, count: u64, max: u64, what: &dyn Fn() -> String) -> Result<()> {
        if count > max {
            return Err(Error::format(
                self.file,
                format!(
                    "{} is {count}, more than the {max} this reader accepts (corrupt or hostile \
                     file; offset {})",
                    what(),
                    self.pos
                ),
            ));
        }
        Ok(())
    }

    /// Checks that `count` items of at least `min_size` bytes each can fit in the file.
    fn check_count(&self, count: u64, min_size: u64, what: &dyn Fn() -> String) -> Result<usize> {
        let fits = count
            .checked_mul(min_size)
            .is_some_and(|n| n <= self.remaining_in_file());
        match (fits, usize::try_from(count)) {
            (true, Ok(c)) => Ok(c),
            _ => Err(Error::format(
                self.file,
                format!(
                    "truncated or corrupt: {} count {} cannot fit in the {} bytes left in the file \
                     (offset {})",
                    what(),
                    count,
                    self.remaining_in_file(),
                    self.pos
                ),
            )),
        }
    }

    /// A length-prefixed UTF-8 string of at most `max` bytes.
    fn string(&mut self, max: u64, what: &dyn Fn() -> String) -> Result<String> {
        let len = self.u64(&|| format!("length of {}", what()))?;
        let len = self.check_count(len, 1, &|| format!("length of {}", what()))?;
        self.check_max(len as u64, max, &|| format!("length of {}", what()))?;
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|e| Error::format(self.file, format!("{} is not valid UTF-8: {e}", what())))
    }

    fn value(&mut self, ty: GgufType, key: &str, depth: usize) -> Result<GgufValue> {
        let what = || format!("value of `{key}`");
        let v = match ty {
            GgufType::U8 => GgufValue::U8(self.u8(&what)?),
            GgufType::I8 => GgufValue::I8(self.u8(&what)? as i8),
            GgufType::U16 => GgufValue::U16(self.u16(&what)?),
            GgufType::I16 => GgufValue::I16(self.u16(&what)? as i16),
            GgufType::U32 => GgufValue::U32(self.u32(&what)?),
            GgufType::I32 => GgufValue::I32(self.u32(&what)? as i32),
            GgufType::F32 => GgufValue::F32(f32::from_bits(self.u32(&what)?)),
            GgufType::Bool => match self.u8(&what)? {
                0 => GgufValue::Bool(false),
                1 => GgufValue::Bool(true),
                b => {
                    return Err(Error::format(
                        self.file,
                        format!("metadata `{key}`: bool byte is {b}, expected 0 or 1"),
                    ));
                }
            },
            GgufType::String => GgufValue::String(self.string(MAX_STRING_LEN, &what)?),
            GgufType::U64 => GgufValue::U64(self.u64(&what)?),
            GgufType::I64 => GgufValue::I64(self.u64(&what)? as i64),
            GgufType::F64 => GgufValue::F64(f64::from_bits(self.u64(&what)?)),
            GgufType::Array => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(Error::format(
                        self.file,
                        format!("metadata `{key}`: arrays nested deeper than {MAX_ARRAY_DEPTH}"),
                    ));
                }
                let et = self.u32(&|| format!("element type of `{key}`"))?;
                let et = GgufType::from_u32(et).ok_or_else(|| {
                    Error::format(
                        self.file,
                        format!("metadata `{key}`: unknown array element type {et}"),
                    )
                })?;
                let n = self.u64(&|| format!("length of `{key}`"))?;
                let n = self.check_count(n, et.min_size(), &|| format!("array `{key}`"))?;
                self.check_max(n as u64, self.values_left, &|| {
                    format!(
                        "length of array `{key}` (all arrays together may hold \
                         {MAX_METADATA_VALUES} values)"
                    )
                })?;
                self.values_left -= n as u64;
                let mut items = Vec::with_capacity(n.min(1 << 16));
                for _ in 0..n {
                    items.push(self.value(et, key, depth + 1)?);
                }
                GgufValue::Array(et, items)
            }
        };
        Ok(v)
    }
}

/// Names of ggml types this build cannot load, for error messages.
fn ggml_type_name(id: u32) -> &'static str {
    match id {
        3 => "q4_1",
        6 => "q5_0",
        7 => "q5_1",
        9 => "q8_1",
        10 => "q2_K",
        11 => "q3_K",
        15 => "q8_K",
        16..=23 | 29 => "iq (importance) quant",
        24 => "i8",
        25 => "i16",
        26 => "i32",
        27 => "i64",
        28 => "f64",
        34 => "tq1_0",
        35 => "tq2_0",
        39 => "mxfp4",
        _ => "unknown",
    }
}

impl GgufFile {
    /// Parses the header in `header` (a prefix of the file, or all of it) of a file of
    /// `file_len` bytes. Errors name `file_name`.
    pub fn parse(header: &[u8], file_len: u64, file_name: &str) -> Result<GgufFile> {
        let mut r = Reader {
            buf: header,
            pos: 0,
            file_len,
            file: file_name,
            values_left: MAX_METADATA_VALUES,
        };
        let magic = r.take(4, &|| "magic".to_string())?;
        if magic != b"GGUF" {
            return Err(Error::format(
                file_name,
                format!("not a GGUF file: magic is {magic:02x?}, expected \"GGUF\""),
            ));
        }
        let version = r.u32(&|| "version".to_string())?;
        match version {
            2 | 3 => {}
            1 => {
                return Err(Error::unsupported(
                    "GGUF version",
                    format!("{file_name}: GGUF v1"),
                ));
            }
            v if v.swap_bytes() == 2 || v.swap_bytes() == 3 => {
                return Err(Error::unsupported(
                    "GGUF byte order",
                    format!("{file_name}: big-endian GGUF"),
                ));
            }
            v => {
                return Err(Error::format(
                    file_name,
                    format!("unknown GGUF version {v} (expected 2 or 3)"),
                ));
            }
        }
        let n_tensors = r.u64(&|| "tensor count".to_string())?;
        let n_kv = r.u64(&|| "metadata count".to_string())?;
        // Smallest key/value: key length (8) + type (4) + a one-byte value.
        let n_kv = r.check_count(n_kv, 13, &|| "metadata".to_string())?;
        // Smallest tensor info: name length (8) + n_dims (4) + one dim (8) + type (4) + offset (8).
        let n_tensors = r.check_count(n_tensors, 32, &|| "tensor infos".to_string())?;
        r.check_max(n_tensors as u64, MAX_TENSORS, &|| {
            "tensor count".to_string()
        })?;
        r.check_max(n_kv as u64, MAX_METADATA_KEYS, &|| {
            "metadata count".to_string()
        })?;

        let mut metadata = Vec::with_capacity(n_kv.min(1024));
        let mut kv_index = HashMap::new();
        for i in 0..n_kv {
            let key = r.string(MAX_KEY_LEN, &|| format!("key of metadata entry {i}"))?;
            let ty = r.u32(&|| format!("type of metadata `{key}`"))?;
            let ty = GgufType::from_u32(ty).ok_or_else(|| {
                Error::format(
                    file_name,
                    format!("metadata `{key}`: unknown value type {ty}"),
                )
            })?;
            let value = r.value(ty, &key, 0)?;
            if kv_index.insert(key.clone(), metadata.len()).is_some() {
                return Err(Error::format(
                    file_name,
                    format!("duplicate metadata key `{key}`"),
                ));
            }
            metadata.push((key, value));
        }

        let mut tensors = Vec::with_capacity(n_tensors.min(4096));
        let mut tensor_index = HashMap::new();
        for i in 0..n_tensors {
            let t = read_tensor_info(&mut r, i)?;
            if tensor_index.insert(t.name.clone(), tensors.len()).is_some() {
                return Err(Error::tensor(
                    file_name,
                    &t.name,
                    "appears twice in the tensor index",
                ));
            }
            tensors.push(t);
        }

        let mut file = GgufFile {
            file_name: file_name.to_string(),
            version,
            metadata,
            tensors,
            alignment: DEFAULT_ALIGNMENT,
            data_offset: 0,
            file_len,
            kv_index,
            tensor_index,
        };
        if let Some(a) = file.get_u64("general.alignment")? {
            if a == 0 || !a.is_power_of_two() || a > (1 << 20) {
                return Err(Error::config(
                    file_name,
                    "general.alignment",
                    format!("{a} is not a power of two in 1..=1048576"),
                ));
            }
            file.alignment = a;
        }
        let header_end = r.pos as u64;
        file.data_offset = header_end.div_ceil(file.alignment) * file.alignment;
        if file.data_offset > file_len {
            return Err(Error::format(
                file_name,
                format!(
                    "truncated: the data section starts at {} but the file has {} bytes",
                    file.data_offset, file_len
                ),
            ));
        }
        file.check_tensor_data()?;
        Ok(file)
    }

    /// Checks each tensor's size, alignment and data range.
    fn check_tensor_data(&mut self) -> Result<()> {
        let data_len = self.file_len - self.data_offset;
        let (file, align) = (&self.file_name, self.alignment);
        for t in &mut self.tensors {
            let row = t.ne.first().copied().unwrap_or(0);
            let row_bytes = usize::try_from(row)
                .ok()
                .and_then(|n| t.format.row_bytes(n))
                .ok_or_else(|| {
                    Error::tensor(
                        file,
                        &t.name,
                        format!(
                            "row length {row} is not a whole number of {} blocks of {}",
                            t.format,
                            t.format.block_elems()
                        ),
                    )
                })?;
            let size =
                t.ne.iter()
                    .skip(1)
                    .try_fold(row_bytes as u64, |acc, &d| acc.checked_mul(d))
                    .ok_or_else(|| Error::tensor(file, &t.name, "data size overflows"))?;
            t.size = size;
            if t.offset % align != 0 {
                return Err(Error::tensor(
                    file,
                    &t.name,
                    format!(
                        "data offset {} is not a multiple of the alignment {align}",
                        t.offset
                    ),
                ));
            }
            if t.offset.checked_add(size).is_none_or(|end| end > data_len) {
                return Err(Error::tensor(
                    file,
                    &t.name,
                    format!(
                        "data [{}, {}) lies outside the {data_len}-byte data section \
                         (file truncated or corrupt offset)",
                        t.offset,
                        t.offset.saturating_add(size)
                    ),
                ));
            }
        }
        Ok(())
    }

    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.kv_index
            .get(key)
            .and_then(|&i| self.metadata.get(i))
            .map(|(_, v)| v)
    }

    pub fn tensor(&self, name: &str) -> Option<&GgufTensorInfo> {
        self.tensor_index
            .get(name)
            .and_then(|&i| self.tensors.get(i))
    }

    pub fn has_tensor(&self, name: &str) -> bool {
        self.tensor_index.contains_key(name)
    }

    fn wrong_type(&self, key: &str, want: &str, v: &GgufValue) -> Error {
        Error::config(
            &self.file_name,
            key,
            format!("expected {want}, got {}", v.short_display()),
        )
    }

    fn missing(&self, key: &str) -> Error {
        Error::config(&self.file_name, key, "missing from the GGUF metadata")
    }

    /// Any integer type whose value fits in u64.
    pub fn get_u64(&self, key: &str) -> Result<Option<u64>> {
        self.get(key)
            .map(|v| {
                v.as_u64()
                    .ok_or_else(|| self.wrong_type(key, "a non-negative integer", v))
            })
            .transpose()
    }

    /// Any integer type whose value fits in u32.
    pub fn get_u32(&self, key: &str) -> Result<Option<u32>> {
        self.get(key)
            .map(|v| {
                v.as_u64()
                    .and_then(|x| u32::try_from(x).ok())
                    .ok_or_else(|| self.wrong_type(key, "an integer in u32 range", v))
            })
            .transpose()
    }

    /// f32/f64, or an integer.
    pub fn get_f32(&self, key: &str) -> Result<Option<f32>> {
        self.get(key)
            .map(|v| {
                v.as_f64()
                    .map(|x| x as f32)
                    .ok_or_else(|| self.wrong_type(key, "a number", v))
            })
            .transpose()
    }

    pub fn get_bool(&self, key: &str) -> Result<Option<bool>> {
        self.get(key)
            .map(|v| v.as_bool().ok_or_else(|| self.wrong_type(key, "a bool", v)))
            .transpose()
    }

    pub fn get_str(&self, key: &str) -> Result<Option<&str>> {
        self.get(key)
            .map(|v| {
                v.as_str()
                    .ok_or_else(|| self.wrong_type(key, "a string", v))
            })
            .transpose()
    }

    pub fn get_arr(&self, key: &str) -> Result<Option<&[GgufValue]>> {
        self.get(key)
            .map(|v| {
                v.as_array()
                    .ok_or_else(|| self.wrong_type(key, "an array", v))
            })
            .transpose()
    }

    /// An array of integers (any integer element type) as u32.
    pub fn get_u32_arr(&self, key: &str) -> Result<Option<Vec<u32>>> {
        let Some(arr) = self.get_arr(key)? else {
            return Ok(None);
        };
        arr.iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_u64()
                    .and_then(|x| u32::try_from(x).ok())
                    .ok_or_else(|| {
                        Error::config(
                            &self.file_name,
                            key,
                            format!("element {i}: expected a u32, got {}", v.short_display()),
                        )
                    })
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    /// An array of strings.
    pub fn get_str_arr(&self, key: &str) -> Result<Option<Vec<&str>>> {
        let Some(arr) = self.get_arr(key)? else {
            return Ok(None);
        };
        arr.iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_str().ok_or_else(|| {
                    Error::config(
                        &self.file_name,
                        key,
                        format!("element {i}: expected a string, got {}", v.short_display()),
                    )
                })
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    pub fn req_u32(&self, key: &str) -> Result<u32> {
        self.get_u32(key)?.ok_or_else(|| self.missing(key))
    }

    pub fn req_f32(&self, key: &str) -> Result<f32> {
        self.get_f32(key)?.ok_or_else(|| self.missing(key))
    }

    pub fn req_str(&self, key: &str) -> Result<&str> {
        self.get_str(key)?.ok_or_else(|| self.missing(key))
    }

    /// `general.architecture`.
    pub fn architecture(&self) -> Result<&str> {
        self.req_str("general.architecture")
    }
}

fn read_tensor_info(r: &mut Reader<'_>, i: usize) -> Result<GgufTensorInfo> {
    let file = r.file;
    let name = r.string(MAX_TENSOR_NAME_LEN, &|| format!("name of tensor {i}"))?;
    let n_dims = r.u32(&|| format!("n_dims of tensor `{name}`"))? as usize;
    if n_dims == 0 || n_dims > MAX_DIMS {
        return Err(Error::tensor(
            file,
            &name,
            format!("has {n_dims} dimensions (expected 1..={MAX_DIMS})"),
        ));
    }
    let mut ne = Vec::with_capacity(n_dims);
    for d in 0..n_dims {
        let v = r.u64(&|| format!("dimension {d} of tensor `{name}`"))?;
        if v == 0 {
            return Err(Error::tensor(file, &name, format!("dimension {d} is 0")));
        }
        ne.push(v);
    }
    let numel = ne.iter().try_fold(1u64, |a, &d| a.checked_mul(d));
    if numel.is_none_or(|n| n > (1u64 << 48)) {
        return Err(Error::tensor(
            file,
            &name,
            format!("absurd dimensions {ne:?}"),
        ));
    }
    let ggml_type = r.u32(&|| format!("type of tensor `{name}`"))?;
    let format = QuantFormat::from_ggml_type(ggml_type).ok_or_else(|| {
        Error::unsupported(
            "tensor type",
            format!(
                "{file}: tensor `{name}` has ggml type {ggml_type} ({})",
                ggml_type_name(ggml_type)
            ),
        )
    })?;
    let offset = r.u64(&|| format!("offset of tensor `{name}`"))?;
    Ok(GgufTensorInfo {
        name,
        ne,
        ggml_type,
        format,
        offset,
        size: 0,
    })
}
