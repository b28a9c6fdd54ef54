// Block decoder for Q8_0 (32 weights per block), repacked at upload to 9 words per block:
//   word 0: d (f16, low half);  words 1..8: qs[32] signed bytes.  value = q * d.
// Needs override `K` (a multiple of 32). Interface: see f32.wgsl.

const FMT_CHUNK: u32 = 32u;
const BW: u32 = 9u;

fn w_row_base(row: u32) -> u32 {
    return row * (K / 32u) * BW;
}

fn i8x4(q: u32) -> vec4<f32> {
    return vec4<f32>(vec4<i32>(
        bitcast<i32>(q << 24u) >> 24u,
        bitcast<i32>(q << 16u) >> 24u,
        bitcast<i32>(q << 8u) >> 24u,
        bitcast<i32>(q) >> 24u,
    ));
}

fn w_load4(base: u32, k: u32) -> vec4<f32> {
    let b = base + (k / 32u) * BW;
    return i8x4(w[b + 1u + (k % 32u) / 4u]) * unpack2x16float(w[b]).x;
}

fn w_chunk_dot(base: u32, c: u32, xoff: u32) -> f32 {
    let b = base + c * BW;
    let x0 = xoff + c * 32u;
    var acc = 0.0;
    for (var i = 0u; i < 8u; i++) {
        acc += dot(i8x4(w[b + 1u + i]), x_load4(x0 + 4u * i));
    }
    return acc * unpack2x16float(w[b]).x;
}
