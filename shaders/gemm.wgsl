// Tiled dequant-GEMM for a batch of tokens (prefill): Y = epilogue(X · Wᵀ).
//   x: [T, K] f32 (T = params.n_tokens);  w: [NA * N, K] in the format's storage (see gemv.wgsl)
//   y: [T, Y_STRIDE] f32, written at column Y_OFF + n. RESIDUAL adds into it; SWIGLU writes
//      silu(gate) * up.
// A 16x16 workgroup computes a 32-token x 32-row tile; each lane a 2x2 block. K advances in
// steps of 32 through shared-memory tiles; W tiles are decoded by the format's w_load4.

#include "common.wgsl"

override K: u32;
override N: u32;
override Y_STRIDE: u32;
override Y_OFF: u32 = 0u;
// First weight row this dispatch reads (a piece of a stacked matrix read on its own).
override W_ROW0: u32 = 0u;

#if SWIGLU
const NA: u32 = 2u;
#else
const NA: u32 = 1u;
#endif

const TILE: u32 = 32u;
const PAD: u32 = 33u;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> w: array<u32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

var<workgroup> xs: array<f32, 1056>;        // [TILE][PAD]
var<workgroup> ws: array<f32, 2112>;        // [NA][TILE][PAD]

fn x_load4(i: u32) -> vec4<f32> {
    return vec4<f32>(x[i], x[i + 1u], x[i + 2u], x[i + 3u]);
}

#include "formats/{FMT}.wgsl"

fn silu(v: f32) -> f32 {
    return v / (1.0 + exp(-v));
}

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let t_count = params.n_tokens;
    let n0 = wid.x * TILE;
    let t0 = wid.y * TILE;
    // Loader coordinates: lane -> (tile row, 4-element column group).
    let lr = lid / 8u;
    let lk = (lid % 8u) * 4u;
    var wbase: array<u32, 2>;
    for (var a = 0u; a < NA; a++) {
        wbase[a] = w_row_base(W_ROW0 + min(n0 + lr, N - 1u) + a * N);
    }
    var acc: array<f32, 8>;
    for (var i = 0u; i < 8u; i++) {
        acc[i] = 0.0;
    }
    for (var k0 = 0u; k0 < K; k0 += TILE) {
        let k = k0 + lk;
        var xv = vec4<f32>(0.0);
        if (t0 + lr < t_count && k < K) {
            xv = x_load4((t0 + lr) * K + k);
        }
        xs[lr * PAD + lk] = xv.x;
        xs[lr * PAD + lk + 1u] = xv.y;
        xs[lr * PAD + lk + 2u] = xv.z;
        xs[lr * PAD + lk + 3u] = xv.w;
        for (var a = 0u; a < NA; a++) {
            var wv = vec4<f32>(0.0);
            if (n0 + lr < N && k < K) {
                wv = w_load4(wbase[a], k);
            }
            let o = (a * TILE + lr) * PAD + lk;
            ws[o] = wv.x;
            ws[o + 1u] = wv.y;
            ws[o + 2u] = wv.z;
            ws[o + 3u] = wv.w;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TILE; kk++) {
            let xa = xs[(lid3.y * 2u) * PAD + kk];
            let xb = xs[(lid3.y * 2u + 1u) * PAD + kk];
            for (var a = 0u; a < NA; a++) {
                let wa = ws[(a * TILE + lid3.x * 2u) * PAD + kk];
                let wb = ws[(a * TILE + lid3.x * 2u + 1u) * PAD + kk];
                acc[a * 4u + 0u] += xa * wa;
                acc[a * 4u + 1u] += xa * wb;
                acc[a * 4u + 2u] += xb * wa;
                acc[a * 4u + 3u] += xb * wb;
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i++) {
        let t = t0 + lid3.y * 2u + i / 2u;
        let n = n0 + lid3.x * 2u + i % 2u;
        if (t < t_count && n < N) {
            let o = t * Y_STRIDE + Y_OFF + n;
#if PLAIN
            y[o] = acc[i];
#elif RESIDUAL
            y[o] += acc[i];
#elif SWIGLU
            y[o] = silu(acc[i]) * acc[4u + i];
#endif
        }
    }
}
