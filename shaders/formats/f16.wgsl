// Block decoder for F16 weights, two halves per u32 word (no `shader-f16` needed).
// Needs the override `K` (row length in elements, even). See formats/f32.wgsl for the interface.

const FMT_CHUNK: u32 = 8u;

fn w_row_base(row: u32) -> u32 {
    return row * (K / 2u);
}

fn w_load4(base: u32, k: u32) -> vec4<f32> {
    let i = base + k / 2u;
    return vec4<f32>(unpack2x16float(w[i]), unpack2x16float(w[i + 1u]));
}

fn w_chunk_dot(base: u32, c: u32, xoff: u32) -> f32 {
    let k = c * FMT_CHUNK;
    return dot(w_load4(base, k), x_load4(xoff + k)) + dot(w_load4(base, k + 4u), x_load4(xoff + k + 4u));
}
