// Block decoder for Q6_K (256 weights per super-block), repacked at upload from 210 to 212
// bytes (53 words): words 0..31: ql[128];  32..47: qh[64];  48..51: scales[16] (int8);
// word 52: d (f16, low half). For half n (0, 1) and group g (0..3) of 32 elements l:
//   q = (ql[64n + 32(g&1) + l] low nibble if g < 2 else high) | ((qh[32n + l] >> 2g) & 3) << 4
//   value = d * scales[8n + 2g + l/16] * (q - 32).
// A chunk is one (n, g) group of 32. Needs override `K` (multiple of 256).

#include "formats/kquant_common.wgsl"

const FMT_CHUNK: u32 = 32u;
const BW: u32 = 53u;

fn w_row_base(row: u32) -> u32 {
    return row * (K / 256u) * BW;
}

fn sbyte(word0: u32, i: u32) -> f32 {
    return f32(bitcast<i32>(byte_at(word0, i) << 24u) >> 24u);
}

// Elements l..l+3 (l % 4 == 0) of group (n, g) as signed 6-bit integers (q - 32).
fn q6k_quads(b: u32, n: u32, g: u32, l: u32) -> vec4<f32> {
    let lo = nibbles(w[b + (64u * n + 32u * (g & 1u) + l) / 4u], g >= 2u);
    let h = w[b + 32u + (32u * n + l) / 4u] >> (2u * g);
    let hi = vec4<u32>(h & 3u, (h >> 8u) & 3u, (h >> 16u) & 3u, (h >> 24u) & 3u);
    return vec4<f32>(lo | (hi << vec4<u32>(4u))) - 32.0;
}

fn w_load4(base: u32, k: u32) -> vec4<f32> {
    let b = base + (k / 256u) * BW;
    let e = k % 256u;
    let n = e / 128u;
    let g = (e % 128u) / 32u;
    let l = e % 32u;
    let d = unpack2x16float(w[b + 52u]).x;
    return q6k_quads(b, n, g, l) * (d * sbyte(b + 48u, 8u * n + 2u * g + l / 16u));
}

fn w_chunk_dot(base: u32, c: u32, xoff: u32) -> f32 {
    let b = base + (c / 8u) * BW;
    let n = (c % 8u) / 4u;
    let g = c % 4u;
    let x0 = xoff + c * 32u;
    var a0 = 0.0;
    var a1 = 0.0;
    for (var i = 0u; i < 4u; i++) {
        a0 += dot(q6k_quads(b, n, g, 4u * i), x_load4(x0 + 4u * i));
        a1 += dot(q6k_quads(b, n, g, 16u + 4u * i), x_load4(x0 + 16u + 4u * i));
    }
    let sc = 8u * n + 2u * g;
    return unpack2x16float(w[b + 52u]).x * (sbyte(b + 48u, sc) * a0 + sbyte(b + 48u, sc + 1u) * a1);
}
