// Causal attention for a batch of query tokens (prefill) over the KV ring, online softmax.
//   q: [T, NH * HD] f32 (normed, roped);  k_cache, v_cache: the ring (kv.wgsl);
//   rope: [CTX, HD / 2] (cos, sin);  out: [T, NH * HD] f32.
// Query t (absolute index pos + t) sees the keys kv.wgsl describes, each rotated to its position
// in the window as it is read. Workgroup (h, t); lanes score 64 keys at a time, then each lane
// accumulates its output dims. GQA: query head h reads KV head h / (NH / NKV).

#include "common.wgsl"

override NH: u32;
override NKV: u32;
override HD: u32;
override SCALE: f32;
const WG: u32 = 64u;
const NEG: f32 = -3.0e38;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> state: State;
@group(0) @binding(2) var<storage, read> q: array<f32>;
@group(0) @binding(3) var<storage, read> k_cache: array<u32>;
@group(0) @binding(4) var<storage, read> v_cache: array<u32>;
@group(0) @binding(5) var<storage, read> rope: array<vec2<f32>>;
@group(0) @binding(6) var<storage, read_write> out: array<f32>;

#include "kv.wgsl"

var<workgroup> qs: array<f32, 256>;
var<workgroup> sc: array<f32, WG>;
var<workgroup> red: array<f32, WG>;
var<workgroup> slots: array<u32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let h = wid.x;
    let t = wid.y;
    if (t >= params.n_tokens) {
        return;
    }
    let kh = h / (NH / NKV);
    let qo = t * NH * HD + h * HD;
    for (var i = lid; i < HD; i += WG) {
        qs[i] = q[qo + i];
    }
    workgroupBarrier();
    let aq = state.pos + t;
    let n_keys = n_visible(aq);
    let half_d = HD / 2u;
    var m = NEG;
    var l = 0.0;
    var acc: array<f32, 4>;
    for (var j = 0u; j < 4u; j++) {
        acc[j] = 0.0;
    }
    for (var b = 0u; b < n_keys; b += WG) {
        let j = b + lid;
        var s = NEG;
        var vs = 0.0;
        if (j < n_keys) {
            let slot = slot_of(key_abs(aq, n_keys, j));
            var d = 0.0;
            for (var i = 0u; i < half_d; i++) {
                d += rope_dot(qs[i], qs[i + half_d], k_pair(slot, kh, i), rope[j * half_d + i]);
            }
            s = d * k_scale(slot, kh) * SCALE;
            slots[lid] = slot;
            vs = v_scale(slot, kh);
        }
        red[lid] = s;
        workgroupBarrier();
        for (var st = WG / 2u; st > 0u; st >>= 1u) {
            if (lid < st) {
                red[lid] = max(red[lid], red[lid + st]);
            }
            workgroupBarrier();
        }
        let new_m = max(m, red[0]);
        workgroupBarrier();
        var p = 0.0;
        if (j < n_keys) {
            p = exp(s - new_m);
        }
        sc[lid] = p * vs;
        red[lid] = p;
        workgroupBarrier();
        for (var st = WG / 2u; st > 0u; st >>= 1u) {
            if (lid < st) {
                red[lid] += red[lid + st];
            }
            workgroupBarrier();
        }
        let corr = exp(m - new_m);
        l = l * corr + red[0];
        let nb = min(WG, n_keys - b);
        for (var dd = 0u; dd < 4u; dd++) {
            let d = lid + dd * WG;
            if (d < HD) {
                var a = acc[dd] * corr;
                for (var jj = 0u; jj < nb; jj++) {
                    a += sc[jj] * v_elem(slots[jj], kh, d);
                }
                acc[dd] = a;
            }
        }
        m = new_m;
        workgroupBarrier();
    }
    for (var dd = 0u; dd < 4u; dd++) {
        let d = lid + dd * WG;
        if (d < HD) {
            out[qo + d] = acc[dd] / l;
        }
    }
}
