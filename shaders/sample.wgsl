// Sampling on the GPU, one workgroup: repetition penalty, then greedy argmax (temperature 0) or
// temperature -> top-k -> top-p -> min-p -> a seeded draw (the order of Hugging Face's logits
// warpers). Writes the token id into the token ring at pos + n_tokens and advances state.pos, so
// the next decode step reads it without a CPU round trip.
//   logits: [V] f32 (modified in place by the penalty);  tokens: [TR] u32 (ring, recent history).
// top-k and top-p thresholds are found by a 32-step bisection over order-preserving u32 keys of
// the logits (ties at the threshold are all kept). The draw walks the kept mass in index order.

#include "common.wgsl"

struct SampleParams {
    temperature: f32,
    top_k: u32,
    top_p: f32,
    min_p: f32,
    repeat_penalty: f32,
    repeat_last_n: u32,
    seed: u32,
    _pad: u32,
}

override V: u32;
// Length of the token ring: position p is at index p % TR (TR > WG + the longest batch).
override TR: u32;
const WG: u32 = 256u;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<uniform> sp: SampleParams;
@group(0) @binding(2) var<storage, read_write> state: State;
@group(0) @binding(3) var<storage, read_write> tokens: array<u32>;
@group(0) @binding(4) var<storage, read_write> logits: array<f32>;

var<workgroup> redf: array<f32, WG>;
var<workgroup> redu: array<u32, WG>;
var<workgroup> chosen: u32;

fn key_of(v: f32) -> u32 {
    let b = bitcast<u32>(v);
    if ((b & 0x80000000u) != 0u) {
        return ~b;
    }
    return b | 0x80000000u;
}

fn pcg(v: u32) -> u32 {
    let s = v * 747796405u + 2891336453u;
    let w = ((s >> ((s >> 28u) + 4u)) ^ s) * 277803737u;
    return (w >> 22u) ^ w;
}

// Uniform in [0, 1) for the token at `pos` of a session seeded with `seed`.
fn uniform01(seed: u32, pos: u32) -> f32 {
    return f32(pcg(seed ^ pcg(pos + 0x9e3779b9u)) >> 8u) / 16777216.0;
}

fn sum_f(lid: u32, v: f32) -> f32 {
    redf[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) {
            redf[lid] += redf[lid + s];
        }
        workgroupBarrier();
    }
    return workgroupUniformLoad(&redf[0]);
}

fn max_f(lid: u32, v: f32) -> f32 {
    redf[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) {
            redf[lid] = max(redf[lid], redf[lid + s]);
        }
        workgroupBarrier();
    }
    return workgroupUniformLoad(&redf[0]);
}

fn sum_u(lid: u32, v: u32) -> u32 {
    redu[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) {
            redu[lid] += redu[lid + s];
        }
        workgroupBarrier();
    }
    return workgroupUniformLoad(&redu[0]);
}

// Probability weight of logit v relative to the maximum, at temperature T.
fn weight(v: f32, mx: f32) -> f32 {
    return exp((v - mx) / sp.temperature);
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32) {
    let pos_new = state.pos + params.n_tokens;

    // Repetition penalty over the last `repeat_last_n` tokens, once per distinct id.
    if (sp.repeat_penalty != 1.0) {
        let n = min(min(sp.repeat_last_n, WG), pos_new);
        let start = pos_new - n;
        if (lid < n) {
            let id = tokens[(start + lid) % TR];
            var first = true;
            for (var j = 0u; j < lid; j++) {
                if (tokens[(start + j) % TR] == id) {
                    first = false;
                }
            }
            if (first && id < V) {
                let l = logits[id];
                if (l < 0.0) {
                    logits[id] = l * sp.repeat_penalty;
                } else {
                    logits[id] = l / sp.repeat_penalty;
                }
            }
        }
        storageBarrier();
        workgroupBarrier();
    }

    // Maximum (value, lowest index) -> greedy choice and softmax shift.
    var best = -3.4e38;
    var best_i = 0xffffffffu;
    for (var i = lid; i < V; i += WG) {
        let v = logits[i];
        if (v > best) {
            best = v;
            best_i = i;
        }
    }
    let mx = max_f(lid, best);
    if (best != mx) {
        best_i = 0xffffffffu;
    }
    redu[lid] = best_i;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) {
            redu[lid] = min(redu[lid], redu[lid + s]);
        }
        workgroupBarrier();
    }
    let argmax = workgroupUniformLoad(&redu[0]);

    if (sp.temperature <= 0.0 || sp.top_k == 1u) {
        if (lid == 0u) {
            chosen = argmax;
        }
    } else {
        // top-k: the largest key K with count(key >= K) >= k.
        var thr = 0u;
        if (sp.top_k > 0u && sp.top_k < V) {
            for (var bit = 31i; bit >= 0i; bit--) {
                let cand = thr | (1u << u32(bit));
                var c = 0u;
                for (var i = lid; i < V; i += WG) {
                    c += select(0u, 1u, key_of(logits[i]) >= cand);
                }
                if (sum_u(lid, c) >= sp.top_k) {
                    thr = cand;
                }
            }
        }
        // top-p over the top-k survivors: the largest key K whose mass reaches top_p.
        if (sp.top_p < 1.0) {
            var z = 0.0;
            for (var i = lid; i < V; i += WG) {
                let v = logits[i];
                z += select(0.0, weight(v, mx), key_of(v) >= thr);
            }
            let goal = sp.top_p * sum_f(lid, z);
            var thr_p = thr;
            for (var bit = 31i; bit >= 0i; bit--) {
                let cand = thr_p | (1u << u32(bit));
                if (cand < thr) {
                    continue;
                }
                var m = 0.0;
                for (var i = lid; i < V; i += WG) {
                    let v = logits[i];
                    m += select(0.0, weight(v, mx), key_of(v) >= cand);
                }
                if (sum_f(lid, m) >= goal) {
                    thr_p = cand;
                }
            }
            thr = max(thr, thr_p);
        }
        // Draw: lane `lid` owns the contiguous range [lid * per, (lid + 1) * per).
        let per = (V + WG - 1u) / WG;
        let lo = min(lid * per, V);
        let hi = min(lo + per, V);
        var part = 0.0;
        for (var i = lo; i < hi; i++) {
            let v = logits[i];
            let p = weight(v, mx);
            if (key_of(v) >= thr && p >= sp.min_p) {
                part += p;
            }
        }
        redf[lid] = part;
        workgroupBarrier();
        if (lid == 0u) {
            var total = 0.0;
            for (var j = 0u; j < WG; j++) {
                total += redf[j];
            }
            let u = uniform01(sp.seed, pos_new) * total;
            chosen = argmax;
            var acc = 0.0;
            var found = false;
            for (var j = 0u; j < WG && !found; j++) {
                let pj = redf[j];
                if (pj > 0.0 && acc + pj > u) {
                    // The draw lands in lane j's range: walk it.
                    let jl = min(j * per, V);
                    let jh = min(jl + per, V);
                    var a2 = acc;
                    for (var i = jl; i < jh; i++) {
                        let v = logits[i];
                        let p = weight(v, mx);
                        if (key_of(v) >= thr && p >= sp.min_p) {
                            a2 += p;
                            chosen = i;
                            if (a2 > u) {
                                break;
                            }
                        }
                    }
                    found = true;
                }
                acc += pj;
            }
        }
    }
    workgroupBarrier();
    if (lid == 0u) {
        tokens[pos_new % TR] = chosen;
        state.pos = pos_new;
        state.n_sampled += 1u;
    }
}
