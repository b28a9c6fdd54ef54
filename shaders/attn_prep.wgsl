// Attention prep for a batch of tokens: per-head RMSNorm of q and k, NeoX RoPE at the token's
// absolute position, and the k, v write into the layer's KV ring.
//   qkv: [T, (NH + 2 NKV) * HD] f32 (q | k | v projections);  q_norm, k_norm: [HD] f32;
//   inv_freq: [HD / 2] f32;  q_out: [T, NH * HD] f32;  k_cache, v_cache: [CAP, NKV * HD] f32.
// Workgroup (h, t): h < NH is query head h, h >= NH is KV head h - NH (which also copies v).

#include "common.wgsl"

override NH: u32;
override NKV: u32;
override HD: u32;
override EPS: f32;
const WG: u32 = 64u;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> state: State;
@group(0) @binding(2) var<storage, read> qkv: array<f32>;
@group(0) @binding(3) var<storage, read> q_norm: array<f32>;
@group(0) @binding(4) var<storage, read> k_norm: array<f32>;
@group(0) @binding(5) var<storage, read> inv_freq: array<f32>;
@group(0) @binding(6) var<storage, read_write> q_out: array<f32>;
@group(0) @binding(7) var<storage, read_write> k_cache: array<f32>;
@group(0) @binding(8) var<storage, read_write> v_cache: array<f32>;

var<workgroup> hv: array<f32, 256>;
var<workgroup> red: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let h = wid.x;
    let t = wid.y;
    if (t >= params.n_tokens) {
        return;
    }
    let pos = state.pos + t;
    let row = t * (NH + 2u * NKV) * HD;
    let is_q = h < NH;
    var src = row + h * HD;
    if (!is_q) {
        src = row + NH * HD + (h - NH) * HD;
    }
    var ss = 0.0;
    for (var i = lid; i < HD; i += WG) {
        let v = qkv[src + i];
        hv[i] = v;
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
    let inv = inverseSqrt(red[0] / f32(HD) + EPS);
    for (var i = lid; i < HD; i += WG) {
        var wn = k_norm[i];
        if (is_q) {
            wn = q_norm[i];
        }
        hv[i] = hv[i] * inv * wn;
    }
    workgroupBarrier();
    let half_d = HD / 2u;
    let kvw = NKV * HD;
    for (var i = lid; i < half_d; i += WG) {
        let ang = f32(pos) * inv_freq[i];
        let c = cos(ang);
        let s = sin(ang);
        let a = hv[i];
        let b = hv[i + half_d];
        let lo = a * c - b * s;
        let hi = b * c + a * s;
        if (is_q) {
            let o = t * NH * HD + h * HD;
            q_out[o + i] = lo;
            q_out[o + i + half_d] = hi;
        } else {
            let o = pos * kvw + (h - NH) * HD;
            k_cache[o + i] = lo;
            k_cache[o + i + half_d] = hi;
        }
    }
    if (!is_q) {
        let kh = h - NH;
        let vsrc = row + (NH + NKV) * HD + kh * HD;
        for (var i = lid; i < HD; i += WG) {
            v_cache[pos * kvw + kh * HD + i] = qkv[vsrc + i];
        }
    }
}
