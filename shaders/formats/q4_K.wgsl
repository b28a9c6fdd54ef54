// Block decoder for Q4_K (256 weights per super-block, 144 bytes = 36 words, used as stored):
//   word 0: d | dmin << 16 (f16);  words 1..3: 12 scale bytes;  words 4..35: qs[128].
// Sub-block j (32 weights) uses qs bytes 32*(j/2).. (low nibbles for even j, high for odd);
// value = d * sc_j * q - dmin * m_j. A chunk is one sub-block. Needs override `K` (multiple of 256).

#include "formats/kquant_common.wgsl"

const FMT_CHUNK: u32 = 32u;
const BW: u32 = 36u;

fn w_row_base(row: u32) -> u32 {
    return row * (K / 256u) * BW;
}

fn w_load4(base: u32, k: u32) -> vec4<f32> {
    let b = base + (k / 256u) * BW;
    let j = (k % 256u) / 32u;
    let l = k % 32u;
    let s = kquant_scale(b, j);
    let q = nibbles(w[b + 4u + 8u * (j / 2u) + l / 4u], (j & 1u) == 1u);
    return vec4<f32>(q) * s.x - s.y;
}

fn w_chunk_dot(base: u32, c: u32, xoff: u32) -> f32 {
    let b = base + (c / 8u) * BW;
    let j = c % 8u;
    let s = kquant_scale(b, j);
    let x0 = xoff + c * 32u;
    let qw = b + 4u + 8u * (j / 2u);
    let high = (j & 1u) == 1u;
    var qx = 0.0;
    var sx = 0.0;
    for (var i = 0u; i < 8u; i++) {
        let xv = x_load4(x0 + 4u * i);
        qx += dot(vec4<f32>(nibbles(w[qw + i], high)), xv);
        sx += xv.x + xv.y + xv.z + xv.w;
    }
    return s.x * qx - s.y * sx;
}
