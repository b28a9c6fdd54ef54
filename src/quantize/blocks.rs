//! f32 -> ggml blocks, written from the format definitions (spec §5).
//!
//! - Q4_0: `d = max / -8` where `max` is the signed value of largest magnitude, so that value
//!   maps exactly to q = 0; `q = clamp(round(x / d) + 8, 0, 15)`.
//! - Q8_0: `d = amax / 127`, `q = round(x / d)`. Values already of the form `q * d` (f16 `d`,
//!   some `|q| = 127`) come back unchanged.
//! - Q4_K / Q5_K: each sub-block of 32 gets an affine fit `x ≈ s * q - m` (q in 0..=15 or
//!   0..=31, m >= 0): the min/max fit, then a few candidate step sizes around it, each followed
//!   by the least-squares (s, m) for its q assignment; the lowest squared error wins. The
//!   super-block stores `d = max(s) / 63`, `dmin = max(m) / 63` (f16) and six-bit
//!   `round(s / d)`, `round(m / dmin)`; q is then chosen against the quantized scales.
//! - Q6_K: each sub-block of 16 gets a symmetric fit `x ≈ s * q` (q in -32..=31) by the same
//!   candidate search; the super-block stores `d = max|s| / 127` (f16) and signed 8-bit
//!   `round(s / d)`.
//!
//! Not bit-identical to llama.cpp's quantizer (it weights the error by magnitude); every block
//! is valid and dequantizes, in llama.cpp and here, by the same formulas.

use half::{bf16, f16};

use crate::format::QuantFormat;
use crate::format::quant::{Block, BlockQ4_0, BlockQ4K, BlockQ5K, BlockQ6K, BlockQ8_0};

/// Candidate step sizes tried on each side of the min/max fit (K-quants).
const SEARCH_STEPS: i32 = 7;
/// Relative spacing of the candidate step sizes, in units of one quantization level.
const SEARCH_DELTA: f32 = 0.1;

/// Quantizes `x` (a whole number of blocks of `format`) and appends the bytes to `out`.
pub fn quantize(format: QuantFormat, x: &[f32], out: &mut Vec<u8>) -> Result<(), String> {
    let n = format.block_elems();
    if !x.len().is_multiple_of(n) {
        return Err(format!(
            "{} values is not a whole number of {format} blocks of {n}",
            x.len()
        ));
    }
    if let Some(i) = x.iter().position(|v| !v.is_finite()) {
        return Err(format!("element {i} is {} (not finite)", x[i]));
    }
    let start = out.len();
    out.resize(start + x.len() / n * format.block_bytes(), 0);
    let dst = &mut out[start..];
    match format {
        QuantFormat::F32 => {
            for (c, v) in dst.chunks_exact_mut(4).zip(x) {
                c.copy_from_slice(&v.to_le_bytes());
            }
        }
        QuantFormat::F16 => {
            for (i, (c, &v)) in dst.chunks_exact_mut(2).zip(x).enumerate() {
                let h = f16::from_f32(v);
                if h.is_infinite() {
                    return Err(format!("element {i} = {v} overflows f16"));
                }
                c.copy_from_slice(&h.to_le_bytes());
            }
        }
        QuantFormat::BF16 => {
            for (c, &v) in dst.chunks_exact_mut(2).zip(x) {
                c.copy_from_slice(&bf16::from_f32(v).to_le_bytes());
            }
        }
        QuantFormat::Q4_0 => quant_blocks(x, dst, quantize_q4_0)?,
        QuantFormat::Q8_0 => quant_blocks(x, dst, quantize_q8_0)?,
        QuantFormat::Q4K => quant_blocks(x, dst, quantize_q4_k)?,
        QuantFormat::Q5K => quant_blocks(x, dst, quantize_q5_k)?,
        QuantFormat::Q6K => quant_blocks(x, dst, quantize_q6_k)?,
    }
    Ok(())
}

/// `dequantize(quantize(x))`, for tests and error measurements.
pub fn round_trip(format: QuantFormat, x: &[f32]) -> Result<Vec<f32>, String> {
    let mut bytes = Vec::new();
    quantize(format, x, &mut bytes)?;
    let mut y = Vec::with_capacity(x.len());
    format.dequantize(&bytes, &mut y)?;
    Ok(y)
}

fn quant_blocks<B: Block>(
    x: &[f32],
    dst: &mut [u8],
    f: fn(&[f32]) -> Result<B, String>,
) -> Result<(), String> {
    let blocks: &mut [B] = bytemuck::try_cast_slice_mut(dst).map_err(|e| format!("{e:?}"))?;
    for (i, (b, x)) in blocks.iter_mut().zip(x.chunks_exact(B::ELEMS)).enumerate() {
        *b = f(x).map_err(|e| format!("{} block {i}: {e}", B::FORMAT))?;
    }
    Ok(())
}

