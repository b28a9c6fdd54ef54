// Embedding lookup: x[t] = dequant(token_embd[tokens[pos + t]]), one workgroup per token.
// The token ids come from the device-resident token ring, so decode needs no CPU write.
//   tokens: [TR] u32 (ring: position p at index p % TR); w: rows ROW0 .. ROW0 + V of the embedding in
//   the format's storage (one part when the table is split across bindings); x: [T, K] f32.
// Only ids in this part's rows are written. An id >= VT (impossible for sampled ids; prompts
// are checked on the CPU) gets a zero row from the part that starts at row 0.

#include "common.wgsl"

override K: u32;
override V: u32;
override ROW0: u32 = 0u;
override VT: u32;
// Length of the token ring: position p is at index p % TR.
override TR: u32;
override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> state: State;
@group(0) @binding(2) var<storage, read> tokens: array<u32>;
@group(0) @binding(3) var<storage, read> w: array<u32>;
@group(0) @binding(4) var<storage, read_write> x: array<f32>;

fn x_load4(i: u32) -> vec4<f32> {
    return vec4<f32>(x[i], x[i + 1u], x[i + 2u], x[i + 3u]);
}

#include "formats/{FMT}.wgsl"

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let t = wid.x;
    if (t >= params.n_tokens) {
        return;
    }
    let id = tokens[(state.pos + t) % TR];
    let mine = id >= ROW0 && id < ROW0 + V;
    if (!mine && !(ROW0 == 0u && id >= VT)) {
        return;
    }
    let base = w_row_base(select(0u, id - ROW0, mine));
    let valid = mine;
    for (var k = lid * 4u; k < K; k += WG * 4u) {
        var v = vec4<f32>(0.0);
        if (valid) {
            v = w_load4(base, k);
        }
        x[t * K + k] = v.x;
        x[t * K + k + 1u] = v.y;
        x[t * K + k + 2u] = v.z;
        x[t * K + k + 3u] = v.w;
    }
}
