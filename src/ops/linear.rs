//! Dequant-GEMV (decode, `shaders/gemv.wgsl`) and tiled GEMM (prefill, `shaders/gemm.wgsl`)
//! with their epilogues. One skeleton per kernel; the weight format is an include.

use super::format_var;
use crate::error::Result;
use crate::format::QuantFormat;
use crate::gpu::KernelSpec;
use crate::gpu::shader::Defines;

/// What happens to a row's dot product.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Epilogue {
    /// `y[n] = acc`
    Plain,
    /// `y[n] += acc` (the residual stream)
    Residual,
    /// `y[n] = silu(gate_n) * up_n`, gate rows then up rows in one weight buffer
    SwiGlu,
    /// in_proj B, C, x rows + causal conv + state update (GEMV only; prefill uses
    /// `short_conv.wgsl` after a plain GEMM)
    ShortConv,
}

impl Epilogue {
    pub const ALL: [Epilogue; 4] = [
        Epilogue::Plain,
        Epilogue::Residual,
        Epilogue::SwiGlu,
        Epilogue::ShortConv,
    ];
    /// Weight rows per output row.
    pub fn rows_per_output(self) -> usize {
        match self {
            Epilogue::Plain | Epilogue::Residual => 1,
            Epilogue::SwiGlu => 2,
            Epilogue::ShortConv => 3,
        }
    }
    fn defines(self, f: QuantFormat) -> Result<Defines> {
        Ok(Defines::default()
            .flag("PLAIN", self == Epilogue::Plain)
            .flag("RESIDUAL", self == Epilogue::Residual)
            .flag("SWIGLU", self == Epilogue::SwiGlu)
            .flag("SHORTCONV", self == Epilogue::ShortConv)
            .var("FMT", format_var(f)?))
    }
}

/// Rows computed by one GEMV workgroup (the shader's `ROWS`).
pub const GEMV_ROWS: usize = 4;
/// Lanes per GEMV workgroup.
pub const GEMV_WG: usize = 64;
/// Token x row tile of the GEMM.
pub const GEMM_TILE: usize = 32;

/// GEMV for `n` outputs of length-`k` rows, written at `y_off..`. Bindings: w, x, y
/// [, conv_w, conv_state].
pub fn gemv_spec(
    f: QuantFormat,
    e: Epilogue,
    k: usize,
    n: usize,
    y_off: usize,
) -> Result<KernelSpec> {
    gemv_spec_split(f, e, k, n, y_off, n + y_off)
}

/// [`gemv_spec`] for a part of a matrix split across bindings: for `ShortConv`, `y_off` is also
/// the first channel and the layer has `n_total` channels.
pub fn gemv_spec_split(
    f: QuantFormat,
    e: Epilogue,
    k: usize,
    n: usize,
    y_off: usize,
    n_total: usize,
) -> Result<KernelSpec> {
    // Block formats share one load of each x chunk across the workgroup's rows (gemv.wgsl).
    let defines = e.defines(f)?.flag("XCACHE", f.block_elems() > 1);
    let mut s = KernelSpec::new("gemv.wgsl", defines)
        .u("K", k)
        .u("N", n)
        .u("WG", GEMV_WG)
        .u("Y_OFF", y_off);
    if e == Epilogue::ShortConv {
        s = s.u("L", 3).u("NT", n_total);
    }
    Ok(s)
}

pub fn gemv_groups(n: usize) -> [u32; 3] {
    [n.div_ceil(GEMV_ROWS) as u32, 1, 1]
}

/// Reads weight rows from `w_row0` on (one piece of a stacked matrix on its own).
pub fn with_w_row0(spec: KernelSpec, w_row0: usize) -> KernelSpec {
    if w_row0 == 0 {
        spec
    } else {
        spec.u("W_ROW0", w_row0)
    }
}

/// GEMM for `t` tokens. Bindings: params, w, x, y. `y_stride` is the output row length.
pub fn gemm_spec(
    f: QuantFormat,
    e: Epilogue,
    k: usize,
    n: usize,
    y_stride: usize,
    y_off: usize,
) -> Result<KernelSpec> {
    Ok(KernelSpec::new("gemm.wgsl", e.defines(f)?)
        .u("K", k)
        .u("N", n)
        .u("Y_STRIDE", y_stride)
        .u("Y_OFF", y_off))
}

pub fn gemm_groups(n: usize, t: usize) -> [u32; 3] {
    [
        n.div_ceil(GEMM_TILE) as u32,
        t.div_ceil(GEMM_TILE) as u32,
        1,
    ]
}
