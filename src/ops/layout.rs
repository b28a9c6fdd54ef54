//! The device layout of weights: how the file's blocks are repacked at upload so every field a
//! kernel reads is u32-aligned. Q4_0 and Q8_0 move `d` into a word of its own (18 -> 20 and
//! 34 -> 36 bytes); Q6_K is padded from 210 to 212 bytes; every other format is used as stored.
//! Rows stay contiguous, so a row of `n` elements is `n / block_elems * block_words` words.

use crate::format::QuantFormat;

/// Bytes of one block on the device.
pub const fn gpu_block_bytes(f: QuantFormat) -> usize {
    match f {
        QuantFormat::Q4_0 => 20,
        QuantFormat::Q8_0 => 36,
        QuantFormat::Q6K => 212,
        other => other.block_bytes(),
    }
}

/// Device bytes of a row of `n` elements (`n` a multiple of the block size; f16/bf16 rows of
/// odd length are not supported by the kernels and are rejected before this is used).
pub fn gpu_row_bytes(f: QuantFormat, n: usize) -> usize {
    n / f.block_elems() * gpu_block_bytes(f)
}

/// Whether `repack` changes the bytes (else the file's bytes are uploaded as they are).
pub fn needs_repack(f: QuantFormat) -> bool {
    gpu_block_bytes(f) != f.block_bytes()
}

/// Repacks whole blocks of `src` (file layout) into `dst` (device layout); `dst` is cleared
/// first. `src.len()` must be a multiple of the block size.
pub fn repack(f: QuantFormat, src: &[u8], dst: &mut Vec<u8>) {
    dst.clear();
    let (bb, gb) = (f.block_bytes(), gpu_block_bytes(f));
    dst.reserve(src.len() / bb * gb);
    for b in src.chunks_exact(bb) {
        match f {
            // d (2 bytes) then the quants: put d alone in the first word.
            QuantFormat::Q4_0 | QuantFormat::Q8_0 => {
                dst.extend_from_slice(&b[..2]);
                dst.extend_from_slice(&[0, 0]);
                dst.extend_from_slice(&b[2..]);
            }
            QuantFormat::Q6K => {
                dst.extend_from_slice(b);
                dst.extend_from_slice(&[0, 0]);
            }
            _ => dst.extend_from_slice(b),
        }
    }
}

/// Elements one GEMV lane handles at a time (the shader's `FMT_CHUNK`): row lengths must be a
/// multiple of it.
pub const fn chunk_elems(f: QuantFormat) -> usize {
    match f {
        QuantFormat::F32 => 4,
        QuantFormat::F16 | QuantFormat::BF16 => 8,
        _ => 32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repack_moves_d_into_its_own_word() {
        let mut src = vec![0u8; 36];
        for (i, b) in src.iter_mut().enumerate() {
            *b = i as u8;
        }
        let mut dst = Vec::new();
        repack(QuantFormat::Q4_0, &src, &mut dst);
        assert_eq!(dst.len(), 40);
        assert_eq!(&dst[..4], &[0, 1, 0, 0]);
        assert_eq!(&dst[4..20], &src[2..18]);
        assert_eq!(&dst[20..24], &[18, 19, 0, 0]);
        for f in [QuantFormat::Q8_0, QuantFormat::Q6K, QuantFormat::Q4K] {
            let src = vec![7u8; f.block_bytes() * 3];
            repack(f, &src, &mut dst);
            assert_eq!(dst.len(), gpu_block_bytes(f) * 3, "{f}");
            assert_eq!(dst.len() % 4, 0);
        }
    }
}
