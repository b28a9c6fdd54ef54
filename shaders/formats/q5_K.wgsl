// Block decoder for Q5_K (256 weights per super-block, 176 bytes = 44 words, used as stored):
//   word 0: d | dmin << 16;  words 1..3: 12 scale bytes (as Q4_K);  words 4..11: qh[32];
//   words 12..43: qs[128]. Sub-block j: 4 low bits as Q4_K, 5th bit = bit j of qh[l];
// value = d * sc_j * q - dmin * m_j. Needs override `K` (multiple of 256).

#include "formats/kquant_common.wgsl"

const FMT_CHUNK: u32 = 32u;
const BW: u32 = 44u;

fn w_row_base(row: u32) -> u32 {
    return row * (K / 256u) * BW;
}

// Elements l..l+3 of sub-block j as 5-bit integers.
fn q5k_quads(b: u32, j: u32, l: u32) -> vec4<f32> {
    let lo = nibbles(w[b + 12u + 8u * (j / 2u) + l / 4u], (j & 1u) == 1u);
    let h = w[b + 4u + l / 4u] >> j;
    let hi = vec4<u32>(h & 1u, (h >> 8u) & 1u, (h >> 16u) & 1u, (h >> 24u) & 1u);
    return vec4<f32>(lo + hi * 16u);
}

fn w_load4(base: u32, k: u32) -> vec4<f32> {
    let b = base + (k / 256u) * BW;
    let j = (k % 256u) / 32u;
    let s = kquant_scale(b, j);
    return q5k_quads(b, j, k % 32u) * s.x - s.y;
}

fn w_chunk_dot(base: u32, c: u32, xoff: u32) -> f32 {
    let b = base + (c / 8u) * BW;
    let j = c % 8u;
    let s = kquant_scale(b, j);
    let x0 = xoff + c * 32u;
    var qx = 0.0;
    var sx = 0.0;
    for (var i = 0u; i < 8u; i++) {
        let xv = x_load4(x0 + 4u * i);
        qx += dot(q5k_quads(b, j, 4u * i), xv);
        sx += xv.x + xv.y + xv.z + xv.w;
    }
    return s.x * qx - s.y * sx;
}
