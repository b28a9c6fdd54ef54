//! Embedding lookup from the token ring (`shaders/embed.wgsl`).
//! Bindings: params, state, tokens, w, x.

use super::format_var;
use crate::error::Result;
use crate::format::QuantFormat;
use crate::gpu::KernelSpec;
use crate::gpu::shader::Defines;

pub fn embed_spec(f: QuantFormat, hidden: usize, vocab: usize) -> Result<KernelSpec> {
    Ok(
        KernelSpec::new("embed.wgsl", Defines::default().var("FMT", format_var(f)?))
            .u("K", hidden)
            .u("V", vocab)
            .u("WG", 64),
    )
}

pub fn embed_groups(t: usize) -> [u32; 3] {
    [t as u32, 1, 1]
}
