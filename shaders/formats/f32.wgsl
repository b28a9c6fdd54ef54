// Block decoder for F32 weights. The weight binding `w` is `array<u32>`; each word is one f32.
// Needs the override `K` (row length in elements) from the including kernel.
// Provides: FMT_CHUNK, w_row_base(row), w_load4(base, k), w_chunk_dot(base, c, xoff).

const FMT_CHUNK: u32 = 4u;

fn w_row_base(row: u32) -> u32 {
    return row * K;
}

// Elements k..k+3 of the row starting at word `base` (k % 4 == 0).
fn w_load4(base: u32, k: u32) -> vec4<f32> {
    let i = base + k;
    return bitcast<vec4<f32>>(vec4<u32>(w[i], w[i + 1u], w[i + 2u], w[i + 3u]));
}

// Dot product of chunk `c` of the row with x[xoff + c * FMT_CHUNK ..].
fn w_chunk_dot(base: u32, c: u32, xoff: u32) -> f32 {
    let k = c * FMT_CHUNK;
    return dot(w_load4(base, k), x_load4(xoff + k));
}