/// `d` rounded to f16: (value, bytes). Errors when it does not fit.
fn f16_scale(d: f32) -> Result<(f32, [u8; 2]), String> {
    let h = f16::from_f32(d);
    if !h.is_finite() {
        return Err(format!("scale {d} does not fit in f16"));
    }
    Ok((h.to_f32(), h.to_le_bytes()))
}

fn inverse(d: f32) -> f32 {
    if d != 0.0 { 1.0 / d } else { 0.0 }
}

/// The value of largest magnitude, with its sign (the first one on ties).
fn signed_max(x: &[f32]) -> f32 {
    x.iter()
        .fold(0.0f32, |m, &v| if v.abs() > m.abs() { v } else { m })
}

fn quantize_q4_0(x: &[f32]) -> Result<BlockQ4_0, String> {
    let (d, db) = f16_scale(signed_max(x) / -8.0)?;
    let id = inverse(d);
    let q = |v: f32| (v * id + 8.5).floor().clamp(0.0, 15.0) as u8;
    let mut b = BlockQ4_0 { d: db, qs: [0; 16] };
    for (j, qs) in b.qs.iter_mut().enumerate() {
        *qs = q(x[j]) | (q(x[j + 16]) << 4);
    }
    Ok(b)
}

fn quantize_q8_0(x: &[f32]) -> Result<BlockQ8_0, String> {
    let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let (d, db) = f16_scale(amax / 127.0)?;
    let mut b = BlockQ8_0 { d: db, qs: [0; 32] };
    if d != 0.0 {
        for (q, &v) in b.qs.iter_mut().zip(x) {
            *q = (v / d).round().clamp(-127.0, 127.0) as i8;
        }
    }
    Ok(b)
}

/// Sums for the least-squares fit of `v ≈ s * q + b`.
#[derive(Default)]
struct Sums {
    n: f32,
    q: f32,
    qq: f32,
    v: f32,
    qv: f32,
    vv: f32,
}

impl Sums {
    fn add(&mut self, q: f32, v: f32) {
        self.n += 1.0;
        self.q += q;
        self.qq += q * q;
        self.v += v;
        self.qv += q * v;
        self.vv += v * v;
    }
    /// Squared error of `s * q + b` against the summed values.
    fn err(&self, s: f32, b: f32) -> f32 {
        s * s * self.qq + 2.0 * s * b * self.q + self.n * b * b
            - 2.0 * s * self.qv
            - 2.0 * b * self.v
            + self.vv
    }
}

/// Affine fit `x ≈ s * q - m`, q in `0..=nmax`, `s >= 0`, `m >= 0`. Returns `(s, m)`.
fn fit_affine(x: &[f32], nmax: f32) -> (f32, f32) {
    let lo = x.iter().fold(0.0f32, |m, &v| m.min(v));
    let hi = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    if hi <= lo {
        return (0.0, -lo);
    }
    let assign = |iscale: f32| {
        let mut s = Sums::default();
        for &v in x {
            s.add(((v - lo) * iscale).round().clamp(0.0, nmax), v);
        }
        s
    };
    let s0 = (hi - lo) / nmax;
    let mut best = (s0, lo, assign(1.0 / s0).err(s0, lo));
    for step in -SEARCH_STEPS..=SEARCH_STEPS {
        let sums = assign((nmax + SEARCH_DELTA * step as f32) / (hi - lo));
        let det = sums.n * sums.qq - sums.q * sums.q;
        if det <= 0.0 {
            continue;
        }
        let mut s = (sums.n * sums.qv - sums.q * sums.v) / det;
        let mut b = (sums.v - s * sums.q) / sums.n;
        if b > 0.0 {
            b = 0.0;
            s = sums.qv / sums.qq;
        }
        if s <= 0.0 {
            continue;
        }
        let err = sums.err(s, b);
        if err < best.2 {
            best = (s, b, err);
        }
    }
    (best.0, -best.1)
}

/// Symmetric fit `x ≈ s * q`, q in `-32..=31`. Returns `s` (negative when the value of largest
/// magnitude is positive, so it lands on q = -32).
fn fit_symmetric(x: &[f32]) -> f32 {
    let max = signed_max(x);
    if max == 0.0 {
        return 0.0;
    }
    let mut best = (0.0f32, f32::INFINITY);
    for step in -SEARCH_STEPS..=SEARCH_STEPS {
        let iscale = -(32.0 + SEARCH_DELTA * step as f32) / max;
        let (mut qv, mut qq, mut vv) = (0.0f32, 0.0f32, 0.0f32);
        for &v in x {
            let q = (v * iscale).round().clamp(-32.0, 31.0);
            qv += q * v;
            qq += q * q;
            vv += v * v;
        }
        if qq > 0.0 {
            let err = vv - qv * qv / qq;
            if err < best.1 {
                best = (qv / qq, err);
            }
        }
    }
    best.0
}

