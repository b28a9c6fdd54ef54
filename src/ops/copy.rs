//! A plain buffer copy (`shaders/copy.wgsl`), used by the kernel benchmarks to measure the
//! device's copy bandwidth. Bindings: src, dst (both `array<vec4<u32>>`).

use crate::gpu::KernelSpec;
use crate::gpu::shader::Defines;

/// Lanes per copy workgroup.
pub const COPY_WG: usize = 256;

/// Copies `n_vec4` 16-byte elements.
pub fn copy_spec(n_vec4: usize) -> KernelSpec {
    KernelSpec::new("copy.wgsl", Defines::default())
        .u("N", n_vec4)
        .u("WG", COPY_WG)
}

/// One lane per element, the grid capped at 65535 workgroups (lanes then loop).
pub fn copy_groups(n_vec4: usize) -> [u32; 3] {
    [n_vec4.div_ceil(COPY_WG).clamp(1, 65535) as u32, 1, 1]
}
