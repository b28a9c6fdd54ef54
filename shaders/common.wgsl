// Shared declarations. `Params` is written by the CPU before each submit (uniform); `State` is
// advanced by the GPU itself (the sampler moves `pos`), so decode steps need no CPU writes.

struct Params {
    // Tokens in the current batch (1 for decode, the chunk length for prefill).
    n_tokens: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

struct State {
    // Position of the first token of the current batch = tokens already in the KV ring.
    pos: u32,
    // Tokens sampled so far in this session.
    n_sampled: u32,
    _pad0: u32,
    _pad1: u32,
}
