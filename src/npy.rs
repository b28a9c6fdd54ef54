//! Minimal `.npy` reader/writer for test fixtures and debugging dumps.
//!
//! Supported: format versions 1.0, 2.0 and 3.0; C order only; little-endian `<f4` for floats and
//! `<i4` / `<i8` for integer ids; any rank (a scalar has shape `[]`). Everything else is an error
//! naming the file: bad magic, an unknown version, a malformed header, another dtype, Fortran
//! order, or a data size that disagrees with the shape.
//!
//! Layout of a file: `\x93NUMPY`, major, minor, header length (u16 LE for v1, u32 LE for v2/v3),
//! the header (a Python dict literal such as `{'descr': '<f4', 'fortran_order': False,
//! 'shape': (30, 512), }`, padded with spaces and ending in `\n`), then the raw data.

use std::path::Path;

use crate::error::{Error, Result};

const MAGIC: &[u8; 6] = b"\x93NUMPY";
/// The writer pads the preamble + header to a multiple of this (what numpy does).
const ALIGN: usize = 64;

/// Element type of an array, from the header's `descr`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dtype {
    F32,
    I32,
    I64,
}

impl Dtype {
    fn parse(descr: &str) -> Option<Dtype> {
        match descr {
            "<f4" => Some(Dtype::F32),
            "<i4" => Some(Dtype::I32),
            "<i8" => Some(Dtype::I64),
            _ => None,
        }
    }
    fn size(self) -> usize {
        match self {
            Dtype::F32 | Dtype::I32 => 4,
            Dtype::I64 => 8,
        }
    }
}

/// The parsed header plus where the data starts.
struct Header {
    dtype: Dtype,
    shape: Vec<usize>,
    data_offset: usize,
}

/// Reads an f32 array: returns `(shape, data)` with `data` in C order.
pub fn read_f32(path: impl AsRef<Path>) -> Result<(Vec<usize>, Vec<f32>)> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::io(path.display(), e))?;
    parse_f32(&bytes, &path.display().to_string())
}

/// Parses an f32 (`<f4`) array from the bytes of a `.npy` file; `name` labels errors.
pub fn parse_f32(bytes: &[u8], name: &str) -> Result<(Vec<usize>, Vec<f32>)> {
    let header = parse_header(bytes, name)?;
    if header.dtype != Dtype::F32 {
        return Err(Error::format(
            name,
            format!("npy dtype is {:?}, expected '<f4' (f32)", header.dtype),
        ));
    }
    let data = data_bytes(bytes, &header, name)?;
    let values = data
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Ok((header.shape, values))
}

/// Reads an integer array (`<i4` or `<i8`, e.g. token ids), widened to `i64`.
pub fn read_i64(path: impl AsRef<Path>) -> Result<(Vec<usize>, Vec<i64>)> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::io(path.display(), e))?;
    parse_i64(&bytes, &path.display().to_string())
}

/// Parses an integer (`<i4` or `<i8`) array, widened to `i64`; `name` labels errors.
pub fn parse_i64(bytes: &[u8], name: &str) -> Result<(Vec<usize>, Vec<i64>)> {
    let header = parse_header(bytes, name)?;
    let data = data_bytes(bytes, &header, name)?;
    let values = match header.dtype {
        Dtype::I32 => data
            .chunks_exact(4)
            .map(|c| i64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]])))
            .collect(),
        Dtype::I64 => data
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect(),
        Dtype::F32 => {
            return Err(Error::format(
                name,
                "npy dtype is '<f4', expected '<i4' or '<i8'",
            ));
        }
    };
    Ok((header.shape, values))
}

/// Writes an f32 array in C order (format v1.0, or v2.0 if the header needs it).
pub fn write_f32(path: impl AsRef<Path>, shape: &[usize], data: &[f32]) -> Result<()> {
    let path = path.as_ref();
    let numel: usize = shape.iter().product();
    if numel != data.len() {
        return Err(Error::InvalidArgument(format!(
            "npy write {}: shape {shape:?} has {numel} elements, data has {}",
            path.display(),
            data.len()
        )));
    }
    std::fs::write(path, to_bytes_f32(shape, data)).map_err(|e| Error::io(path.display(), e))
}

