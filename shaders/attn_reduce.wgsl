// Merges the flash-decoding splits: out[h] = Σ_s e^(m_s - M) o_s / Σ_s e^(m_s - M) l_s.
//   part_o: [NSPLIT, NH, HD] f32;  part_ml: [NSPLIT, NH, 2] f32;  out: [NH * HD] f32.
// Only splits that hold visible keys take part. One workgroup per query head.

#include "common.wgsl"

override NH: u32;
override HD: u32;
override SPLIT: u32;
override NSPLIT: u32;
override CTX: u32;
const WG: u32 = 64u;

@group(0) @binding(0) var<storage, read> state: State;
@group(0) @binding(1) var<storage, read> part_o: array<f32>;
@group(0) @binding(2) var<storage, read> part_ml: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let h = wid.x;
    // Splits that hold visible keys: min(pos + 1, CTX) of them.
    let used = min(NSPLIT, (min(state.pos + 1u, CTX) - 1u) / SPLIT + 1u);
    var mx = -3.0e38;
    for (var s = 0u; s < used; s++) {
        mx = max(mx, part_ml[(s * NH + h) * 2u]);
    }
    var denom = 0.0;
    for (var s = 0u; s < used; s++) {
        denom += exp(part_ml[(s * NH + h) * 2u] - mx) * part_ml[(s * NH + h) * 2u + 1u];
    }
    for (var d = lid; d < HD; d += WG) {
        var num = 0.0;
        for (var s = 0u; s < used; s++) {
            num += exp(part_ml[(s * NH + h) * 2u] - mx) * part_o[(s * NH + h) * HD + d];
        }
        out[h * HD + d] = num / denom;
    }
}
