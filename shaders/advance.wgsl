// Moves the session past a batch that is not sampled from (a prefill chunk that is not the last).

#include "common.wgsl"

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> state: State;

@compute @workgroup_size(1)
fn main() {
    state.pos += params.n_tokens;
}