/// Serializes an f32 array to `.npy` bytes. The caller guarantees
/// `shape.iter().product() == data.len()` (`write_f32` checks it).
pub fn to_bytes_f32(shape: &[usize], data: &[f32]) -> Vec<u8> {
    let shape_str = match shape {
        [] => "()".to_string(),
        [n] => format!("({n},)"),
        _ => {
            let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
            format!("({})", dims.join(", "))
        }
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_str}, }}");
    // Preamble: magic (6) + version (2) + length (2 for v1, 4 for v2).
    let v1 = header.len() + 1 + 10 + ALIGN <= u16::MAX as usize;
    let preamble = if v1 { 10 } else { 12 };
    let total = (preamble + header.len() + 1).div_ceil(ALIGN) * ALIGN;
    let pad = total - preamble - header.len() - 1;
    header.extend(std::iter::repeat_n(' ', pad));
    header.push('\n');

    let mut out = Vec::with_capacity(total + 4 * data.len());
    out.extend_from_slice(MAGIC);
    if v1 {
        out.extend_from_slice(&[1, 0]);
        // Fits: checked by `v1` above.
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&[2, 0]);
        out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    }
    out.extend_from_slice(header.as_bytes());
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// The data section, checked against the header's dtype and shape.
fn data_bytes<'a>(bytes: &'a [u8], header: &Header, name: &str) -> Result<&'a [u8]> {
    let numel = header
        .shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .and_then(|n| n.checked_mul(header.dtype.size()));
    let Some(nbytes) = numel else {
        return Err(Error::format(
            name,
            format!("npy shape {:?} overflows", header.shape),
        ));
    };
    let data = &bytes[header.data_offset..];
    if data.len() != nbytes {
        return Err(Error::format(
            name,
            format!(
                "npy shape {:?} needs {nbytes} data bytes, file has {}",
                header.shape,
                data.len()
            ),
        ));
    }
    Ok(data)
}

fn parse_header(bytes: &[u8], name: &str) -> Result<Header> {
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(Error::format(name, "not a .npy file (bad magic)"));
    }
    let (len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10usize),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err(Error::format(name, "npy preamble truncated"));
            }
            let len = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
            (len as usize, 12)
        }
        v => {
            return Err(Error::format(
                name,
                format!("unsupported npy version {v}.{}", bytes[7]),
            ));
        }
    };
    let end = start
        .checked_add(len)
        .filter(|&e| e <= bytes.len())
        .ok_or_else(|| Error::format(name, "npy header truncated"))?;
    let text = std::str::from_utf8(&bytes[start..end])
        .map_err(|_| Error::format(name, "npy header is not UTF-8"))?;
    let dict = parse_dict(text).map_err(|msg| Error::format(name, format!("npy header: {msg}")))?;

    let mut descr = None;
    let mut fortran = None;
    let mut shape = None;
    for (key, value) in dict {
        match (key.as_str(), value) {
            ("descr", Value::Str(s)) => descr = Some(s),
            ("fortran_order", Value::Bool(b)) => fortran = Some(b),
            ("shape", Value::Tuple(t)) => shape = Some(t),
            (k @ ("descr" | "fortran_order" | "shape"), v) => {
                return Err(Error::format(
                    name,
                    format!("npy header: bad value {v:?} for '{k}'"),
                ));
            }
            _ => {}
        }
    }
    let descr = descr.ok_or_else(|| Error::format(name, "npy header: missing 'descr'"))?;
    let fortran =
        fortran.ok_or_else(|| Error::format(name, "npy header: missing 'fortran_order'"))?;
    let shape = shape.ok_or_else(|| Error::format(name, "npy header: missing 'shape'"))?;
    if fortran {
        return Err(Error::unsupported(
            "npy layout",
            format!("{name}: Fortran order"),
        ));
    }
    let dtype = Dtype::parse(&descr)
        .ok_or_else(|| Error::unsupported("npy dtype", format!("{name}: '{descr}'")))?;
    Ok(Header {
        dtype,
        shape,
        data_offset: end,
    })
}

