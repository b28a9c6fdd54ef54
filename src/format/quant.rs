//! Weight storage formats. One enum; the GPU GEMV/GEMM/embedding kernels select a block decoder
//! (`shaders/formats/<name>.wgsl`) from it, so a new format is a new decoder, not a new kernel.
//!
//! The ggml blocks are `#[repr(C)]` structs of byte arrays (alignment 1, sizes checked at
//! compile time) cast straight from the file's bytes; their CPU dequantization follows ggml's
//! definitions (spec §5) and matches gguf-py's bit for bit (`tests/quant.rs`). Quantizers are
//! in [`crate::quantize::blocks`].

/// How a tensor's elements are stored (in the file and, after upload, on the device).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum QuantFormat {
    F32,
    F16,
    BF16,
    Q4_0,
    Q8_0,
    Q4K,
    Q5K,
    Q6K,
}

impl QuantFormat {
    /// Elements per block (1 for plain floats).
    pub const fn block_elems(self) -> usize {
        match self {
            QuantFormat::F32 | QuantFormat::F16 | QuantFormat::BF16 => 1,
            QuantFormat::Q4_0 | QuantFormat::Q8_0 => 32,
            QuantFormat::Q4K | QuantFormat::Q5K | QuantFormat::Q6K => 256,
        }
    }
    /// Bytes per block.
    pub const fn block_bytes(self) -> usize {
        match self {
            QuantFormat::F32 => 4,
            QuantFormat::F16 | QuantFormat::BF16 => 2,
            QuantFormat::Q4_0 => 18,
            QuantFormat::Q8_0 => 34,
            QuantFormat::Q4K => 144,
            QuantFormat::Q5K => 176,
            QuantFormat::Q6K => 210,
        }
    }
    /// Bytes of a row of `n` elements, or `None` when `n` is not a whole number of blocks.
    pub fn row_bytes(self, n: usize) -> Option<usize> {
        if !n.is_multiple_of(self.block_elems()) {
            return None;
        }
        (n / self.block_elems()).checked_mul(self.block_bytes())
    }
    /// ggml tensor type id (GGUF tensor info), per ggml's `ggml_type`.
    pub fn from_ggml_type(id: u32) -> Option<QuantFormat> {
        Some(match id {
            0 => QuantFormat::F32,
            1 => QuantFormat::F16,
            2 => QuantFormat::Q4_0,
            8 => QuantFormat::Q8_0,
            12 => QuantFormat::Q4K,
            13 => QuantFormat::Q5K,
            14 => QuantFormat::Q6K,
            30 => QuantFormat::BF16,
            _ => return None,
        })
    }
    pub fn ggml_type(self) -> u32 {
        match self {
            QuantFormat::F32 => 0,
            QuantFormat::F16 => 1,
            QuantFormat::Q4_0 => 2,
            QuantFormat::Q8_0 => 8,
            QuantFormat::Q4K => 12,
            QuantFormat::Q5K => 13,
            QuantFormat::Q6K => 14,
            QuantFormat::BF16 => 30,
        }
    }
    /// Name as ggml prints it (`f32`, `q4_K`...).
    pub fn name(self) -> &'static str {
        match self {
            QuantFormat::F32 => "f32",
            QuantFormat::F16 => "f16",
            QuantFormat::BF16 => "bf16",
            QuantFormat::Q4_0 => "q4_0",
            QuantFormat::Q8_0 => "q8_0",
            QuantFormat::Q4K => "q4_K",
            QuantFormat::Q5K => "q5_K",
            QuantFormat::Q6K => "q6_K",
        }
    }
    /// Whether the GPU kernels of this build can run this format.
    pub fn gpu_supported(self) -> bool {
        matches!(
            self,
            QuantFormat::F32 | QuantFormat::F16 | QuantFormat::BF16
        )
    }

    /// Whether this is a block-quantized format (not a plain float type).
    pub const fn is_quantized(self) -> bool {
        !matches!(
            self,
            QuantFormat::F32 | QuantFormat::F16 | QuantFormat::BF16
        )
    }

    /// Every format, in enum order.
    pub const ALL: [QuantFormat; 8] = [
        QuantFormat::F32,
        QuantFormat::F16,
        QuantFormat::BF16,
        QuantFormat::Q4_0,
        QuantFormat::Q8_0,
        QuantFormat::Q4K,
        QuantFormat::Q5K,
        QuantFormat::Q6K,
    ];

    /// Dequantize `bytes` (a whole number of rows/blocks) to f32 on the CPU, appending to
    /// `out`. Used by the CPU reference, the quantizer and tests; never on the inference path.
    pub fn dequantize(self, bytes: &[u8], out: &mut Vec<f32>) -> Result<(), String> {
        let bb = self.block_bytes();
        if !bytes.len().is_multiple_of(bb) {
            return Err(format!(
                "{} bytes is not a whole number of {} blocks",
                bytes.len(),
                self.name()
            ));
        }
        let start = out.len();
        out.resize(start + bytes.len() / bb * self.block_elems(), 0.0);
        let y = out.get_mut(start..).unwrap_or_default();
        let word = |c: &[u8]| <[u8; 2]>::try_from(c).unwrap_or_default();
        match self {
            QuantFormat::F32 => {
                for (v, c) in y.iter_mut().zip(bytes.chunks_exact(4)) {
                    *v = f32::from_le_bytes(c.try_into().unwrap_or_default());
                }
            }
            QuantFormat::F16 => {
                for (v, c) in y.iter_mut().zip(bytes.chunks_exact(2)) {
                    *v = half::f16::from_le_bytes(word(c)).to_f32();
                }
            }
            QuantFormat::BF16 => {
                for (v, c) in y.iter_mut().zip(bytes.chunks_exact(2)) {
                    *v = half::bf16::from_le_bytes(word(c)).to_f32();
                }
            }
            QuantFormat::Q4_0 => dequant_blocks::<BlockQ4_0>(bytes, y)?,
            QuantFormat::Q8_0 => dequant_blocks::<BlockQ8_0>(bytes, y)?,
            QuantFormat::Q4K => dequant_blocks::<BlockQ4K>(bytes, y)?,
            QuantFormat::Q5K => dequant_blocks::<BlockQ5K>(bytes, y)?,
            QuantFormat::Q6K => dequant_blocks::<BlockQ6K>(bytes, y)?,
        }
        Ok(())
    }

    /// Quantize `x` (a whole number of blocks) into this format, appending the bytes to `out`.
    /// Errors on a non-finite value or a block whose scale does not fit in f16. See
    /// [`crate::quantize::blocks`] for how scales are chosen.
    pub fn quantize(self, x: &[f32], out: &mut Vec<u8>) -> Result<(), String> {
        crate::quantize::blocks::quantize(self, x, out)
    }
}

