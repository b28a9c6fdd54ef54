//! Sampling on the GPU (`shaders/sample.wgsl`) and the `advance` kernel.
//! Bindings — sample: params, sample_params, state, tokens, logits; advance: params, state.

use crate::gpu::KernelSpec;
use crate::gpu::shader::Defines;
use crate::sampling::SamplerConfig;

/// Mirror of `SampleParams` in shaders/sample.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct SampleParams {
    pub temperature: f32,
    pub top_k: u32,
    pub top_p: f32,
    pub min_p: f32,
    pub repeat_penalty: f32,
    pub repeat_last_n: u32,
    pub seed: u32,
    pub _pad: u32,
}

/// Lanes of the sampling workgroup; also the longest repetition-penalty window.
pub const SAMPLE_WG: usize = 256;

impl From<&SamplerConfig> for SampleParams {
    fn from(c: &SamplerConfig) -> Self {
        SampleParams {
            temperature: c.temperature,
            top_k: c.top_k,
            top_p: c.top_p,
            min_p: c.min_p,
            repeat_penalty: c.repeat_penalty,
            repeat_last_n: c.repeat_last_n.min(SAMPLE_WG as u32),
            seed: c.seed as u32 ^ (c.seed >> 32) as u32,
            _pad: 0,
        }
    }
}

/// `tr`: the token ring's length, more than [`SAMPLE_WG`] plus the longest batch.
pub fn sample_spec(vocab: usize, tr: usize) -> KernelSpec {
    KernelSpec::new("sample.wgsl", Defines::default())
        .u("V", vocab)
        .u("TR", tr)
}

pub fn advance_spec() -> KernelSpec {
    KernelSpec::new("advance.wgsl", Defines::default())
}

// ---- CPU mirror of the kernel's arithmetic, for tests ----

/// Order-preserving u32 key of an f32 (as `key_of` in the shader).
pub fn key_of(v: f32) -> u32 {
    let b = v.to_bits();
    if b & 0x8000_0000 != 0 {
        !b
    } else {
        b | 0x8000_0000
    }
}

fn pcg(v: u32) -> u32 {
    let s = v.wrapping_mul(747_796_405).wrapping_add(2_891_336_453);
    let w = ((s >> ((s >> 28) + 4)) ^ s).wrapping_mul(277_803_737);
    (w >> 22) ^ w
}

/// The shader's uniform draw for the token at `pos`.
pub fn uniform01(seed: u32, pos: u32) -> f32 {
    (pcg(seed ^ pcg(pos.wrapping_add(0x9e37_79b9))) >> 8) as f32 / 16_777_216.0
}

/// Applies the repetition penalty to `logits` as the kernel does (once per distinct id of the
/// last `repeat_last_n` tokens of `history`).
pub fn apply_penalty(logits: &mut [f32], history: &[u32], p: &SampleParams) {
    if p.repeat_penalty == 1.0 {
        return;
    }
    let n = (p.repeat_last_n as usize).min(SAMPLE_WG).min(history.len());
    let window = &history[history.len() - n..];
    for (i, &id) in window.iter().enumerate() {
        if window[..i].contains(&id) || id as usize >= logits.len() {
            continue;
        }
        let l = logits[id as usize];
        logits[id as usize] = if l < 0.0 {
            l * p.repeat_penalty
        } else {
            l / p.repeat_penalty
        };
    }
}

/// The set of ids the kernel may draw from (after the penalty), with their unnormalised
/// weights, computed the way the kernel does: top-k then top-p thresholds on keys, then min-p.
pub fn allowed(logits: &[f32], p: &SampleParams) -> Vec<(u32, f64)> {
    let mx = logits.iter().cloned().fold(f32::MIN, f32::max);
    let w = |v: f32| ((v - mx) / p.temperature).exp();
    let v = logits.len() as u32;
    let mut thr = 0u32;
    if p.top_k > 0 && p.top_k < v {
        for bit in (0..32).rev() {
            let cand = thr | (1 << bit);
            let c = logits.iter().filter(|&&l| key_of(l) >= cand).count() as u32;
            if c >= p.top_k {
                thr = cand;
            }
        }
    }
    if p.top_p < 1.0 {
        let z: f32 = logits
            .iter()
            .filter(|&&l| key_of(l) >= thr)
            .map(|&l| w(l))
            .sum();
        let target = p.top_p * z;
        let mut thr_p = thr;
        for bit in (0..32).rev() {
            let cand = thr_p | (1 << bit);
            if cand < thr {
                continue;
            }
            let m: f32 = logits
                .iter()
                .filter(|&&l| key_of(l) >= cand)
                .map(|&l| w(l))
                .sum();
            if m >= target {
                thr_p = cand;
            }
        }
        thr = thr.max(thr_p);
    }
    logits
        .iter()
        .enumerate()
        .filter(|&(_, &l)| key_of(l) >= thr && w(l) >= p.min_p)
        .map(|(i, &l)| (i as u32, f64::from(w(l))))
        .collect()
}