/// A value of the header dict (the only kinds numpy writes there).
#[derive(Debug)]
enum Value {
    Str(String),
    Bool(bool),
    Tuple(Vec<usize>),
}

/// Parses the header's Python dict literal: string keys; string, bool or int-tuple values.
fn parse_dict(text: &str) -> std::result::Result<Vec<(String, Value)>, String> {
    let mut p = Parser {
        s: text.trim().as_bytes(),
        i: 0,
    };
    p.expect(b'{')?;
    let mut out = Vec::new();
    loop {
        p.skip_ws();
        if p.eat(b'}') {
            break;
        }
        let key = p.string()?;
        p.skip_ws();
        p.expect(b':')?;
        p.skip_ws();
        let value = p.value()?;
        out.push((key, value));
        p.skip_ws();
        if !p.eat(b',') {
            p.skip_ws();
            p.expect(b'}')?;
            break;
        }
    }
    p.skip_ws();
    if p.i != p.s.len() {
        return Err("trailing characters after the dict".into());
    }
    Ok(out)
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn skip_ws(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            self.i += 1;
        }
    }
    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn expect(&mut self, c: u8) -> std::result::Result<(), String> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(format!("expected '{}' at byte {}", c as char, self.i))
        }
    }
    fn string(&mut self) -> std::result::Result<String, String> {
        let quote = match self.peek() {
            Some(q @ (b'\'' | b'"')) => q,
            _ => return Err(format!("expected a string at byte {}", self.i)),
        };
        self.i += 1;
        let start = self.i;
        while self.peek().is_some_and(|c| c != quote) {
            self.i += 1;
        }
        let s = std::str::from_utf8(&self.s[start..self.i]).map_err(|_| "bad UTF-8")?;
        self.expect(quote)?;
        Ok(s.to_string())
    }
    fn int(&mut self) -> std::result::Result<usize, String> {
        let start = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
        let digits = std::str::from_utf8(&self.s[start..self.i]).map_err(|_| "bad UTF-8")?;
        let n = digits
            .parse::<usize>()
            .map_err(|_| format!("expected a dimension at byte {start}"))?;
        // Python 2 era files may write `3L`.
        self.eat(b'L');
        Ok(n)
    }
    fn value(&mut self) -> std::result::Result<Value, String> {
        match self.peek() {
            Some(b'\'' | b'"') => Ok(Value::Str(self.string()?)),
            Some(b'(') => {
                self.i += 1;
                let mut dims = Vec::new();
                loop {
                    self.skip_ws();
                    if self.eat(b')') {
                        break;
                    }
                    dims.push(self.int()?);
                    self.skip_ws();
                    if !self.eat(b',') {
                        self.skip_ws();
                        self.expect(b')')?;
                        break;
                    }
                }
                Ok(Value::Tuple(dims))
            }
            _ => {
                for (word, b) in [("True", true), ("False", false)] {
                    if self.s[self.i..].starts_with(word.as_bytes()) {
                        self.i += word.len();
                        return Ok(Value::Bool(b));
                    }
                }
                Err(format!("unsupported value at byte {}", self.i))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_header(version: u8, header: &str, data: &[u8]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&[version, 0]);
        if version == 1 {
            out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        } else {
            out.extend_from_slice(&(header.len() as u32).to_le_bytes());
        }
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out
    }

    fn f32_bytes(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn round_trip_ranks() {
        for shape in [vec![], vec![5], vec![2, 3], vec![2, 1, 3, 2]] {
            let n: usize = shape.iter().product();
            let data: Vec<f32> = (0..n).map(|i| i as f32 * 0.5 - 1.25).collect();
            let bytes = to_bytes_f32(&shape, &data);
            assert_eq!((bytes.len() - 4 * n) % 64, 0, "header padded to 64 bytes");
            let (s, d) = parse_f32(&bytes, "mem").unwrap();
            assert_eq!(s, shape);
            assert_eq!(d, data);
        }
    }

    #[test]
    fn round_trip_file() {
        let path = std::env::temp_dir().join(format!("lfm-npy-test-{}.npy", std::process::id()));
        let data = [1.0f32, -2.0, 3.5, f32::MAX, f32::MIN_POSITIVE, 0.0];
        write_f32(&path, &[3, 2], &data).unwrap();
        let (s, d) = read_f32(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(s, vec![3, 2]);
        assert_eq!(d, data);
        assert!(write_f32(&path, &[4], &data).is_err());
    }

    #[test]
    fn versions_2_and_3() {
        let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }\n";
        let data = f32_bytes(&[1.5, -3.0]);
        for v in [2, 3] {
            let (s, d) = parse_f32(&with_header(v, header, &data), "mem").unwrap();
            assert_eq!(s, vec![2]);
            assert_eq!(d, vec![1.5, -3.0]);
        }
    }

    #[test]
    fn key_order_and_quotes_do_not_matter() {
        let header = "{\"shape\": (1, 2), \"fortran_order\": False, \"descr\": \"<f4\"}";
        let (s, d) = parse_f32(&with_header(1, header, &f32_bytes(&[7.0, 8.0])), "mem").unwrap();
        assert_eq!(s, vec![1, 2]);
        assert_eq!(d, vec![7.0, 8.0]);
    }

    #[test]
    fn integer_ids() {
        let h4 = "{'descr': '<i4', 'fortran_order': False, 'shape': (3,), }";
        let d4: Vec<u8> = [1i32, -2, 65535]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        assert_eq!(
            parse_i64(&with_header(1, h4, &d4), "m").unwrap().1,
            vec![1, -2, 65535]
        );
        let h8 = "{'descr': '<i8', 'fortran_order': False, 'shape': (2,), }";
        let d8: Vec<u8> = [5i64, 1 << 40]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        assert_eq!(
            parse_i64(&with_header(1, h8, &d8), "m").unwrap().1,
            vec![5, 1 << 40]
        );
        // Ints are not floats and vice versa.
        assert!(parse_f32(&with_header(1, h4, &d4), "m").is_err());
        let hf = "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }";
        assert!(parse_i64(&with_header(1, hf, &f32_bytes(&[1.0])), "m").is_err());
    }

    #[test]
    fn errors() {
        let data = f32_bytes(&[1.0, 2.0]);
        let ok = "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }";
        assert!(parse_f32(&with_header(1, ok, &data), "m").is_ok());
        // Bad magic.
        let mut bad = with_header(1, ok, &data);
        bad[1] = b'X';
        assert!(matches!(parse_f32(&bad, "m"), Err(Error::Format { .. })));
        // Unknown version.
        assert!(parse_f32(&with_header(4, ok, &data), "m").is_err());
        // Big-endian / f64 / Fortran order.
        for h in [
            "{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }",
            "{'descr': '<f8', 'fortran_order': False, 'shape': (1,), }",
            "{'descr': '<f4', 'fortran_order': True, 'shape': (2,), }",
        ] {
            assert!(matches!(
                parse_f32(&with_header(1, h, &data), "m"),
                Err(Error::Unsupported { .. })
            ));
        }
        // Size mismatch (too little and too much data).
        let h3 = "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }";
        assert!(parse_f32(&with_header(1, h3, &data), "m").is_err());
        let h1 = "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }";
        assert!(parse_f32(&with_header(1, h1, &data), "m").is_err());
        // Malformed headers and truncation.
        for h in [
            "{'descr': '<f4', 'shape': (2,)}",
            "{'descr': '<f4'",
            "nonsense",
        ] {
            assert!(parse_f32(&with_header(1, h, &data), "m").is_err(), "{h}");
        }
        let full = with_header(1, ok, &data);
        for n in [0, 5, 9, 20] {
            assert!(parse_f32(&full[..n], "m").is_err());
        }
    }
}
