//! Embedding lookup from the token ring (`shaders/embed.wgsl`).
//! Bindings: params, state, tokens, w, x.

use super::format_var;
use crate::error::Result;
use crate::format::QuantFormat;
use crate::gpu::KernelSpec;
use crate::gpu::shader::Defines;

/// The whole table in one binding; `tr` is the token ring's length.
pub fn embed_spec(f: QuantFormat, hidden: usize, vocab: usize, tr: usize) -> Result<KernelSpec> {
    embed_part_spec(f, hidden, 0, vocab, vocab, tr)
}

/// The lookup for rows `row0..row0 + rows` of a `vocab`-row table split across bindings.
pub fn embed_part_spec(
    f: QuantFormat,
    hidden: usize,
    row0: usize,
    rows: usize,
    vocab: usize,
    tr: usize,
) -> Result<KernelSpec> {
    Ok(
        KernelSpec::new("embed.wgsl", Defines::default().var("FMT", format_var(f)?))
            .u("K", hidden)
            .u("V", rows)
            .u("ROW0", row0)
            .u("VT", vocab)
            .u("TR", tr)
            .u("WG", 64),
    )
}

pub fn embed_groups(t: usize) -> [u32; 3] {
    [t as u32, 1, 1]
}
