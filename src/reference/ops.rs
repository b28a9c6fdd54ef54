//! The f32 ops of the LFM2 forward pass (docs/lfm2-spec.md §2), on plain slices.
//!
//! These are the oracles for the GPU kernels' tests as well as the pieces of
//! [`CpuModel`](super::CpuModel), so they take any sizes. Every tensor is row-major (C order),
//! outermost dimension first; each doc comment gives the shapes. Dot products and sums are
//! accumulated in f64 and rounded once to f32, so an op's result is as close to the exact value
//! as f32 storage allows.
//!
//! Panics: the shapes are the caller's contract (the model checks weight shapes once at load);
//! a slice whose length disagrees with the sizes given panics with a message naming it.

/// `y = x * rsqrt(mean(x²) + eps) * w` for each row of `x`.
///
/// `x: [R, H]` (any number of rows `R`, `x.len()` a multiple of `H`), `w: [H]` -> `[R, H]`.
/// No `(1 + w)` offset (spec §2.1).
pub fn rms_norm(x: &[f32], w: &[f32], eps: f32) -> Vec<f32> {
    let h = w.len();
    assert!(
        h > 0 && x.len().is_multiple_of(h),
        "rms_norm: x.len() {} is not a multiple of w.len() {h}",
        x.len()
    );
    let mut out = Vec::with_capacity(x.len());
    for row in x.chunks_exact(h) {
        let scale = rms_scale(row, eps);
        out.extend(row.iter().zip(w).map(|(&v, &g)| v * scale * g));
    }
    out
}

/// `rsqrt(mean(x²) + eps)` of one row, as f32.
fn rms_scale(row: &[f32], eps: f32) -> f32 {
    let sum_sq: f64 = row.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
    let mean = sum_sq / row.len() as f64;
    (1.0 / (mean + f64::from(eps)).sqrt()) as f32
}

/// Per-head RMSNorm in place (the q/k layernorms of spec §2.4).
///
/// `x: [n_heads, hd]`, `w: [hd]`; each head is normalized over its own `hd` values.
pub fn head_rms_norm(x: &mut [f32], n_heads: usize, hd: usize, w: &[f32], eps: f32) {
    assert_eq!(
        x.len(),
        n_heads * hd,
        "head_rms_norm: x is not [n_heads, hd]"
    );
    assert_eq!(w.len(), hd, "head_rms_norm: w is not [hd]");
    for head in x.chunks_exact_mut(hd) {
        let scale = rms_scale(head, eps);
        for (v, &g) in head.iter_mut().zip(w) {
            *v = *v * scale * g;
        }
    }
}

/// Dot product accumulated in f64.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "dot: length mismatch");
    dot64(a, b) as f32
}

fn dot64(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| f64::from(x) * f64::from(y))
        .sum()
}

/// `y = W x`. `w: [rows, cols]`, `x: [cols]` -> `[rows]`.
pub fn matvec(w: &[f32], rows: usize, cols: usize, x: &[f32]) -> Vec<f32> {
    assert_eq!(w.len(), rows * cols, "matvec: w is not [rows, cols]");
    assert_eq!(x.len(), cols, "matvec: x is not [cols]");
    if cols == 0 {
        return vec![0.0; rows];
    }
    w.chunks_exact(cols)
        .map(|row| dot64(row, x) as f32)
        .collect()
}

/// `Y = X Wᵀ` for `t` tokens (a linear layer without bias).
/// `w: [rows, cols]`, `x: [t, cols]` -> `[t, rows]`.
pub fn matmul(w: &[f32], rows: usize, cols: usize, x: &[f32], t: usize) -> Vec<f32> {
    assert_eq!(x.len(), t * cols, "matmul: x is not [t, cols]");
    let mut out = Vec::with_capacity(t * rows);
    for i in 0..t {
        out.extend(matvec(w, rows, cols, &x[i * cols..(i + 1) * cols]));
    }
    out
}

/// `silu(x) = x * sigmoid(x)`.
pub fn silu(x: f32) -> f32 {
    let x = f64::from(x);
    (x / (1.0 + (-x).exp())) as f32
}

/// SwiGLU combine: `silu(gate) ⊙ up`. `gate, up: [n]` -> `[n]` (spec §2.2).
pub fn swiglu(gate: &[f32], up: &[f32]) -> Vec<f32> {
    assert_eq!(gate.len(), up.len(), "swiglu: gate and up differ in length");
    gate.iter().zip(up).map(|(&g, &u)| silu(g) * u).collect()
}

