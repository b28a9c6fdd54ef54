//! `info` and `devices`.

use std::collections::BTreeMap;

use std::io::Write;

use anyhow::Result;
use lfm::gpu::{GpuOptions, list_adapters};

use crate::InfoArgs;
use crate::commands::{human_bytes, open_model};

pub fn info(a: InfoArgs) -> Result<()> {
    let mut out = std::io::stdout().lock();
    let f = open_model(a.model.as_deref())?;
    let c = &f.config;
    writeln!(out, "model:        {}", f.path.display())?;
    writeln!(out, "source:       {:?}", f.kind)?;
    writeln!(out, "architecture: lfm2")?;
    writeln!(
        out,
        "layers:       {} ({} conv + {} attention): {}",
        c.num_layers(),
        c.num_conv_layers(),
        c.num_attention_layers(),
        c.layer_pattern()
    )?;
    writeln!(
        out,
        "hidden {}, ffn {}, heads {} / {} KV (head_dim {}), vocab {}, conv kernel {}",
        c.hidden_size,
        c.ff_size,
        c.num_heads,
        c.num_kv_heads,
        c.head_dim,
        c.vocab_size,
        c.conv_kernel
    )?;
    writeln!(
        out,
        "rope theta {}, rms eps {:e}, max positions {}, tied output: {}",
        c.rope_theta, c.norm_eps, c.max_position_embeddings, c.tie_embeddings
    )?;
    for (k, v) in f.metadata_summary() {
        writeln!(out, "  {k}: {v}")?;
    }
    let mut by_format: BTreeMap<String, (usize, u64)> = BTreeMap::new();
    writeln!(out, "\ntensors:")?;
    for t in f.tensors.values() {
        writeln!(out, "  {:<40} {:<5} {:?}", t.name, t.format.name(), t.shape)?;
        let e = by_format.entry(t.format.name().to_string()).or_default();
        e.0 += 1;
        e.1 += t.len as u64;
    }
    writeln!(out, "formats:")?;
    for (fmt, (n, bytes)) in &by_format {
        writeln!(out, "  {fmt:<5} {n:>4} tensors  {}", human_bytes(*bytes))?;
    }
    writeln!(out, "\nKV bytes per token:")?;
    for kv in lfm::ops::attention::KvType::ALL {
        writeln!(
            out,
            "  {:<9} {:>7} B  ({} at 4K, {} at 32K)",
            format!("as {}:", kv.name()),
            lfm::memory::kv_bytes_per_token(c, kv),
            human_bytes(4096 * lfm::memory::kv_bytes_per_token(c, kv)),
            human_bytes(32768 * lfm::memory::kv_bytes_per_token(c, kv))
        )?;
    }
    let plan = crate::commands::session_options(&f, &a.plan, false, 1)?;
    writeln!(out, "\ndevice memory plan: {plan}")?;
    if let Some(rss) = lfm::platform::peak_rss_bytes() {
        writeln!(out, "\npeak host RSS of this command: {}", human_bytes(rss))?;
    }
    Ok(())
}

pub fn devices() -> Result<()> {
    let mut out = std::io::stdout().lock();
    let adapters = pollster::block_on(list_adapters(&GpuOptions::default()));
    if adapters.is_empty() {
        writeln!(
            out,
            "no GPU adapters found (install a Vulkan driver such as Mesa lavapipe, or set WGPU_BACKEND=gl)"
        )?;
        return Ok(());
    }
    for (i, a) in adapters.iter().enumerate() {
        let info = a.get_info();
        let l = a.limits();
        writeln!(out, "[{i}] {}", info.name)?;
        writeln!(
            out,
            "    backend {:?}, type {:?}, driver {} {}",
            info.backend, info.device_type, info.driver, info.driver_info
        )?;
        let f = a.features();
        let has = |x: wgpu::Features| if f.contains(x) { "yes" } else { "no" };
        writeln!(
            out,
            "    shader-f16: {}, subgroups: {}, timestamp queries: {}",
            has(wgpu::Features::SHADER_F16),
            has(wgpu::Features::SUBGROUP),
            has(wgpu::Features::TIMESTAMP_QUERY)
        )?;
        writeln!(
            out,
            "    max buffer {}, max storage binding {}, storage buffers/stage {}, workgroup storage {} B, invocations/workgroup {}",
            human_bytes(l.max_buffer_size),
            human_bytes(l.max_storage_buffer_binding_size),
            l.max_storage_buffers_per_shader_stage,
            l.max_compute_workgroup_storage_size,
            l.max_compute_invocations_per_workgroup
        )?;
    }
    Ok(())
}