/// Six-bit scales and mins of a Q4_K/Q5_K block, packed as [`crate::format::quant::scale_min_k4`]
/// unpacks them.
fn pack_scale_min_k4(sc: &[u8; 8], m: &[u8; 8]) -> [u8; 12] {
    let mut q = [0u8; 12];
    for j in 0..4 {
        q[j] = sc[j] | ((sc[j + 4] >> 4) << 6);
        q[j + 4] = m[j] | ((m[j + 4] >> 4) << 6);
        q[j + 8] = (sc[j + 4] & 0xF) | ((m[j + 4] & 0xF) << 4);
    }
    q
}

/// The shared part of Q4_K and Q5_K: f16 `d`/`dmin`, packed scales, and q (0..=nmax) per
/// weight.
struct KAffine {
    d: [u8; 2],
    dmin: [u8; 2],
    scales: [u8; 12],
    q: [u8; 256],
}

fn quantize_k_affine(x: &[f32], nmax: f32) -> Result<KAffine, String> {
    let mut s = [0.0f32; 8];
    let mut m = [0.0f32; 8];
    for (j, sub) in x.chunks_exact(32).enumerate() {
        (s[j], m[j]) = fit_affine(sub, nmax);
    }
    let max_s = s.iter().fold(0.0f32, |a, &v| a.max(v));
    let max_m = m.iter().fold(0.0f32, |a, &v| a.max(v));
    let (d, db) = f16_scale(max_s / 63.0)?;
    let (dmin, dminb) = f16_scale(max_m / 63.0)?;
    let six_bit = |v: f32, unit: f32| (v * inverse(unit)).round().clamp(0.0, 63.0) as u8;
    let sc: [u8; 8] = std::array::from_fn(|j| six_bit(s[j], d));
    let mq: [u8; 8] = std::array::from_fn(|j| six_bit(m[j], dmin));
    let mut q = [0u8; 256];
    for (j, (sub, qs)) in x.chunks_exact(32).zip(q.chunks_exact_mut(32)).enumerate() {
        let ds = d * f32::from(sc[j]);
        let dm = dmin * f32::from(mq[j]);
        let ids = inverse(ds);
        for (q, &v) in qs.iter_mut().zip(sub) {
            *q = ((v + dm) * ids).round().clamp(0.0, nmax) as u8;
        }
    }
    Ok(KAffine {
        d: db,
        dmin: dminb,
        scales: pack_scale_min_k4(&sc, &mq),
        q,
    })
}

fn quantize_q4_k(x: &[f32]) -> Result<BlockQ4K, String> {
    let k = quantize_k_affine(x, 15.0)?;
    let mut b = BlockQ4K {
        d: k.d,
        dmin: k.dmin,
        scales: k.scales,
        qs: [0; 128],
    };
    for g in 0..4 {
        for l in 0..32 {
            b.qs[32 * g + l] = k.q[64 * g + l] | (k.q[64 * g + 32 + l] << 4);
        }
    }
    Ok(b)
}

fn quantize_q5_k(x: &[f32]) -> Result<BlockQ5K, String> {
    let k = quantize_k_affine(x, 31.0)?;
    let mut b = BlockQ5K {
        d: k.d,
        dmin: k.dmin,
        scales: k.scales,
        qh: [0; 32],
        qs: [0; 128],
    };
    for g in 0..4 {
        for l in 0..32 {
            let (lo, hi) = (k.q[64 * g + l], k.q[64 * g + 32 + l]);
            b.qs[32 * g + l] = (lo & 0xF) | ((hi & 0xF) << 4);
            b.qh[l] |= ((lo >> 4) << (2 * g)) | ((hi >> 4) << (2 * g + 1));
        }
    }
    Ok(b)
}

