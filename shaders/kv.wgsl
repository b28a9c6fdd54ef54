// The KV ring: where each key/value lives, which keys a query sees, and how stored values are
// decoded. Included by the attention kernels, which declare `k_cache` and `v_cache` (u32 words).
//
// Keys are stored after the per-head norm but before RoPE; they are rotated when read, by their
// position inside the visible window (see ARCHITECTURE.md, "KV ring"). A query at absolute index
// `aq` sees `n = min(aq + 1, CTX)` keys: logical key `j < n` is the token at absolute index
// `j` when `j < SINKS`, else `aq + 1 - n + j` (the most recent ones), and its RoPE position is
// `j` itself; the query's position is `n - 1`. So positions never exceed CTX - 1, however long
// the session runs, and the distance between a query and a window key is their true distance.
// Token `a` lives in slot `a` when `a < SINKS`, else `SINKS + (a - SINKS) % (SLOTS - SINKS)`.
// With `stop` on a full ring SINKS is 0 and SLOTS = CTX, so slot = absolute index.
//
// Storage per slot and KV head (HD values, `HALF = HD / 2`), word w of the head:
//   KV_F32: HD words, value i in word i (bit pattern of the f32).
//   KV_F16: HALF words, word w = pack2x16float(v[w], v[w + HALF]).
//   KV_I8:  HD / 4 words, word w = bytes (v[2w], v[2w+1], v[2w+HALF], v[2w+1+HALF]) as signed
//           int8 of v / scale; the f32 scale (absmax / 127) of each (slot, head) follows all
//           data words, at SLOTS * NKV * HD / 4 + slot * NKV + head.
// A pair (i, i + HALF) is what NeoX RoPE rotates together, so every format reads it at once.

override CTX: u32;
override SINKS: u32;
override SLOTS: u32;

// Keys visible to the query at absolute index `aq`.
fn n_visible(aq: u32) -> u32 {
    return min(aq + 1u, CTX);
}

// Absolute token index of logical key `j` for a query at `aq` that sees `n` keys.
fn key_abs(aq: u32, n: u32, j: u32) -> u32 {
    if (j < SINKS) {
        return j;
    }
    return aq + 1u - n + j;
}

fn slot_of(a: u32) -> u32 {
    if (a < SINKS) {
        return a;
    }
    return SINKS + (a - SINKS) % (SLOTS - SINKS);
}

// Words per slot and head.
fn kv_head_words() -> u32 {
#if KV_F32
    return HD;
#elif KV_F16
    return HD / 2u;
#else
    return HD / 4u;
#endif
}

fn kv_word(slot: u32, kh: u32, w: u32) -> u32 {
    return (slot * NKV + kh) * kv_head_words() + w;
}

fn kv_scale_index(slot: u32, kh: u32) -> u32 {
    return SLOTS * NKV * (HD / 4u) + slot * NKV + kh;
}

fn i8_at(word: u32, b: u32) -> f32 {
    return f32(bitcast<i32>(word << (24u - 8u * b)) >> 24u);
}

// (v[i], v[i + HALF]) of a key without its scale (see k_scale), i < HD / 2.
fn k_pair(slot: u32, kh: u32, i: u32) -> vec2<f32> {
#if KV_F32
    return vec2<f32>(bitcast<f32>(k_cache[kv_word(slot, kh, i)]),
                     bitcast<f32>(k_cache[kv_word(slot, kh, i + HD / 2u)]));
#elif KV_F16
    return unpack2x16float(k_cache[kv_word(slot, kh, i)]);
#else
    let word = k_cache[kv_word(slot, kh, i / 2u)];
    let b = i & 1u;
    return vec2<f32>(i8_at(word, b), i8_at(word, b + 2u));
#endif
}

fn v_pair(slot: u32, kh: u32, i: u32) -> vec2<f32> {
#if KV_F32
    return vec2<f32>(bitcast<f32>(v_cache[kv_word(slot, kh, i)]),
                     bitcast<f32>(v_cache[kv_word(slot, kh, i + HD / 2u)]));
#elif KV_F16
    return unpack2x16float(v_cache[kv_word(slot, kh, i)]);
#else
    let word = v_cache[kv_word(slot, kh, i / 2u)];
    let b = i & 1u;
    return vec2<f32>(i8_at(word, b), i8_at(word, b + 2u));
#endif
}

// Value d (< HD) of a stored value vector, without its scale.
fn v_elem(slot: u32, kh: u32, d: u32) -> f32 {
    let half_d = HD / 2u;
    if (d < half_d) {
        return v_pair(slot, kh, d).x;
    }
    return v_pair(slot, kh, d - half_d).y;
}

fn k_scale(slot: u32, kh: u32) -> f32 {
#if KV_I8
    return bitcast<f32>(k_cache[kv_scale_index(slot, kh)]);
#else
    return 1.0;
#endif
}

fn v_scale(slot: u32, kh: u32) -> f32 {
#if KV_I8
    return bitcast<f32>(v_cache[kv_scale_index(slot, kh)]);
#else
    return 1.0;
#endif
}

// q · RoPE(k, position p) for a key pair-wise: (a, b) = k_pair, (c, s) = rope[p * HALF + i].
fn rope_dot(q_lo: f32, q_hi: f32, k: vec2<f32>, cs: vec2<f32>) -> f32 {
    let lo = k.x * cs.x - k.y * cs.y;
    let hi = k.y * cs.x + k.x * cs.y;
    return q_lo * lo + q_hi * hi;
}