/// Splits `bytes` into `B` blocks and decodes each into its `B::ELEMS` outputs. The caller has
/// checked that `bytes` is a whole number of blocks and `y` has room for them.
fn dequant_blocks<B: Block>(bytes: &[u8], y: &mut [f32]) -> Result<(), String> {
    // Blocks are byte arrays (alignment 1), so only a partial block could fail here.
    let blocks: &[B] = bytemuck::try_cast_slice(bytes).map_err(|e| format!("{e}"))?;
    for (b, out) in blocks.iter().zip(y.chunks_exact_mut(B::ELEMS)) {
        b.dequantize(out);
    }
    Ok(())
}

/// A ggml block: a fixed number of elements stored in a fixed, packed byte layout.
///
/// The block decoders below index fixed-size arrays with indices that depend only on the block
/// layout, never on the data (`y` is always one block's `ELEMS` outputs), so they cannot panic
/// on any file; tests/quant.rs decodes every format and tests/fuzz_regressions.rs (`gguf`)
/// decodes arbitrary bytes. Hence the `allow(clippy::indexing_slicing)` on them.
pub trait Block: bytemuck::Pod {
    const FORMAT: QuantFormat;
    const ELEMS: usize;
    /// Writes the block's `ELEMS` values into `y` (`y.len() == ELEMS`).
    fn dequantize(&self, y: &mut [f32]);
}

