// Flash-decoding over the KV ring for one query token (decode), split-K with GQA sharing.
//   q: [NH * HD] f32 (normed, roped);  k_cache, v_cache: the ring (kv.wgsl);
//   rope: [CTX, HD / 2] (cos, sin);
//   part_o: [NSPLIT, NH, HD] f32 (unnormalised Σ p·v);  part_ml: [NSPLIT, NH, 2] f32 (max, Σ p).
// Workgroup (s, kh) takes the visible keys [s * SPLIT, (s + 1) * SPLIT) for all G = NH / NKV
// query heads of KV group kh, so each key is read and rotated once per group. attn_reduce.wgsl
// merges the splits. The visible length comes from `state.pos`, so the dispatch never changes.

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
@group(0) @binding(2) var<storage, read> k_cache: array<u32>;
@group(0) @binding(3) var<storage, read> v_cache: array<u32>;
@group(0) @binding(4) var<storage, read> rope: array<vec2<f32>>;
@group(0) @binding(5) var<storage, read_write> part_o: array<f32>;
@group(0) @binding(6) var<storage, read_write> part_ml: array<f32>;

#include "kv.wgsl"

var<workgroup> qs: array<f32, 2048>;    // [G][HD]
var<workgroup> sc: array<f32, 512>;     // [G][WG] probabilities of the current block
var<workgroup> red: array<f32, 512>;    // [G][WG] reduction scratch
var<workgroup> slots: array<u32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let split = wid.x;
    let kh = wid.y;
    let g_count = NH / NKV;
    let aq = state.pos;
    let n_keys = n_visible(aq);
    let half_d = HD / 2u;
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
        var dots: array<f32, MAXG>;
        for (var g = 0u; g < MAXG; g++) {
            dots[g] = 0.0;
        }
        var ks = 0.0;
        var vs = 0.0;
        if (valid) {
            let slot = slot_of(key_abs(aq, n_keys, j));
            for (var i = 0u; i < half_d; i++) {
                let kp = k_pair(slot, kh, i);
                let cs = rope[j * half_d + i];
                let lo = kp.x * cs.x - kp.y * cs.y;
                let hi = kp.y * cs.x + kp.x * cs.y;
                for (var g = 0u; g < g_count; g++) {
                    dots[g] += qs[g * HD + i] * lo + qs[g * HD + i + half_d] * hi;
                }
            }
            ks = k_scale(slot, kh) * SCALE;
            vs = v_scale(slot, kh);
            slots[lid] = slot;
        }
        for (var g = 0u; g < g_count; g++) {
            var s = NEG;
            if (valid) {
                s = dots[g] * ks;
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
            sc[g * WG + lid] = p * vs;
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
                    let v = v_elem(slots[jj], kh, d);
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
