//! Device memory plans: what a model and a session will allocate, computed before anything is
//! allocated, and the choice of context and KV type that fits a budget.

use std::fmt;

use crate::config::Lfm2Config;
use crate::error::{Error, Result};
use crate::format::ModelFile;
use crate::ops::attention::KvType;
use crate::ops::layout;
use crate::session::SessionOptions;

/// Device bytes the weights of `file` take once uploaded (repacked block layouts, norms and
/// conv taps as f32), as [`crate::model::GpuModel::upload`] allocates them.
pub fn weight_device_bytes(file: &ModelFile) -> Result<u64> {
    let mut total = 0u64;
    for (name, t) in &file.tensors {
        let vector = name.ends_with("norm.weight") || name.ends_with("shortconv.conv.weight");
        total += if vector {
            t.numel() as u64 * 4
        } else {
            let cols = *t.shape.last().unwrap_or(&0);
            let rows = t.numel() / cols.max(1);
            (layout::gpu_row_bytes(t.format, cols) * rows) as u64
        };
    }
    Ok(total)
}

/// A model's weights plus one session: every device buffer the engine will create.
#[derive(Clone, Debug)]
pub struct MemoryPlan {
    pub weights: u64,
    pub session: Vec<(&'static str, u64)>,
    pub opts: SessionOptions,
    /// KV bytes per token over all attention layers (K and V, scales included).
    pub kv_bytes_per_token: u64,
    pub budget: Option<u64>,
}

impl MemoryPlan {
    pub fn new(c: &Lfm2Config, weights: u64, opts: SessionOptions) -> MemoryPlan {
        MemoryPlan {
            weights,
            session: opts.buffer_plan(c),
            kv_bytes_per_token: kv_bytes_per_token(c, opts.kv),
            opts,
            budget: None,
        }
    }
    pub fn total(&self) -> u64 {
        self.weights + self.session.iter().map(|(_, b)| b).sum::<u64>()
    }
    pub fn fits(&self) -> bool {
        self.budget.is_none_or(|b| self.total() <= b)
    }
}

impl fmt::Display for MemoryPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.opts;
        writeln!(
            f,
            "context {} tokens, KV {}, when full: {}{}, prefill chunk {}",
            o.ctx,
            o.kv.name(),
            o.on_full.name(),
            if o.on_full == crate::session::OnFull::Slide {
                format!(" (keeping {} sink tokens)", o.sinks)
            } else {
                String::new()
            },
            o.chunk
        )?;
        writeln!(f, "  KV per token       {} B", self.kv_bytes_per_token)?;
        writeln!(f, "  weights            {}", human_bytes(self.weights))?;
        for (name, b) in &self.session {
            writeln!(f, "  {name:<18} {}", human_bytes(*b))?;
        }
        write!(f, "  total              {}", human_bytes(self.total()))?;
        if let Some(b) = self.budget {
            write!(
                f,
                " of a {} budget ({})",
                human_bytes(b),
                if self.fits() { "fits" } else { "does not fit" }
            )?;
        }
        Ok(())
    }
}

/// K and V bytes per token over all attention layers.
pub fn kv_bytes_per_token(c: &Lfm2Config, kv: KvType) -> u64 {
    let n_attn = c.num_layers() - c.num_conv_layers();
    (n_attn * kv.token_bytes(c.num_kv_heads, c.head_dim)) as u64
}

/// Smallest context a budget may choose.
pub const MIN_CTX: usize = 256;

/// Chooses the context and KV type that fit `budget` with `weights`.
///
/// `want` gives the policy, chunk and, when `fixed_ctx` / `fixed_kv`, the context and KV type
/// the user asked for. Otherwise the context is the largest that fits, up to the model's trained
/// context; f16 KV is preferred, int8 is chosen when it allows a longer context. When nothing
/// fits (the context asked for, or [`MIN_CTX`]), the error shows the smallest plan computed.
pub fn plan_for_budget(
    c: &Lfm2Config,
    weights: u64,
    budget: u64,
    want: &SessionOptions,
    fixed_ctx: bool,
    fixed_kv: bool,
) -> Result<MemoryPlan> {
    let kinds: Vec<KvType> = if fixed_kv {
        vec![want.kv]
    } else {
        vec![KvType::F16, KvType::Int8]
    };
    let target = if fixed_ctx {
        want.ctx
    } else {
        crate::session::max_context(c)
    };
    let plan = |ctx: usize, kv: KvType| {
        let mut p = MemoryPlan::new(
            c,
            weights,
            SessionOptions {
                ctx,
                kv,
                ..want.clone()
            },
        );
        p.budget = Some(budget);
        p
    };
    let lowest = if fixed_ctx {
        target
    } else {
        MIN_CTX.min(target)
    };
    let mut best: Option<MemoryPlan> = None;
    for &kv in &kinds {
        if !plan(lowest, kv).fits() {
            continue;
        }
        // Largest fitting context in [lowest, target] (bytes grow with the context).
        let (mut lo, mut hi) = (lowest, target);
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            if plan(mid, kv).fits() {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        let ctx = if lo < target && lo >= MIN_CTX {
            lo / MIN_CTX * MIN_CTX
        } else {
            lo
        };
        let p = plan(ctx, kv);
        if best.as_ref().is_none_or(|b| p.opts.ctx > b.opts.ctx) {
            best = Some(p);
        }
    }
    match best {
        Some(p) => Ok(p),
        None => {
            let smallest = plan(lowest, *kinds.last().unwrap_or(&KvType::Int8));
            Err(Error::OutOfMemory(format!(
                "the model does not fit a device memory budget of {}:\n{smallest}",
                human_bytes(budget)
            )))
        }
    }
}

/// Parses a size such as `1GiB`, `512MiB`, `1.5GB`, `800M` or `4096` (bytes).
pub fn parse_bytes(s: &str) -> Result<u64> {
    let t = s.trim();
    let split = t
        .find(|ch: char| !(ch.is_ascii_digit() || ch == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let bad = || {
        Error::InvalidArgument(format!(
            "cannot read {s:?} as a size (examples: 1GiB, 512MiB, 1.5GB, 800M)"
        ))
    };
    let n: f64 = num.parse().map_err(|_| bad())?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "kib" => 1024.0,
        "m" | "mb" => 1e6,
        "mib" => 1024.0 * 1024.0,
        "g" | "gb" => 1e9,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" => 1e12,
        "tib" => 1024f64.powi(4),
        _ => return Err(bad()),
    };
    let v = n * mult;
    if !(1.0..=1e18).contains(&v) {
        return Err(bad());
    }
    Ok(v as u64)
}

pub fn human_bytes(b: u64) -> String {
    let f = b as f64;
    if f >= (1u64 << 30) as f64 {
        format!("{:.2} GiB", f / (1u64 << 30) as f64)
    } else if f >= (1u64 << 20) as f64 {
        format!("{:.1} MiB", f / (1u64 << 20) as f64)
    } else if f >= 1024.0 {
        format!("{:.1} KiB", f / 1024.0)
    } else {
        format!("{b} B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_bytes("1GiB").ok(), Some(1 << 30));
        assert_eq!(parse_bytes("512 MiB").ok(), Some(512 << 20));
        assert_eq!(parse_bytes("1.5GB").ok(), Some(1_500_000_000));
        assert_eq!(parse_bytes("800M").ok(), Some(800_000_000));
        assert_eq!(parse_bytes("4096").ok(), Some(4096));
        for bad in ["", "GiB", "-1GiB", "1 parsec", "1e999", "0"] {
            assert!(parse_bytes(bad).is_err(), "{bad:?} must be rejected");
        }
    }
}
