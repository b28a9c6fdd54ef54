// Dequant-GEMV for one token (decode): y = epilogue(W · x).
//   w: [NA * N, K] in the format's storage (array<u32>); NA weight rows feed each output row:
//      PLAIN/RESIDUAL: row n; SWIGLU: gate row n and up row N + n (gate and up share one buffer);
//      SHORTCONV: rows n, N + n, 2N + n (the B, C and x parts of in_proj).
//   x: [K] f32;  y: [N] f32 (written at Y_OFF + n; RESIDUAL adds into it).
//   SHORTCONV also: conv_w [NT, L] f32 and conv_state [L - 1, NT] f32 (column 0 = oldest).
// One workgroup computes ROWS output rows; lanes stride over the row's chunks and the partial
// sums meet in a shared-memory tree.

override K: u32;
override N: u32;
override WG: u32 = 64u;
override Y_OFF: u32 = 0u;
// First weight row this dispatch reads (a piece of a stacked matrix read on its own).
override W_ROW0: u32 = 0u;
#if SHORTCONV
override L: u32 = 3u;
// Channels of the whole layer (the conv state's row length); this dispatch computes channels
// Y_OFF .. Y_OFF + N when in_proj is split across bindings.
override NT: u32;
#endif

const ROWS: u32 = 4u;
#if SWIGLU
const NA: u32 = 2u;
#elif SHORTCONV
const NA: u32 = 3u;
#else
const NA: u32 = 1u;
#endif

@group(0) @binding(0) var<storage, read> w: array<u32>;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
#if SHORTCONV
@group(0) @binding(3) var<storage, read> conv_w: array<f32>;
@group(0) @binding(4) var<storage, read_write> conv_state: array<f32>;
#endif

var<workgroup> red: array<f32, WG * 12u>;

#if XCACHE
// Block formats: the current chunk of x is loaded once and shared by the ROWS * NA weight rows
// this lane reduces (the decoders read it through x_load4). Measured on lavapipe: +25-60% for
// the quantized formats, -10-20% for the float ones, which therefore read x directly.
var<private> xc: array<vec4<f32>, 8>;

fn x_load4(i: u32) -> vec4<f32> {
    return xc[(i % FMT_CHUNK) / 4u];
}
#else
fn x_load4(i: u32) -> vec4<f32> {
    return vec4<f32>(x[i], x[i + 1u], x[i + 2u], x[i + 3u]);
}
#endif

#include "formats/{FMT}.wgsl"

fn silu(v: f32) -> f32 {
    return v / (1.0 + exp(-v));
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row0 = wid.x * ROWS;
    var acc: array<f32, 12>;
    for (var i = 0u; i < ROWS * NA; i++) {
        acc[i] = 0.0;
    }
    var bases: array<u32, 12>;
    for (var r = 0u; r < ROWS; r++) {
        let row = min(row0 + r, N - 1u);
        for (var a = 0u; a < NA; a++) {
            bases[r * NA + a] = w_row_base(W_ROW0 + row + a * N);
        }
    }
    let nchunks = K / FMT_CHUNK;
    for (var c = lid; c < nchunks; c += WG) {
#if XCACHE
        for (var j = 0u; j < FMT_CHUNK / 4u; j++) {
            let i = c * FMT_CHUNK + 4u * j;
            xc[j] = vec4<f32>(x[i], x[i + 1u], x[i + 2u], x[i + 3u]);
        }
#endif
        for (var i = 0u; i < ROWS * NA; i++) {
            acc[i] += w_chunk_dot(bases[i], c, 0u);
        }
    }
    for (var i = 0u; i < ROWS * NA; i++) {
        red[i * WG + lid] = acc[i];
    }
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) {
            for (var i = 0u; i < ROWS * NA; i++) {
                red[i * WG + lid] += red[i * WG + lid + s];
            }
        }
        workgroupBarrier();
    }
    if (lid >= ROWS) {
        return;
    }
    let n = row0 + lid;
    if (n >= N) {
        return;
    }
    let s0 = red[(lid * NA) * WG];
#if PLAIN
    y[Y_OFF + n] = s0;
#elif RESIDUAL
    y[Y_OFF + n] += s0;
#elif SWIGLU
    let up = red[(lid * NA + 1u) * WG];
    y[Y_OFF + n] = silu(s0) * up;
#elif SHORTCONV
    let cg = red[(lid * NA + 1u) * WG];
    let xv = red[(lid * NA + 2u) * WG];
    let bx = s0 * xv;
    // conv_out = sum_k w[n, k] * input[t - (L-1) + k]; tap L-1 is the current token.
    let ch = Y_OFF + n;
    var conv = conv_w[ch * L + (L - 1u)] * bx;
    for (var k = 0u; k + 1u < L; k++) {
        conv += conv_w[ch * L + k] * conv_state[k * NT + ch];
    }
    for (var k = 0u; k + 2u < L; k++) {
        conv_state[k * NT + ch] = conv_state[(k + 1u) * NT + ch];
    }
    conv_state[(L - 2u) * NT + ch] = bx;
    y[Y_OFF + n] = cg * conv;
#endif
}
