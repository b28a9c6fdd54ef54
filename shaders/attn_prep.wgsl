// Attention prep for a batch of tokens: per-head RMSNorm of q and k, NeoX RoPE of q at its
// position in the visible window (kv.wgsl), and the k (normed, not yet rotated) and v write into
// the layer's KV ring in the ring's storage format.
//   qkv: [T, (NH + 2 NKV) * HD] f32 (q | k | v projections);  q_norm, k_norm: [HD] f32;
//   rope: [CTX, HD / 2] (cos, sin);  q_out: [T, NH * HD] f32;  k_cache, v_cache: the ring.
// Workgroup (h, t): h < NH is query head h, h >= NH is KV head h - NH (which also writes v).

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
@group(0) @binding(5) var<storage, read> rope: array<vec2<f32>>;
@group(0) @binding(6) var<storage, read_write> q_out: array<f32>;
@group(0) @binding(7) var<storage, read_write> k_cache: array<u32>;
@group(0) @binding(8) var<storage, read_write> v_cache: array<u32>;

#include "kv.wgsl"

var<workgroup> hv: array<f32, 256>;
var<workgroup> vv: array<f32, 256>;
var<workgroup> red: array<f32, WG>;
var<workgroup> red2: array<f32, WG>;

fn reduce_sum(lid: u32, v: f32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) {
            red[lid] += red[lid + s];
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

// Stores hv (k) and vv (v) of KV head kh at `slot` in the ring's format.
fn store_kv(lid: u32, slot: u32, kh: u32) {
    let half_d = HD / 2u;
#if KV_F32
    for (var i = lid; i < HD; i += WG) {
        k_cache[kv_word(slot, kh, i)] = bitcast<u32>(hv[i]);
        v_cache[kv_word(slot, kh, i)] = bitcast<u32>(vv[i]);
    }
#elif KV_F16
    for (var i = lid; i < half_d; i += WG) {
        k_cache[kv_word(slot, kh, i)] = pack2x16float(vec2<f32>(hv[i], hv[i + half_d]));
        v_cache[kv_word(slot, kh, i)] = pack2x16float(vec2<f32>(vv[i], vv[i + half_d]));
    }
#else
    var mk = 0.0;
    var mv = 0.0;
    for (var i = lid; i < HD; i += WG) {
        mk = max(mk, abs(hv[i]));
        mv = max(mv, abs(vv[i]));
    }
    red[lid] = mk;
    red2[lid] = mv;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) {
            red[lid] = max(red[lid], red[lid + s]);
            red2[lid] = max(red2[lid], red2[lid + s]);
        }
        workgroupBarrier();
    }
    let ak = red[0];
    let av = red2[0];
    let ik = select(0.0, 127.0 / ak, ak > 0.0);
    let iv = select(0.0, 127.0 / av, av > 0.0);
    for (var w = lid; w < HD / 4u; w += WG) {
        let i = 2u * w;
        let kq = vec4<f32>(hv[i], hv[i + 1u], hv[i + half_d], hv[i + 1u + half_d]) * ik;
        let vq = vec4<f32>(vv[i], vv[i + 1u], vv[i + half_d], vv[i + 1u + half_d]) * iv;
        k_cache[kv_word(slot, kh, w)] = pack_i8(kq);
        v_cache[kv_word(slot, kh, w)] = pack_i8(vq);
    }
    if (lid == 0u) {
        k_cache[kv_scale_index(slot, kh)] = bitcast<u32>(ak / 127.0);
        v_cache[kv_scale_index(slot, kh)] = bitcast<u32>(av / 127.0);
    }
#endif
}

// Four values already divided by the scale -> four rounded, clamped int8 bytes (value b in byte b).
fn pack_i8(x: vec4<f32>) -> u32 {
    let q = vec4<i32>(clamp(round(x), vec4<f32>(-127.0), vec4<f32>(127.0)));
    return (u32(q.x) & 0xffu) | ((u32(q.y) & 0xffu) << 8u) | ((u32(q.z) & 0xffu) << 16u)
        | ((u32(q.w) & 0xffu) << 24u);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let h = wid.x;
    let t = wid.y;
    if (t >= params.n_tokens) {
        return;
    }
    let a = state.pos + t;
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
    let inv = inverseSqrt(reduce_sum(lid, ss) / f32(HD) + EPS);
    for (var i = lid; i < HD; i += WG) {
        var wn = k_norm[i];
        if (is_q) {
            wn = q_norm[i];
        }
        hv[i] = hv[i] * inv * wn;
    }
    workgroupBarrier();
    let half_d = HD / 2u;
    if (is_q) {
        let p = n_visible(a) - 1u;
        let o = t * NH * HD + h * HD;
        for (var i = lid; i < half_d; i += WG) {
            let cs = rope[p * half_d + i];
            let x0 = hv[i];
            let x1 = hv[i + half_d];
            q_out[o + i] = x0 * cs.x - x1 * cs.y;
            q_out[o + i + half_d] = x1 * cs.x + x0 * cs.y;
        }
    } else {
        let kh = h - NH;
        let vsrc = row + (NH + NKV) * HD + kh * HD;
        for (var i = lid; i < HD; i += WG) {
            vv[i] = qkv[vsrc + i];
        }
        workgroupBarrier();
        store_kv(lid, slot_of(a), kh);
    }
}
