// RMSNorm: y[t] = x[t] * rsqrt(mean(x[t]²) + EPS) * weight, one workgroup per token row.
//   x: [T, H] f32; weight: [H] f32; y: [T, H] f32, or [H] when LAST_ROW (only row T - 1 is
//   normalised: the final norm before the output head after a prefill chunk).

#include "common.wgsl"

override H: u32;
override EPS: f32;
override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

var<workgroup> red: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
#if LAST_ROW
    let t = params.n_tokens - 1u;
    let yo = 0u;
#else
    let t = wid.x;
    if (t >= params.n_tokens) {
        return;
    }
    let yo = t * H;
#endif
    let xo = t * H;
    var ss = 0.0;
    for (var i = lid; i < H; i += WG) {
        let v = x[xo + i];
        ss += v * v;
    }
    red[lid] = ss;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) {
            red[lid] += red[lid + s];
        }
        workgroupBarrier();
    }
    let inv = inverseSqrt(red[0] / f32(H) + EPS);
    for (var i = lid; i < H; i += WG) {
        y[yo + i] = x[xo + i] * inv * weight[i];
    }
}
