// Gated short convolution over a batch of tokens (prefill), after the in_proj GEMM:
//   bcx: [T, 3H] f32 (B | C | x), conv_w: [H, L] f32 (tap L-1 = current token),
//   conv_state: [L - 1, H] f32 (column 0 = oldest B⊙x), y: [T, H] f32.
// y[t, c] = C[t, c] * Σ_k conv_w[c, k] · (B⊙x)[t - (L-1) + k, c], with earlier tokens taken from
// the state; the state keeps the last L - 1 columns. One lane per channel walks the tokens.

#include "common.wgsl"

override H: u32;
override L: u32 = 3u;
override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> bcx: array<f32>;
@group(0) @binding(2) var<storage, read> conv_w: array<f32>;
@group(0) @binding(3) var<storage, read_write> conv_state: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    if (c >= H) {
        return;
    }
    // Rolling window of the last L - 1 inputs (L <= 8).
    var win: array<f32, 8>;
    for (var k = 0u; k + 1u < L; k++) {
        win[k] = conv_state[k * H + c];
    }
    for (var t = 0u; t < params.n_tokens; t++) {
        let row = t * 3u * H;
        let bx = bcx[row + c] * bcx[row + 2u * H + c];
        var conv = conv_w[c * L + (L - 1u)] * bx;
        for (var k = 0u; k + 1u < L; k++) {
            conv += conv_w[c * L + k] * win[k];
        }
        for (var k = 0u; k + 2u < L; k++) {
            win[k] = win[k + 1u];
        }
        win[L - 2u] = bx;
        y[t * H + c] = bcx[row + H + c] * conv;
    }
    for (var k = 0u; k + 1u < L; k++) {
        conv_state[k * H + c] = win[k];
    }
}
