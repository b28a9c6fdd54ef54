//! Gated short convolution over a prefill batch (`shaders/short_conv.wgsl`); decode fuses it
//! into the in_proj GEMV (`Epilogue::ShortConv`). Bindings: params, bcx, conv_w, conv_state, y.

use crate::gpu::KernelSpec;
use crate::gpu::shader::Defines;

pub fn short_conv_spec(h: usize, l: usize) -> KernelSpec {
    KernelSpec::new("short_conv.wgsl", Defines::default())
        .u("H", h)
        .u("L", l)
        .u("WG", 64)
}

pub fn short_conv_groups(h: usize) -> [u32; 3] {
    [h.div_ceil(64) as u32, 1, 1]
}
