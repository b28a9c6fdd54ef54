//! ggml block formats on the CPU: dequantization against gguf-py's, and the quantizers'
//! round-trip error on Gaussian data.
//!
//! `tests/fixtures/quant_blocks.json` holds four blocks per format (two from llama.cpp-made
//! files where the format occurs in `shared-q`, the others random bytes with f16 scales in
//! ±0.05) and gguf-py 0.19.0's dequantization of each. It was produced by:
//!
//! ```python
//! import json, numpy as np, gguf
//! from gguf import GGMLQuantizationType as T
//! from gguf.quants import dequantize
//! rng = np.random.default_rng(7)
//! sq = 'shared/fixtures/shared-q/lfm2-shared-q-'
//! real = {}
//! for f in ['q4_0', 'q8_0', 'q4_k_m']:
//!     for t in gguf.GGUFReader(sq + f + '.gguf').tensors:
//!         real.setdefault(t.tensor_type, np.asarray(t.data).reshape(-1).view(np.uint8))
//! out = []
//! for ty, name, d_off in [(T.Q4_0, 'q4_0', [0]), (T.Q8_0, 'q8_0', [0]), (T.Q4_K, 'q4_K', [0, 2]),
//!                         (T.Q5_K, 'q5_K', [0, 2]), (T.Q6_K, 'q6_K', [208])]:
//!     bs = gguf.GGML_QUANT_SIZES[ty][1]
//!     blocks = []
//!     if ty in real:
//!         blocks += [real[ty][i * bs:(i + 1) * bs].copy() for i in (0, 5)]
//!     while len(blocks) < 4:
//!         b = rng.integers(0, 256, bs, dtype=np.uint8)
//!         for o in d_off:
//!             b[o:o + 2] = np.frombuffer(np.float16(rng.uniform(-0.05, 0.05)).tobytes(), np.uint8)
//!         blocks.append(b)
//!     for b in blocks:
//!         y = dequantize(b.reshape(1, bs), ty).reshape(-1).astype(np.float32)
//!         out.append({'format': name, 'bytes': b.tobytes().hex(),
//!                     'values': [float(v) for v in y]})
//! json.dump({'generator': 'gguf-py 0.19.0 (gguf.quants.dequantize)', 'blocks': out},
//!           open('tests/fixtures/quant_blocks.json', 'w'))
//! ```

use anyhow::{Context, Result, bail, ensure};
use lfm::QuantFormat;
use lfm::quantize::blocks::round_trip;

const QUANTS: [QuantFormat; 5] = [
    QuantFormat::Q4_0,
    QuantFormat::Q8_0,
    QuantFormat::Q4K,
    QuantFormat::Q5K,
    QuantFormat::Q6K,
];

/// Relative RMS error budget of quantize -> dequantize on N(0, 1) data:
/// `sqrt(mean((y - x)^2)) / sqrt(mean(x^2))`. Measured values are in the comments.
fn budget(f: QuantFormat) -> f32 {
    match f {
        QuantFormat::Q8_0 => 0.007, // measured 0.0053
        QuantFormat::Q6K => 0.022,  // measured 0.0175
        QuantFormat::Q5K => 0.045,  // measured 0.0361
        QuantFormat::Q4K => 0.085,  // measured 0.0713
        QuantFormat::Q4_0 => 0.100, // measured 0.0855
        _ => 0.0,
    }
}

/// N(0, 1) samples from a seeded SplitMix64 + Box-Muller.
fn gaussian(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    let mut next = || {
        s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    };
    (0..n)
        .map(|_| {
            let (u1, u2) = (1.0 - next(), next());
            ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
        })
        .collect()
}

fn rel_rms(x: &[f32], y: &[f32]) -> f32 {
    let err: f64 = x.iter().zip(y).map(|(a, b)| f64::from(a - b).powi(2)).sum();
    let sig: f64 = x.iter().map(|a| f64::from(*a).powi(2)).sum();
    (err / sig).sqrt() as f32
}

