//! RMSNorm (`shaders/rms_norm.wgsl`). Bindings: params, x, weight, y.

use crate::gpu::KernelSpec;
use crate::gpu::shader::Defines;

/// `last_row`: normalise only row `n_tokens - 1` into a `[H]` output (the final norm before
/// the output head after prefill).
pub fn rms_norm_spec(h: usize, eps: f32, last_row: bool) -> KernelSpec {
    KernelSpec::new(
        "rms_norm.wgsl",
        Defines::default().flag("LAST_ROW", last_row),
    )
    .u("H", h)
    .c("EPS", eps)
    .u("WG", 64)
}

pub fn rms_norm_groups(t: usize, last_row: bool) -> [u32; 3] {
    [if last_row { 1 } else { t as u32 }, 1, 1]
}
