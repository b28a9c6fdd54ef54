// Block decoder for Q4_0 (32 weights per block), repacked at upload to 5 words per block:
//   word 0: d (f16, low half);  words 1..4: qs[16] (byte j: element j low nibble, j+16 high).
// value = (nibble - 8) * d. Needs override `K` (a multiple of 32). Interface: see f32.wgsl.

const FMT_CHUNK: u32 = 32u;
const BW: u32 = 5u;

fn w_row_base(row: u32) -> u32 {
    return row * (K / 32u) * BW;
}

fn nib_lo(q: u32) -> vec4<f32> {
    return vec4<f32>(vec4<u32>(q & 15u, (q >> 8u) & 15u, (q >> 16u) & 15u, (q >> 24u) & 15u)) - 8.0;
}

fn nib_hi(q: u32) -> vec4<f32> {
    return vec4<f32>(vec4<u32>((q >> 4u) & 15u, (q >> 12u) & 15u, (q >> 20u) & 15u, q >> 28u)) - 8.0;
}

fn w_load4(base: u32, k: u32) -> vec4<f32> {
    let b = base + (k / 32u) * BW;
    let o = k % 32u;
    let d = unpack2x16float(w[b]).x;
    if (o < 16u) {
        return nib_lo(w[b + 1u + o / 4u]) * d;
    }
    return nib_hi(w[b + 1u + (o - 16u) / 4u]) * d;
}

fn w_chunk_dot(base: u32, c: u32, xoff: u32) -> f32 {
    let b = base + c * BW;
    let x0 = xoff + c * 32u;
    var acc = 0.0;
    for (var i = 0u; i < 4u; i++) {
        let q = w[b + 1u + i];
        acc += dot(nib_lo(q), x_load4(x0 + 4u * i)) + dot(nib_hi(q), x_load4(x0 + 16u + 4u * i));
    }
    return acc * unpack2x16float(w[b]).x;
}