fn hex(s: &str) -> Result<Vec<u8>> {
    ensure!(s.len().is_multiple_of(2), "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| Ok(u8::from_str_radix(&s[i..i + 2], 16)?))
        .collect()
}

#[test]
fn dequantize_matches_gguf_py() -> Result<()> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/quant_blocks.json"
    );
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path)?)?;
    let blocks = json["blocks"].as_array().context("no `blocks`")?;
    let mut seen = std::collections::BTreeMap::new();
    for (i, b) in blocks.iter().enumerate() {
        let name = b["format"].as_str().context("format")?;
        let f = *QUANTS
            .iter()
            .find(|f| f.name() == name)
            .with_context(|| format!("unknown format {name}"))?;
        let bytes = hex(b["bytes"].as_str().context("bytes")?)?;
        let want: Vec<f32> = b["values"]
            .as_array()
            .context("values")?
            .iter()
            .map(|v| v.as_f64().map(|v| v as f32).context("value"))
            .collect::<Result<_>>()?;
        ensure!(
            bytes.len() == f.block_bytes(),
            "block {i}: {} bytes",
            bytes.len()
        );
        let mut got = Vec::new();
        f.dequantize(&bytes, &mut got).map_err(anyhow::Error::msg)?;
        ensure!(
            got.len() == f.block_elems(),
            "block {i}: {} values",
            got.len()
        );
        for (j, (g, w)) in got.iter().zip(&want).enumerate() {
            if g.to_bits() != w.to_bits() && (g - w).abs() > 1e-7 * w.abs().max(1e-3) {
                bail!("{name} block {i} element {j}: got {g}, gguf-py {w}");
            }
        }
        *seen.entry(name).or_insert(0) += 1;
    }
    for f in QUANTS {
        ensure!(
            seen.get(f.name()).copied().unwrap_or(0) >= 2,
            "no vectors for {f}"
        );
    }
    Ok(())
}

#[test]
fn round_trip_error_within_budget() -> Result<()> {
    let x = gaussian(256 * 64, 11);
    for f in QUANTS {
        let y = round_trip(f, &x).map_err(anyhow::Error::msg)?;
        let e = rel_rms(&x, &y);
        println!("{f}: relative RMS error {e:.4} (budget {})", budget(f));
        ensure!(
            e <= budget(f),
            "{f}: relative RMS error {e} > {}",
            budget(f)
        );
        // Scale invariance: a tensor of tiny or large weights fares the same.
        for scale in [1e-3f32, 30.0] {
            let xs: Vec<f32> = x.iter().map(|v| v * scale).collect();
            let ys = round_trip(f, &xs).map_err(anyhow::Error::msg)?;
            let es = rel_rms(&xs, &ys);
            ensure!(es <= budget(f) * 1.1, "{f} at scale {scale}: error {es}");
        }
    }
    Ok(())
}

#[test]
fn representable_values_are_lossless() -> Result<()> {
    let raw = gaussian(32 * 16, 5);
    for (f, qmin, qmax) in [
        (QuantFormat::Q8_0, -127i32, 127i32),
        (QuantFormat::Q4_0, -8, 7),
    ] {
        let mut x = Vec::new();
        for (b, block) in raw.chunks_exact(32).enumerate() {
            let d = half::f16::from_f32(0.01 + 0.003 * b as f32).to_f32();
            let extreme = if f == QuantFormat::Q8_0 && b % 2 == 1 {
                qmax
            } else {
                qmin
            };
            for (j, v) in block.iter().enumerate() {
                let q = if j == b % 32 {
                    extreme
                } else {
                    ((v * 40.0).round() as i32).clamp(qmin + 1, qmax)
                };
                x.push(q as f32 * d);
            }
        }
        let y = round_trip(f, &x).map_err(anyhow::Error::msg)?;
        ensure!(x == y, "{f}: representable values changed");
    }
    Ok(())
}

#[test]
fn requantizing_is_nearly_stable() -> Result<()> {
    // Quantizing already-dequantized data must not drift: the first pass's grid is (close
    // to) the best one for its own output (measured: exactly stable for every format).
    let x = gaussian(256 * 16, 3);
    for f in QUANTS {
        let y = round_trip(f, &x).map_err(anyhow::Error::msg)?;
        let z = round_trip(f, &y).map_err(anyhow::Error::msg)?;
        let e = rel_rms(&y, &z);
        println!("{f}: requantization error {e:.5}");
        ensure!(
            e <= budget(f) / 10.0,
            "{f}: requantizing moved values by {e}"
        );
    }
    Ok(())
}

#[test]
fn bad_input_is_an_error() {
    for f in QUANTS {
        let n = f.block_elems();
        let msg = f.quantize(&vec![0.0; n + 1], &mut Vec::new()).unwrap_err();
        assert!(msg.contains("whole number"), "{f}: {msg}");
        let mut x = vec![0.25; n];
        x[n - 1] = f32::INFINITY;
        let msg = f.quantize(&x, &mut Vec::new()).unwrap_err();
        assert!(msg.contains(&format!("element {}", n - 1)), "{f}: {msg}");
        let msg = f
            .dequantize(&vec![0u8; f.block_bytes() + 1], &mut Vec::new())
            .unwrap_err();
        assert!(msg.contains("whole number"), "{f}: {msg}");
    }
}
