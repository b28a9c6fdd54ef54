// Flash-decoding over the KV ring for one query token (decode), split-K with GQA sharing.
//   q: [NH * HD] f32 (normed, roped);  k_cache, v_cache: [CAP, NKV * HD] f32;
//   part_o: [NSPLIT, NH, HD] f32 (unnormalised Σ p·v);  part_ml: [NSPLIT, NH, 2] f32 (max, Σ p).
// Workgroup (s, kh) takes keys [s * SPLIT, (s + 1) * SPLIT) ∩ [0, pos] for all G = NH / NKV
// query heads of KV group kh, so each key and value is read once per group. attn_reduce.wgsl
// merges the splits. The valid length comes from `state.pos`, so the dispatch never changes.

#include "common.wgsl"

override NH: u32;
override NKV: u32;
override HD: u32;
override SPLIT: u32;
override SCALE: f32;
const WG: u32 = 64u;
const MAXG: u32 = 8u;
const NEG: f32 = -3.0e38;

@group(0) @binding(0) var<storage, read> state: State;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k_cache: array<f32>;
@group(0) @binding(3) var<storage, read> v_cache: array<f32>;
@group(0) @binding(4) var<storage, read_write> part_o: array<f32>;
@group(0) @binding(5) var<storage, read_write> part_ml: array<f32>;

var<workgroup> qs: array<f32, 2048>;    // [G][HD]
var<workgroup> sc: array<f32, 512>;     // [G][WG] probabilities of the current block
var<workgroup> red: array<f32, 512>;    // [G][WG] reduction scratch

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let split = wid.x;
    let kh = wid.y;
    let g_count = NH / NKV;
    let kvw = NKV * HD;
    let n_keys = state.pos + 1u;
    let k_begin = split * SPLIT;
    let k_end = min(k_begin + SPLIT, n_keys);
    for (var i = lid; i < g_count * HD; i += WG) {
        qs[i] = q[kh * g_count * HD + i];
    }
    workgroupBarrier();
    var m: array<f32, MAXG>;
    var l: array<f32, MAXG>;
    var acc: array<f32, 32>;    // [MAXG][4]: lane's dims lid + 64 * dd
    for (var g = 0u; g < MAXG; g++) {
        m[g] = NEG;
        l[g] = 0.0;
    }
    for (var i = 0u; i < 32u; i++) {
        acc[i] = 0.0;
    }
    for (var b = k_begin; b < k_end; b += WG) {
        let j = b + lid;
        let valid = j < k_end;
        let ko = j * kvw + kh * HD;
        for (var g = 0u; g < g_count; g++) {
            var s = NEG;
            if (valid) {
                var d = 0.0;
                for (var i = 0u; i < HD; i++) {
                    d += qs[g * HD + i] * k_cache[ko + i];
                }
                s = d * SCALE;
            }
            sc[g * WG + lid] = s;
            red[g * WG + lid] = s;
        }
        workgroupBarrier();
        for (var st = WG / 2u; st > 0u; st >>= 1u) {
            if (lid < st) {
                for (var g = 0u; g < g_count; g++) {
                    red[g * WG + lid] = max(red[g * WG + lid], red[g * WG + lid + st]);
                }
            }
            workgroupBarrier();
        }
        var new_m: array<f32, MAXG>;
        for (var g = 0u; g < g_count; g++) {
            new_m[g] = max(m[g], red[g * WG]);
        }
        workgroupBarrier();
        for (var g = 0u; g < g_count; g++) {
            var p = 0.0;
            if (valid) {
                p = exp(sc[g * WG + lid] - new_m[g]);
            }
            sc[g * WG + lid] = p;
            red[g * WG + lid] = p;
        }
        workgroupBarrier();
        for (var st = WG / 2u; st > 0u; st >>= 1u) {
            if (lid < st) {
                for (var g = 0u; g < g_count; g++) {
                    red[g * WG + lid] += red[g * WG + lid + st];
                }
            }
            workgroupBarrier();
        }
        let nb = min(WG, k_end - b);
        for (var g = 0u; g < g_count; g++) {
            let corr = exp(m[g] - new_m[g]);
            l[g] = l[g] * corr + red[g * WG];
            m[g] = new_m[g];
            for (var dd = 0u; dd < 4u; dd++) {
                acc[g * 4u + dd] *= corr;
            }
        }
        for (var dd = 0u; dd < 4u; dd++) {
            let d = lid + dd * WG;
            if (d < HD) {
                for (var jj = 0u; jj < nb; jj++) {
                    let v = v_cache[(b + jj) * kvw + kh * HD + d];
                    for (var g = 0u; g < g_count; g++) {
                        acc[g * 4u + dd] += sc[g * WG + jj] * v;
                    }
                }
            }
        }
        workgroupBarrier();
    }
    for (var g = 0u; g < g_count; g++) {
        let h = kh * g_count + g;
        for (var dd = 0u; dd < 4u; dd++) {
            let d = lid + dd * WG;
            if (d < HD) {
                part_o[(split * NH + h) * HD + d] = acc[g * 4u + dd];
            }
        }
        if (lid == 0u) {
            part_ml[(split * NH + h) * 2u] = m[g];
            part_ml[(split * NH + h) * 2u + 1u] = l[g];
        }
    }
}