/// One token of the gated short convolution (spec §2.3): `y = C ⊙ conv(B ⊙ x)`.
///
/// - `state: [h, L-1]`: per channel, the last `L-1` values of `B ⊙ x`, oldest first (each
///   channel's columns are contiguous, like llama.cpp's `{L-1, H}` recurrent state). All zeros
///   before the first token. Updated in place: shifted left by one, the new `B ⊙ x` appended.
/// - `bcx: [3h]`: the in_proj output, chunks `B | C | x`.
/// - `conv_w: [h, L]`: depthwise kernel; tap `L-1` multiplies the current token, tap 0 the oldest.
///
/// Returns `[h]` (before out_proj). `conv[c] = Σ_k conv_w[c, k] · [state[c, :], bx[c]][k]`.
pub fn short_conv_step(state: &mut [f32], bcx: &[f32], conv_w: &[f32], h: usize) -> Vec<f32> {
    assert!(
        h > 0 && conv_w.len().is_multiple_of(h),
        "short_conv_step: conv_w is not [h, L]"
    );
    let l = conv_w.len() / h;
    assert!(l >= 1, "short_conv_step: kernel size 0");
    assert_eq!(
        state.len(),
        h * (l - 1),
        "short_conv_step: state is not [h, L-1]"
    );
    assert_eq!(bcx.len(), 3 * h, "short_conv_step: bcx is not [3h]");
    let (b, rest) = bcx.split_at(h);
    let (c, x) = rest.split_at(h);
    let mut y = Vec::with_capacity(h);
    for ch in 0..h {
        let bx = b[ch] * x[ch];
        let taps = &conv_w[ch * l..(ch + 1) * l];
        let past = &mut state[ch * (l - 1)..(ch + 1) * (l - 1)];
        let acc = dot64(&taps[..l - 1], past) + f64::from(taps[l - 1]) * f64::from(bx);
        y.push(c[ch] * acc as f32);
        if !past.is_empty() {
            past.rotate_left(1);
            past[l - 2] = bx;
        }
    }
    y
}

/// [`short_conv_step`] over `t` tokens: `bcx: [t, 3h]` -> `[t, h]`, `state: [h, L-1]` updated.
/// The oracle for a prefill conv kernel (a true causal conv, zeros before the first token when
/// `state` starts at zero).
pub fn short_conv_seq(
    state: &mut [f32],
    bcx: &[f32],
    conv_w: &[f32],
    h: usize,
    t: usize,
) -> Vec<f32> {
    assert_eq!(bcx.len(), t * 3 * h, "short_conv_seq: bcx is not [t, 3h]");
    let mut out = Vec::with_capacity(t * h);
    for row in bcx.chunks_exact(3 * h) {
        out.extend(short_conv_step(state, row, conv_w, h));
    }
    out
}

/// NeoX (rotate-half) RoPE in place at absolute position `pos` (spec §2.4).
///
/// `x: [n_heads, hd]`, `hd` even. For `i < hd/2`: the pair `(x[i], x[i + hd/2])` is rotated by
/// `pos · inv_freq[i]`, `inv_freq[i] = theta^(-2i/hd)`. The angle is formed in f32 exactly as
/// Hugging Face does (`1 / theta^(2i/hd)` in f32, times `pos` in f32); cos/sin of it are
/// computed in f64 and rounded. Position 0 is the identity.
pub fn rope_neox(x: &mut [f32], n_heads: usize, hd: usize, pos: usize, theta: f32) {
    assert_eq!(x.len(), n_heads * hd, "rope_neox: x is not [n_heads, hd]");
    assert!(hd.is_multiple_of(2), "rope_neox: odd head_dim {hd}");
    let half = hd / 2;
    let (cos, sin): (Vec<f32>, Vec<f32>) = (0..half)
        .map(|i| {
            let inv_freq = 1.0f32 / theta.powf((2 * i) as f32 / hd as f32);
            let angle = f64::from(pos as f32 * inv_freq);
            (angle.cos() as f32, angle.sin() as f32)
        })
        .unzip();
    for head in x.chunks_exact_mut(hd) {
        for i in 0..half {
            let (a, b) = (head[i], head[i + half]);
            head[i] = a * cos[i] - b * sin[i];
            head[i + half] = b * cos[i] + a * sin[i];
        }
    }
}

