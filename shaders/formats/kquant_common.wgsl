// Helpers shared by the K-quant decoders: byte access into the word-packed weights and the
// 6-bit scale/min unpacking of Q4_K and Q5_K (12 bytes: sc0..3 | m0..3 low 6 bits with the top
// 2 bits of sc4..7 / m4..7 in bits 6-7, then the low nibbles of sc4..7 and m4..7).

fn byte_at(word0: u32, i: u32) -> u32 {
    return (w[word0 + i / 4u] >> (8u * (i % 4u))) & 255u;
}

// (scale, min) of sub-block j (0..7); the 12 scale bytes start at word `sw`.
fn scale_min_k4(sw: u32, j: u32) -> vec2<f32> {
    if (j < 4u) {
        return vec2<f32>(f32(byte_at(sw, j) & 63u), f32(byte_at(sw, j + 4u) & 63u));
    }
    let sc = (byte_at(sw, j + 4u) & 15u) | ((byte_at(sw, j - 4u) >> 6u) << 4u);
    let m = (byte_at(sw, j + 4u) >> 4u) | ((byte_at(sw, j) >> 6u) << 4u);
    return vec2<f32>(f32(sc), f32(m));
}

// Four 4-bit values from bytes of word q, low or high nibbles.
fn nibbles(q: u32, high: bool) -> vec4<u32> {
    let s = select(0u, 4u, high);
    return vec4<u32>((q >> s) & 15u, (q >> (8u + s)) & 15u, (q >> (16u + s)) & 15u, (q >> (24u + s)) & 15u);
}

// (d * sc_j, dmin * m_j) of sub-block j of the Q4_K/Q5_K super-block at word b (d | dmin << 16
// in word 0, the 12 scale bytes from word 1).
fn kquant_scale(b: u32, j: u32) -> vec2<f32> {
    let dm = unpack2x16float(w[b]);
    let sm = scale_min_k4(b + 1u, j);
    return vec2<f32>(dm.x * sm.x, dm.y * sm.y);
}
