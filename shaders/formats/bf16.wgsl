// Block decoder for BF16 weights, two per u32 word: a bf16 is the top half of an f32.
// Needs the override `K` (row length in elements, even). See formats/f32.wgsl for the interface.

const FMT_CHUNK: u32 = 8u;

fn w_row_base(row: u32) -> u32 {
    return row * (K / 2u);
}

fn bf16x2(word: u32) -> vec2<f32> {
    return vec2<f32>(bitcast<f32>(word << 16u), bitcast<f32>(word & 0xffff0000u));
}

fn w_load4(base: u32, k: u32) -> vec4<f32> {
    let i = base + k / 2u;
    return vec4<f32>(bf16x2(w[i]), bf16x2(w[i + 1u]));
}

fn w_chunk_dot(base: u32, c: u32, xoff: u32) -> f32 {
    let k = c * FMT_CHUNK;
    return dot(w_load4(base, k), x_load4(xoff + k)) + dot(w_load4(base, k + 4u), x_load4(xoff + k + 4u));
}