/// Attention of the query at absolute index `aq` over a window of at most `ctx` keys whose
/// first `sinks` are never evicted (the policy of `shaders/kv.wgsl`): logical key `j < n`,
/// `n = min(aq + 1, ctx)`, is token `j` when `j < sinks`, else token `aq + 1 - n + j`; it is
/// rotated to position `j`, and the query to `n - 1`.
///
/// - `q: [nh, hd]` after the q-norm, before RoPE
/// - `k_hist, v_hist: [>= aq + 1, nkv, hd]` by absolute index: keys after the k-norm, before
///   RoPE (only the rows of visible tokens are read)
pub fn windowed_attention(
    q: &[f32],
    k_hist: &[f32],
    v_hist: &[f32],
    aq: usize,
    (ctx, sinks): (usize, usize),
    (nh, nkv, hd): (usize, usize, usize),
    theta: f32,
) -> Vec<f32> {
    let kvd = nkv * hd;
    let n = (aq + 1).min(ctx);
    let (mut ks, mut vs) = (Vec::with_capacity(n * kvd), Vec::with_capacity(n * kvd));
    for j in 0..n {
        let a = if j < sinks { j } else { aq + 1 - n + j };
        let mut key = k_hist[a * kvd..(a + 1) * kvd].to_vec();
        rope_neox(&mut key, nkv, hd, j, theta);
        ks.extend_from_slice(&key);
        vs.extend_from_slice(&v_hist[a * kvd..(a + 1) * kvd]);
    }
    let mut qr = q.to_vec();
    rope_neox(&mut qr, nh, hd, n - 1, theta);
    attention_step(&qr, &ks, &vs, n, nh, nkv, hd)
}

/// Rounds `x: [n_heads, hd]` through a KV storage format, as the GPU's ring stores it: f16
/// (nearest even), or int8 per head with scale `absmax / 127` and values
/// `round_ties_even(x * 127 / absmax)` clamped to ±127.
pub fn kv_round_trip(
    kind: crate::ops::attention::KvType,
    x: &mut [f32],
    n_heads: usize,
    hd: usize,
) {
    use crate::ops::attention::KvType;
    assert_eq!(
        x.len(),
        n_heads * hd,
        "kv_round_trip: x is not [n_heads, hd]"
    );
    match kind {
        KvType::F32 => {}
        KvType::F16 => x
            .iter_mut()
            .for_each(|v| *v = half::f16::from_f32(*v).to_f32()),
        KvType::Int8 => {
            for head in x.chunks_exact_mut(hd) {
                let amax = head.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                let inv = if amax > 0.0 { 127.0 / amax } else { 0.0 };
                let scale = amax / 127.0;
                for v in head.iter_mut() {
                    *v = (*v * inv).round_ties_even().clamp(-127.0, 127.0) * scale;
                }
            }
        }
    }
}