fn f16_le(b: [u8; 2]) -> f32 {
    half::f16::from_le_bytes(b).to_f32()
}

/// Q4_0: 32 weights; `x = d * (q - 8)`. Low nibbles of `qs` hold elements 0..16, high
/// nibbles 16..32.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ4_0 {
    /// f16 scale, little-endian.
    pub d: [u8; 2],
    pub qs: [u8; 16],
}

/// Q8_0: 32 weights; `x = d * q`.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ8_0 {
    pub d: [u8; 2],
    pub qs: [i8; 32],
}

/// Q4_K: 256 weights in 8 sub-blocks of 32; `x = d * sc[s] * q - dmin * m[s]`, q in 0..16,
/// six-bit `sc` / `m` packed in `scales` (see [`scale_min_k4`]). Each 32 bytes of `qs` hold
/// 64 weights: low nibbles the first 32 (sub-block 2j), high nibbles the next 32 (2j + 1).
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ4K {
    pub d: [u8; 2],
    pub dmin: [u8; 2],
    pub scales: [u8; 12],
    pub qs: [u8; 128],
}

/// Q5_K: as Q4_K with a fifth bit per weight: for the j-th group of 64, bit 2j of `qh[l]`
/// belongs to the low-nibble weight l, bit 2j + 1 to the high-nibble weight 32 + l; q in 0..32.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ5K {
    pub d: [u8; 2],
    pub dmin: [u8; 2],
    pub scales: [u8; 12],
    pub qh: [u8; 32],
    pub qs: [u8; 128],
}

/// Q6_K: 256 weights in 16 sub-blocks of 16; `x = d * scales[s] * (q - 32)`, q in 0..64.
/// For each half of 128 weights (`ql` 64 bytes, `qh` 32 bytes): weight l (l < 32) has its low
/// four bits in `ql[l] & 15` and its top two bits in `qh[l] & 3`; weight 32 + l in
/// `ql[32 + l] & 15` and `(qh[l] >> 2) & 3`; 64 + l in `ql[l] >> 4` and `(qh[l] >> 4) & 3`;
/// 96 + l in `ql[32 + l] >> 4` and `qh[l] >> 6`.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ6K {
    pub ql: [u8; 128],
    pub qh: [u8; 64],
    pub scales: [i8; 16],
    pub d: [u8; 2],
}

const _: () = assert!(size_of::<BlockQ4_0>() == QuantFormat::Q4_0.block_bytes());
const _: () = assert!(size_of::<BlockQ8_0>() == QuantFormat::Q8_0.block_bytes());
const _: () = assert!(size_of::<BlockQ4K>() == QuantFormat::Q4K.block_bytes());
const _: () = assert!(size_of::<BlockQ5K>() == QuantFormat::Q5K.block_bytes());
const _: () = assert!(size_of::<BlockQ6K>() == QuantFormat::Q6K.block_bytes());