fn quantize_q6_k(x: &[f32]) -> Result<BlockQ6K, String> {
    let s: [f32; 16] = std::array::from_fn(|j| fit_symmetric(&x[16 * j..16 * j + 16]));
    let max_s = s.iter().fold(0.0f32, |a, &v| a.max(v.abs()));
    let (d, db) = f16_scale(max_s / 127.0)?;
    let id = inverse(d);
    let sc: [i8; 16] = std::array::from_fn(|j| (s[j] * id).round().clamp(-128.0, 127.0) as i8);
    let mut l6 = [0u8; 256];
    for (j, (sub, out)) in x.chunks_exact(16).zip(l6.chunks_exact_mut(16)).enumerate() {
        let ids = inverse(d * f32::from(sc[j]));
        for (o, &v) in out.iter_mut().zip(sub) {
            *o = ((v * ids).round().clamp(-32.0, 31.0) + 32.0) as u8;
        }
    }
    let mut b = BlockQ6K {
        ql: [0; 128],
        qh: [0; 64],
        scales: sc,
        d: db,
    };
    for half in 0..2 {
        let l6 = &l6[128 * half..128 * half + 128];
        for l in 0..32 {
            b.ql[64 * half + l] = (l6[l] & 0xF) | ((l6[l + 64] & 0xF) << 4);
            b.ql[64 * half + l + 32] = (l6[l + 32] & 0xF) | ((l6[l + 96] & 0xF) << 4);
            b.qh[32 * half + l] = (l6[l] >> 4)
                | ((l6[l + 32] >> 4) << 2)
                | ((l6[l + 64] >> 4) << 4)
                | ((l6[l + 96] >> 4) << 6);
        }
    }
    Ok(b)
}

/// Random but valid stored bytes for `n` weights of `format` (`n` a multiple of the block size),
/// with weights of order 0.01..1: random quants under small scale fields for the block formats,
/// uniform values in ±0.05 for the float ones. For kernel tests and benchmarks, which compare
/// the GPU against a CPU dequantization of the same bytes. `next` supplies random u32s.
pub fn random_blocks(format: QuantFormat, n: usize, mut next: impl FnMut() -> u32) -> Vec<u8> {
    let mut unit = || next() as f32 / 2_147_483_648.0 - 1.0;
    let f16_at = |b: &mut [u8], at: usize, v: f32| {
        b[at..at + 2].copy_from_slice(&f16::from_f32(v).to_le_bytes())
    };
    match format {
        QuantFormat::F32 => (0..n).flat_map(|_| (unit() * 0.05).to_le_bytes()).collect(),
        QuantFormat::F16 => (0..n)
            .flat_map(|_| f16::from_f32(unit() * 0.05).to_le_bytes())
            .collect(),
        QuantFormat::BF16 => (0..n)
            .flat_map(|_| bf16::from_f32(unit() * 0.05).to_le_bytes())
            .collect(),
        _ => {
            let bb = format.block_bytes();
            let mut out: Vec<u8> = (0..n / format.block_elems() * bb)
                .map(|_| (unit().to_bits() >> 7) as u8)
                .collect();
            for b in out.chunks_exact_mut(bb) {
                let (d, m) = (unit() * 0.02, unit() * 0.02);
                match format {
                    QuantFormat::Q4_0 | QuantFormat::Q8_0 => f16_at(b, 0, d),
                    // 6-bit scales and mins reach 63; Q6_K's int8 scales times 6-bit quants.
                    QuantFormat::Q4K | QuantFormat::Q5K => {
                        f16_at(b, 0, d / 32.0);
                        f16_at(b, 2, m / 32.0);
                    }
                    _ => f16_at(b, 208, d / 100.0),
                }
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::quant::scale_min_k4;

    #[test]
    fn scale_packing_round_trips() {
        let sc: [u8; 8] = [0, 1, 17, 63, 32, 48, 5, 62];
        let m: [u8; 8] = [63, 2, 33, 0, 47, 16, 31, 1];
        let q = pack_scale_min_k4(&sc, &m);
        for j in 0..8 {
            assert_eq!(scale_min_k4(j, &q), (sc[j], m[j]), "sub-block {j}");
        }
    }

    #[test]
    fn zeros_and_constants() {
        for f in QuantFormat::ALL {
            let n = f.block_elems().max(256);
            assert!(
                round_trip(f, &vec![0.0; n])
                    .unwrap()
                    .iter()
                    .all(|&v| v == 0.0),
                "{f}"
            );
        }
        let y = round_trip(QuantFormat::Q4K, &[-0.5; 256]).unwrap();
        assert!(y.iter().all(|&v| (v + 0.5).abs() < 1e-2), "{:?}", &y[..4]);
    }

    #[test]
    fn non_finite_is_an_error() {
        let mut x = vec![0.5f32; 32];
        x[3] = f32::NAN;
        let msg = quantize(QuantFormat::Q8_0, &x, &mut Vec::new()).unwrap_err();
        assert!(msg.contains("element 3"), "{msg}");
        let msg = quantize(QuantFormat::Q4_0, &[1e9; 32], &mut Vec::new()).unwrap_err();
        assert!(msg.contains("f16"), "{msg}");
    }
}