/// Numerically stable softmax (max subtracted, sum in f64). `x: [n]` -> `[n]`.
pub fn softmax(x: &[f32]) -> Vec<f32> {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f64> = x.iter().map(|&v| f64::from(v - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.iter().map(|&e| (e / sum) as f32).collect()
}

/// Index of the largest value; ties go to the lowest index (like `torch.argmax`), NaNs are
/// skipped. `x: [n]`, `n > 0`.
pub fn argmax(x: &[f32]) -> usize {
    assert!(!x.is_empty(), "argmax of an empty slice");
    let mut best = 0;
    let mut best_v = f32::NEG_INFINITY;
    for (i, &v) in x.iter().enumerate() {
        if v > best_v || (i == 0 && !v.is_nan()) {
            best = i;
            best_v = v;
        }
    }
    best
}

/// Attention of one query token over `n_pos` cached positions (all visible: the caller appends
/// the current token's k/v before calling, which makes it causal).
///
/// - `q: [nh, hd]` (after q-norm and RoPE)
/// - `k_cache, v_cache: [n_pos, nkv, hd]` (at least `n_pos` rows are read)
///
/// Returns `[nh, hd]`: per head `softmax(q·kᵀ / sqrt(hd)) · v`. GQA: query head `h` reads KV head
/// `h / (nh / nkv)` (contiguous grouping, as `repeat_kv`).
pub fn attention_step(
    q: &[f32],
    k_cache: &[f32],
    v_cache: &[f32],
    n_pos: usize,
    nh: usize,
    nkv: usize,
    hd: usize,
) -> Vec<f32> {
    assert_eq!(q.len(), nh * hd, "attention_step: q is not [nh, hd]");
    assert!(
        nkv > 0 && nh.is_multiple_of(nkv),
        "attention_step: nh {nh} not a multiple of nkv {nkv}"
    );
    let kv_dim = nkv * hd;
    assert!(
        k_cache.len() >= n_pos * kv_dim,
        "attention_step: k_cache shorter than [n_pos, nkv, hd]"
    );
    assert!(
        v_cache.len() >= n_pos * kv_dim,
        "attention_step: v_cache shorter than [n_pos, nkv, hd]"
    );
    let group = nh / nkv;
    let scale = 1.0 / (hd as f64).sqrt();
    let mut out = vec![0.0f32; nh * hd];
    let mut weights = vec![0.0f64; n_pos];
    for head in 0..nh {
        let kvh = head / group;
        let qh = &q[head * hd..(head + 1) * hd];
        let mut max = f64::NEG_INFINITY;
        for (p, w) in weights.iter_mut().enumerate() {
            let k = &k_cache[p * kv_dim + kvh * hd..p * kv_dim + (kvh + 1) * hd];
            *w = dot64(qh, k) * scale;
            max = max.max(*w);
        }
        let mut sum = 0.0;
        for w in weights.iter_mut() {
            *w = (*w - max).exp();
            sum += *w;
        }
        let oh = &mut out[head * hd..(head + 1) * hd];
        for d in 0..hd {
            let acc: f64 = weights
                .iter()
                .enumerate()
                .map(|(p, &w)| w * f64::from(v_cache[p * kv_dim + kvh * hd + d]))
                .sum();
            oh[d] = (acc / sum) as f32;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: &[f32], b: &[f32], tol: f32) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tol)
    }

    #[test]
    fn rms_norm_by_hand() {
        // mean(9, 16) = 12.5 -> scale 1/sqrt(12.5).
        let y = rms_norm(&[3.0, 4.0], &[1.0, 2.0], 0.0);
        let s = 1.0 / 12.5f32.sqrt();
        assert!(close(&y, &[3.0 * s, 8.0 * s], 1e-6));
        // Two rows are normalized independently; eps matters for a zero row.
        let y = rms_norm(&[1.0, 1.0, 0.0, 0.0], &[1.0, 1.0], 1e-5);
        assert!(close(&y, &[1.0, 1.0, 0.0, 0.0], 1e-5));
    }

    #[test]
    fn head_rms_norm_per_head() {
        let mut x = vec![1.0, 1.0, 2.0, 2.0];
        head_rms_norm(&mut x, 2, 2, &[1.0, 3.0], 0.0);
        assert!(close(&x, &[1.0, 3.0, 1.0, 3.0], 1e-6));
    }

    #[test]
    fn matvec_and_matmul() {
        // W = [[1, 2, 3], [4, 5, 6]]
        let w = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        assert_eq!(matvec(&w, 2, 3, &[1.0, 0.0, -1.0]), vec![-2.0, -2.0]);
        let y = matmul(&w, 2, 3, &[1.0, 0.0, -1.0, 0.0, 1.0, 0.0], 2);
        assert_eq!(y, vec![-2.0, -2.0, 2.0, 5.0]);
    }

    #[test]
    fn silu_and_swiglu() {
        assert_eq!(silu(0.0), 0.0);
        assert!((silu(1.0) - 0.731_058_6).abs() < 1e-6);
        assert!((silu(-20.0)).abs() < 1e-6);
        assert!(close(
            &swiglu(&[1.0, 0.0], &[2.0, 5.0]),
            &[1.462_117_2, 0.0],
            1e-6
        ));
    }

    #[test]
    fn short_conv_one_hot_is_the_kernel() {
        // One channel, L = 3, kernel [w0, w1, w2] (w2 = current token). Feed bx = 1, 0, 0, 0
        // (B = 1, x = one-hot, C = 1): outputs are w2, w1, w0, 0.
        let w = [0.5, -2.0, 3.0];
        let mut state = vec![0.0; 2];
        let ys: Vec<f32> = [1.0, 0.0, 0.0, 0.0]
            .iter()
            .map(|&x| short_conv_step(&mut state, &[1.0, 1.0, x], &w, 1)[0])
            .collect();
        assert_eq!(ys, vec![3.0, -2.0, 0.5, 0.0]);
    }

    #[test]
    fn short_conv_gates_and_channels() {
        // Two channels, L = 2. B gates before the conv (and enters the state), C after.
        let w = [1.0, 10.0, 2.0, 20.0]; // [h=2, L=2]
        let mut state = vec![0.0; 2];
        // token 0: B = [2, 1], C = [1, 3], x = [1, 1] -> bx = [2, 1]
        let y0 = short_conv_step(&mut state, &[2.0, 1.0, 1.0, 3.0, 1.0, 1.0], &w, 2);
        assert_eq!(y0, vec![20.0, 60.0]);
        assert_eq!(state, vec![2.0, 1.0]);
        // token 1: B = [1, 1], C = [1, 1], x = [0, 0] -> only the past tap contributes.
        let y1 = short_conv_step(&mut state, &[1.0, 1.0, 1.0, 1.0, 0.0, 0.0], &w, 2);
        assert_eq!(y1, vec![2.0, 2.0]);
        // The sequence form agrees with stepping.
        let mut s2 = vec![0.0; 2];
        let seq = short_conv_seq(
            &mut s2,
            &[2.0, 1.0, 1.0, 3.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0],
            &w,
            2,
            2,
        );
        assert_eq!(seq, vec![20.0, 60.0, 2.0, 2.0]);
        assert_eq!(s2, state);
    }

    #[test]
    fn rope_pos0_is_identity_and_pairs_rotate() {
        let x0: Vec<f32> = (0..8).map(|i| i as f32 - 3.5).collect();
        let mut x = x0.clone();
        rope_neox(&mut x, 2, 4, 0, 1e6);
        assert_eq!(x, x0);
        // Pair (0, 2) has inv_freq 1: at pos 1 it rotates by 1 radian. Pair (1, 3) has
        // inv_freq theta^(-1/2) = 0.01 for theta = 1e4.
        let mut x = vec![1.0, 1.0, 0.0, 0.0];
        rope_neox(&mut x, 1, 4, 1, 1e4);
        let (c, s) = (1.0f32.cos(), 1.0f32.sin());
        let (c2, s2) = (0.01f32.cos(), 0.01f32.sin());
        assert!(close(&x, &[c, c2, s, s2], 1e-6));
        // Rotation preserves the norm of each pair.
        let mut x = vec![3.0, 4.0];
        rope_neox(&mut x, 1, 2, 7, 1e6);
        assert!((x[0].hypot(x[1]) - 5.0).abs() < 1e-5);
    }

    #[test]
    fn softmax_and_argmax() {
        let p = softmax(&[0.0, 0.0, (2.0f32).ln()]);
        assert!(close(&p, &[0.25, 0.25, 0.5], 1e-6));
        assert!(close(&softmax(&[1000.0, 1000.0]), &[0.5, 0.5], 1e-6));
        assert_eq!(argmax(&[1.0, 3.0, 3.0, -1.0]), 1);
        assert_eq!(argmax(&[f32::NAN, -5.0, -4.0]), 2);
        assert_eq!(argmax(&[-1.0]), 0);
    }

    #[test]
    fn attention_one_key_returns_v() {
        let (nh, nkv, hd) = (2, 1, 2);
        let q = [0.3, -1.0, 2.0, 5.0];
        let out = attention_step(&q, &[1.0, 2.0], &[7.0, -8.0], 1, nh, nkv, hd);
        assert_eq!(out, vec![7.0, -8.0, 7.0, -8.0]);
    }

    #[test]
    fn attention_weights_and_gqa_mapping() {
        // nh = 4, nkv = 2: heads 0,1 -> kv 0; heads 2,3 -> kv 1. hd = 1, two positions.
        let (nh, nkv, hd) = (4, 2, 1);
        // kv head 0: k = [0, ln 3] -> weights 1/4, 3/4 for q = 1 (scale 1/sqrt(1)).
        // kv head 1: identical keys -> equal weights whatever q.
        let k = [0.0, 0.0, 3.0f32.ln(), 0.0]; // [n_pos=2, nkv=2, hd=1]
        let v = [4.0, 10.0, 8.0, 20.0];
        let q = [1.0, 0.0, 1.0, -7.0];
        let out = attention_step(&q, &k, &v, 2, nh, nkv, hd);
        assert!(close(&out, &[7.0, 6.0, 15.0, 15.0], 1e-5), "{out:?}");
        // Scale 1/sqrt(hd): hd = 4 with all-equal components gives q·k / 2.
        let k = [0.0; 4]
            .iter()
            .chain([1.0; 4].iter())
            .copied()
            .collect::<Vec<f32>>();
        let v = [0.0; 4]
            .iter()
            .chain([1.0; 4].iter())
            .copied()
            .collect::<Vec<f32>>();
        let q = [2.0f32.ln() / 2.0; 4]; // q·k = 2 ln 2 at pos 1, scaled: ln 2 -> weights 1/3, 2/3
        let out = attention_step(&q, &k, &v, 2, 1, 1, 4);
        assert!(close(&out, &[2.0 / 3.0; 4], 1e-6), "{out:?}");
    }
}