/// Sub-block `j` (0..8) scale and min of a Q4_K/Q5_K `scales` array. Bytes 0..4 hold sc0..3 in
/// their low six bits, bytes 4..8 m0..3; bytes 8..12 hold the low four bits of sc4..7 (low
/// nibble) and m4..7 (high nibble), whose top two bits sit in bits 6..8 of bytes 0..4 (sc) and
/// 4..8 (m).
#[allow(clippy::indexing_slicing)] // j < 8: see `Block`
pub fn scale_min_k4(j: usize, q: &[u8; 12]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

#[allow(clippy::indexing_slicing)] // layout-only indices: see `Block`
impl Block for BlockQ4_0 {
    const FORMAT: QuantFormat = QuantFormat::Q4_0;
    const ELEMS: usize = 32;
    fn dequantize(&self, y: &mut [f32]) {
        let d = f16_le(self.d);
        for (j, &q) in self.qs.iter().enumerate() {
            y[j] = (i32::from(q & 0xF) - 8) as f32 * d;
            y[j + 16] = (i32::from(q >> 4) - 8) as f32 * d;
        }
    }
}

impl Block for BlockQ8_0 {
    const FORMAT: QuantFormat = QuantFormat::Q8_0;
    const ELEMS: usize = 32;
    fn dequantize(&self, y: &mut [f32]) {
        let d = f16_le(self.d);
        for (v, &q) in y.iter_mut().zip(&self.qs) {
            *v = f32::from(q) * d;
        }
    }
}

#[allow(clippy::indexing_slicing)] // layout-only indices: see `Block`
impl Block for BlockQ4K {
    const FORMAT: QuantFormat = QuantFormat::Q4K;
    const ELEMS: usize = 256;
    fn dequantize(&self, y: &mut [f32]) {
        let (d, dmin) = (f16_le(self.d), f16_le(self.dmin));
        for (g, (qs, y)) in self
            .qs
            .chunks_exact(32)
            .zip(y.chunks_exact_mut(64))
            .enumerate()
        {
            let (sc1, m1) = scale_min_k4(2 * g, &self.scales);
            let (sc2, m2) = scale_min_k4(2 * g + 1, &self.scales);
            let (d1, m1) = (d * f32::from(sc1), dmin * f32::from(m1));
            let (d2, m2) = (d * f32::from(sc2), dmin * f32::from(m2));
            for (l, &q) in qs.iter().enumerate() {
                y[l] = d1 * f32::from(q & 0xF) - m1;
                y[32 + l] = d2 * f32::from(q >> 4) - m2;
            }
        }
    }
}

#[allow(clippy::indexing_slicing)] // layout-only indices: see `Block`
impl Block for BlockQ5K {
    const FORMAT: QuantFormat = QuantFormat::Q5K;
    const ELEMS: usize = 256;
    fn dequantize(&self, y: &mut [f32]) {
        let (d, dmin) = (f16_le(self.d), f16_le(self.dmin));
        for (g, (qs, y)) in self
            .qs
            .chunks_exact(32)
            .zip(y.chunks_exact_mut(64))
            .enumerate()
        {
            let (sc1, m1) = scale_min_k4(2 * g, &self.scales);
            let (sc2, m2) = scale_min_k4(2 * g + 1, &self.scales);
            let (d1, m1) = (d * f32::from(sc1), dmin * f32::from(m1));
            let (d2, m2) = (d * f32::from(sc2), dmin * f32::from(m2));
            for (l, (&q, &h)) in qs.iter().zip(&self.qh).enumerate() {
                let lo = (q & 0xF) | (((h >> (2 * g)) & 1) << 4);
                let hi = (q >> 4) | (((h >> (2 * g + 1)) & 1) << 4);
                y[l] = d1 * f32::from(lo) - m1;
                y[32 + l] = d2 * f32::from(hi) - m2;
            }
        }
    }
}

#[allow(clippy::indexing_slicing)] // layout-only indices: see `Block`
impl Block for BlockQ6K {
    const FORMAT: QuantFormat = QuantFormat::Q6K;
    const ELEMS: usize = 256;
    fn dequantize(&self, y: &mut [f32]) {
        let d = f16_le(self.d);
        for half in 0..2 {
            let ql = &self.ql[64 * half..64 * half + 64];
            let qh = &self.qh[32 * half..32 * half + 32];
            let sc = &self.scales[8 * half..8 * half + 8];
            let y = &mut y[128 * half..128 * half + 128];
            for l in 0..32 {
                let is = l / 16;
                let q = [
                    (ql[l] & 0xF) | ((qh[l] & 3) << 4),
                    (ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4),
                    (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4),
                    (ql[l + 32] >> 4) | ((qh[l] >> 6) << 4),
                ];
                for (k, &q) in q.iter().enumerate() {
                    let s = d * f32::from(sc[is + 2 * k]);
                    y[l + 32 * k] = s * f32::from(q as i8 - 32);
                }
            }
        }
    }
}

impl std::fmt::Display for QuantFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
