//! Shader microbenchmarks at the real LFM2 shapes: copy bandwidth, decode GEMV per weight format,
//! the fused short-conv block, attention decode over long KV rings, and sampling.
//!
//! `cargo bench --bench kernels -- [--preset 350m|1.2b] [--reps N]` (default 1.2b, reps sized
//! so each measured pass takes about half a second). Each row records its kernel(s) `reps` times
//! in one compute pass; the pass is timed with GPU timestamp queries (start and end of the pass)
//! when the adapter has `TIMESTAMP_QUERY`, else by the wall clock around submit + wait. A warm-up
//! pass (one call) runs first and is discarded. Weights are random valid blocks in the file
//! layout, repacked to the device layout as the model upload does.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use lfm::QuantFormat;
use lfm::gpu::{DeviceNeeds, Dispatch, Gpu, GpuOptions, ReadbackSlot};
use lfm::ops::attention::{self, AttnShape, KvType};
use lfm::ops::linear::{self, Epilogue};
use lfm::ops::sample::{self, SampleParams};
use lfm::ops::{GPU_FORMATS, copy, layout};

/// Model dimensions of a preset.
#[derive(Clone, Copy, Debug)]
struct Preset {
    name: &'static str,
    hidden: usize,
    ff: usize,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    vocab: usize,
}

const PRESETS: [Preset; 2] = [
    Preset {
        name: "350m",
        hidden: 1024,
        ff: 4608,
        heads: 16,
        kv_heads: 8,
        head_dim: 64,
        vocab: 65536,
    },
    Preset {
        name: "1.2b",
        hidden: 2048,
        ff: 8192,
        heads: 32,
        kv_heads: 8,
        head_dim: 64,
        vocab: 65536,
    },
];

/// Bytes the copy kernel reads (and writes again).
const COPY_BYTES: usize = 64 << 20;
/// Device time a measured pass aims for when `--reps` is not given.
const TARGET_S: f64 = 1.5;
const MAX_REPS: usize = 4096;
/// Tokens of history in front of the sampled position (the repetition-penalty window).
const HISTORY: usize = 64;
const CONV_L: usize = 3;

struct Args {
    preset: Preset,
    reps: Option<usize>,
}

fn parse_args() -> Result<Args> {
    let mut preset = PRESETS[1];
    let mut reps = None;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            // cargo bench passes `--bench` to harness = false targets.
            "--bench" => {}
            "--preset" => {
                let v = it.next().context("--preset needs a value (350m or 1.2b)")?;
                preset = *PRESETS
                    .iter()
                    .find(|p| p.name.eq_ignore_ascii_case(&v))
                    .with_context(|| format!("unknown preset `{v}` (350m or 1.2b)"))?;
            }
            "--reps" => {
                let v = it.next().context("--reps needs a number")?;
                let n: usize = v.parse().with_context(|| format!("--reps `{v}`"))?;
                if n == 0 || n > MAX_REPS {
                    bail!("--reps must be in 1..={MAX_REPS}");
                }
                reps = Some(n);
            }
            other => bail!(
                "unknown argument `{other}`; usage: cargo bench --bench kernels -- [--preset 350m|1.2b] [--reps N]"
            ),
        }
    }
    Ok(Args { preset, reps })
}

// ---- random data (the generator of tests/gpu_common, which benches cannot import) ----

/// Deterministic data (xorshift64*).
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next_u32(&mut self) -> u32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32) as u32
    }
    /// Uniform in [-1, 1).
    fn f(&mut self) -> f32 {
        self.next_u32() as f32 / 2_147_483_648.0 - 1.0
    }
    fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.f() * scale).collect()
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut out = vec![0u8; n];
        for c in out.chunks_mut(4) {
            let r = self.next_u32().to_le_bytes();
            c.copy_from_slice(&r[..c.len()]);
        }
        out
    }
}

/// `n` elements of `format` in the file layout: random valid blocks with sane f16 scales for
/// quantized formats, small random values otherwise.
fn random_weights(format: QuantFormat, n: usize, rng: &mut Rng) -> Vec<u8> {
    lfm::quantize::blocks::random_blocks(format, n, || rng.next_u32())
}

/// Uploads `rows x cols` random weights of `format` in the device layout.
fn upload_weights(
    gpu: &Gpu,
    format: QuantFormat,
    rows: usize,
    cols: usize,
    seed: u64,
) -> wgpu::Buffer {
    let mut rng = Rng::new(seed ^ format.ggml_type() as u64);
    let file = random_weights(format, rows * cols, &mut rng);
    let mut packed = Vec::new();
    layout::repack(format, &file, &mut packed);
    debug_assert_eq!(packed.len(), rows * layout::gpu_row_bytes(format, cols));
    gpu.storage_init("w", &packed)
}

fn upload_f32(gpu: &Gpu, label: &str, v: &[f32]) -> wgpu::Buffer {
    gpu.storage_init(label, bytemuck::cast_slice(v))
}

// ---- timing ----

struct Timestamps {
    set: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    slot: ReadbackSlot,
    period_ns: f64,
}

struct Bench {
    gpu: Arc<Gpu>,
    ts: Option<Timestamps>,
    reps: Option<usize>,
}

/// One measured row: device seconds per call and the reps it was averaged over.
#[derive(Clone, Copy)]
struct Timing {
    us: f64,
    reps: usize,
}

impl Bench {
    fn new(gpu: Arc<Gpu>, reps: Option<usize>) -> Bench {
        let ts = gpu
            .device
            .features()
            .contains(wgpu::Features::TIMESTAMP_QUERY)
            .then(|| Timestamps {
                set: gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
                    label: Some("bench timestamps"),
                    ty: wgpu::QueryType::Timestamp,
                    count: 2,
                }),
                resolve: gpu.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("bench timestamps resolve"),
                    size: 16,
                    usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                    mapped_at_creation: false,
                }),
                slot: ReadbackSlot::new(&gpu, "bench timestamps read", 16),
                period_ns: f64::from(gpu.queue.get_timestamp_period()),
            });
        Bench { gpu, ts, reps }
    }

    /// Seconds for one pass recording `calls` `reps` times.
    fn pass(&self, calls: &[&Dispatch], reps: usize) -> Result<f64> {
        let gpu = &self.gpu;
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("bench"),
                timestamp_writes: self.ts.as_ref().map(|t| wgpu::ComputePassTimestampWrites {
                    query_set: &t.set,
                    beginning_of_pass_write_index: Some(0),
                    end_of_pass_write_index: Some(1),
                }),
            });
            for _ in 0..reps {
                for d in calls {
                    d.record(&mut pass);
                }
            }
        }
        if let Some(t) = &self.ts {
            enc.resolve_query_set(&t.set, 0..2, &t.resolve, 0);
            t.slot.copy_from(&mut enc, &t.resolve, 0);
        }
        let t0 = Instant::now();
        gpu.queue.submit([enc.finish()]);
        match &self.ts {
            Some(t) => {
                t.slot.request();
                gpu.wait_for(|| t.slot.is_ready())?;
                let b = t.slot.take()?;
                let stamp = |i: usize| u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().unwrap());
                let ticks = stamp(1).saturating_sub(stamp(0));
                Ok(ticks as f64 * t.period_ns * 1e-9)
            }
            None => {
                gpu.device
                    .poll(wgpu::PollType::wait_indefinitely())
                    .map_err(|e| anyhow::anyhow!("device poll: {e}"))?;
                Ok(t0.elapsed().as_secs_f64())
            }
        }
    }

    /// Warm-up pass (one call, discarded; sizes `reps` when not fixed), then the measured pass.
    /// `reset` runs before each pass (kernels that move `state.pos`).
    fn measure(&self, calls: &[&Dispatch], reset: &dyn Fn()) -> Result<Timing> {
        reset();
        let warm = self.pass(calls, 1)?;
        let reps = self
            .reps
            .unwrap_or_else(|| ((TARGET_S / warm.max(1e-7)).round() as usize).clamp(3, MAX_REPS));
        reset();
        let t = self.pass(calls, reps)?;
        Ok(Timing {
            us: t / reps as f64 * 1e6,
            reps,
        })
    }
}

fn gbs(bytes: usize, us: f64) -> f64 {
    bytes as f64 / (us * 1e-6) / 1e9
}

fn mb(bytes: usize) -> String {
    format!("{:.2} MB", bytes as f64 / 1e6)
}

// ---- benchmarks ----

fn bench_copy(b: &Bench) -> Result<(Timing, f64)> {
    let gpu = &b.gpu;
    let n = COPY_BYTES / 16;
    let mut rng = Rng::new(1);
    let src = gpu.storage_init("copy src", &rng.bytes(COPY_BYTES));
    let dst = gpu.storage("copy dst", COPY_BYTES as u64);
    let d = gpu.dispatch(&copy::copy_spec(n), &[&src, &dst], copy::copy_groups(n))?;
    let t = b.measure(&[&d], &|| {})?;
    let (want, got) = (
        gpu.read_buffer(&src, 0, COPY_BYTES as u64)?,
        gpu.read_buffer(&dst, 0, COPY_BYTES as u64)?,
    );
    if want != got {
        bail!("copy kernel: dst differs from src");
    }
    Ok((t, gbs(2 * COPY_BYTES, t.us)))
}

struct GemvRow {
    matrix: &'static str,
    epilogue: &'static str,
    rows: usize,
    cols: usize,
    format: QuantFormat,
    bytes: usize,
    timing: Timing,
    note: String,
}

/// The decode GEMV of `rows x cols` weights (`rows` = all weight rows, e.g. 2*ff for gate+up).
fn bench_gemv(
    b: &Bench,
    f: QuantFormat,
    e: Epilogue,
    rows: usize,
    cols: usize,
    seed: u64,
) -> Result<(Timing, usize, String)> {
    let gpu = &b.gpu;
    let n = rows / e.rows_per_output();
    let row_bytes = layout::gpu_row_bytes(f, cols);
    let bytes = rows * row_bytes;
    let mut rng = Rng::new(seed);
    let x = upload_f32(gpu, "x", &rng.vec(cols, 1.0));
    let y = upload_f32(gpu, "y", &rng.vec(n, 1.0));
    let limit = gpu.limits.max_storage_buffer_binding_size as usize;
    let mut dispatches = Vec::new();
    let mut keep = Vec::new();
    let mut note = String::new();
    if bytes > limit && e != Epilogue::Plain {
        bail!(
            "{f} {rows}x{cols} needs a {} binding, the device allows {}",
            mb(bytes),
            mb(limit)
        );
    }
    if e == Epilogue::ShortConv {
        let w = upload_weights(gpu, f, rows, cols, seed);
        let conv_w = upload_f32(gpu, "conv_w", &rng.vec(n * CONV_L, 0.5));
        let conv_state = upload_f32(gpu, "conv_state", &rng.vec(n * (CONV_L - 1), 1.0));
        let spec = linear::gemv_spec(f, e, cols, n, 0)?;
        dispatches.push(gpu.dispatch(
            &spec,
            &[&w, &x, &y, &conv_w, &conv_state],
            linear::gemv_groups(n),
        )?);
        keep.extend([w, conv_w, conv_state]);
    } else if bytes <= limit {
        let w = upload_weights(gpu, f, rows, cols, seed);
        let spec = linear::gemv_spec(f, e, cols, n, 0)?;
        dispatches.push(gpu.dispatch(&spec, &[&w, &x, &y], linear::gemv_groups(n))?);
        keep.push(w);
    } else {
        // Over the binding limit: split by rows across bindings, as the model upload does.
        let per = (limit / row_bytes) / linear::GEMV_ROWS * linear::GEMV_ROWS;
        let mut r0 = 0;
        while r0 < rows {
            let nr = per.min(rows - r0);
            let w = upload_weights(gpu, f, nr, cols, seed + r0 as u64);
            let spec = linear::gemv_spec_split(f, e, cols, nr, r0, rows)?;
            dispatches.push(gpu.dispatch(&spec, &[&w, &x, &y], linear::gemv_groups(nr))?);
            keep.push(w);
            r0 += nr;
        }
        note = format!(
            "split into {} bindings (limit {})",
            dispatches.len(),
            mb(limit)
        );
    }
    let refs: Vec<&Dispatch> = dispatches.iter().collect();
    let t = b.measure(&refs, &|| {})?;
    drop(keep);
    Ok((t, bytes, note))
}

struct AttnRow {
    ctx: usize,
    shape: AttnShape,
    kv_bytes: usize,
    timing: Timing,
}

fn bench_attention(b: &Bench, p: &Preset, ctx: usize, kv: KvType) -> Result<AttnRow> {
    let gpu = &b.gpu;
    let a = AttnShape {
        n_heads: p.heads,
        n_kv_heads: p.kv_heads,
        head_dim: p.head_dim,
        eps: 1e-5,
        ctx,
        sinks: 0,
        slots: ctx,
        kv,
    };
    a.check()?;
    let kvw = p.kv_heads * p.head_dim;
    let qd = p.heads * p.head_dim;
    let mut rng = Rng::new(ctx as u64);
    let state = gpu.storage("state", 16);
    let st = lfm::ops::State {
        pos: (ctx - 1) as u32,
        ..Default::default()
    };
    gpu.queue.write_buffer(&state, 0, bytemuck::bytes_of(&st));
    let q = upload_f32(gpu, "q", &rng.vec(qd, 1.0));
    let k = gpu.storage_init(
        "k_cache",
        bytemuck::cast_slice(&attention::encode_ring(&a, &rng.vec(ctx * kvw, 1.0))),
    );
    let v = gpu.storage_init(
        "v_cache",
        bytemuck::cast_slice(&attention::encode_ring(&a, &rng.vec(ctx * kvw, 1.0))),
    );
    let rope = upload_f32(gpu, "rope", &attention::rope_table(ctx, p.head_dim, 1e6));
    let part_o = gpu.storage("part_o", (a.n_splits() * qd * 4) as u64);
    let part_ml = gpu.storage("part_ml", (a.n_splits() * p.heads * 2 * 4) as u64);
    let out = gpu.storage("out", (qd * 4) as u64);
    let dec = gpu.dispatch(
        &attention::decode_spec(&a),
        &[&state, &q, &k, &v, &rope, &part_o, &part_ml],
        attention::decode_groups(&a),
    )?;
    let red = gpu.dispatch(
        &attention::reduce_spec(&a),
        &[&state, &part_o, &part_ml, &out],
        attention::reduce_groups(&a),
    )?;
    let timing = b.measure(&[&dec, &red], &|| {})?;
    Ok(AttnRow {
        ctx,
        shape: a,
        kv_bytes: 2 * a.ring_bytes() as usize,
        timing,
    })
}

fn bench_sample(b: &Bench, vocab: usize, sp: &SampleParams) -> Result<Timing> {
    let gpu = &b.gpu;
    let mut rng = Rng::new(7);
    let params = gpu.uniform("params", 16);
    let p = lfm::ops::Params {
        n_tokens: 1,
        _pad: [0; 3],
    };
    gpu.queue.write_buffer(&params, 0, bytemuck::bytes_of(&p));
    let spb = gpu.uniform("sample params", std::mem::size_of::<SampleParams>() as u64);
    gpu.queue.write_buffer(&spb, 0, bytemuck::bytes_of(sp));
    let state = gpu.storage("state", 16);
    // History, then room for every call of the longest pass (each call appends one id).
    let tokens: Vec<u32> = (0..HISTORY + MAX_REPS + 8)
        .map(|_| rng.next_u32() % vocab as u32)
        .collect();
    let tokens = gpu.storage_init("tokens", bytemuck::cast_slice(&tokens));
    let logits = upload_f32(gpu, "logits", &rng.vec(vocab, 8.0));
    let d = gpu.dispatch(
        &sample::sample_spec(vocab, HISTORY + MAX_REPS + 8),
        &[&params, &spb, &state, &tokens, &logits],
        [1, 1, 1],
    )?;
    // Each call moves `pos` by one: start every pass at the end of the history.
    let reset = || {
        let st = lfm::ops::State {
            pos: (HISTORY - 1) as u32,
            ..Default::default()
        };
        gpu.queue.write_buffer(&state, 0, bytemuck::bytes_of(&st));
    };
    b.measure(&[&d], &reset)
}

/// The device, and why the large binding was refused (if it was).
fn open_gpu() -> Result<(Gpu, Option<String>)> {
    let opts = GpuOptions {
        timestamps: true,
        ..Default::default()
    };
    // Room for the largest single matrix (the f16 output head of 1.2b, 256 MiB) in one binding;
    // an adapter that cannot grant it gets the defaults and the head is split by rows.
    let big = DeviceNeeds {
        max_binding: 256 << 20,
        max_buffer: 256 << 20,
        ..Default::default()
    };
    match pollster::block_on(Gpu::new(&opts, &big)) {
        Ok(g) => Ok((g, None)),
        Err(e) => Ok((
            pollster::block_on(Gpu::new(&opts, &DeviceNeeds::default()))?,
            Some(e.to_string()),
        )),
    }
}

fn main() -> Result<()> {
    let args = parse_args()?;
    let p = args.preset;
    let (gpu, refused) = open_gpu()?;
    let gpu = Arc::new(gpu);
    let bench = Bench::new(gpu.clone(), args.reps);
    let t_start = Instant::now();

    println!(
        "lfm kernel microbenchmarks, preset {} (hidden {}, ff {}, {} heads / {} KV heads, head_dim {}, vocab {})",
        p.name, p.hidden, p.ff, p.heads, p.kv_heads, p.head_dim, p.vocab
    );
    println!("adapter: {}", gpu.describe());
    match &bench.ts {
        Some(t) => println!(
            "timing: GPU timestamp queries (start/end of one compute pass of `reps` calls, {:.3} ns/tick); warm-up pass discarded",
            t.period_ns
        ),
        None => println!(
            "timing: wall clock around submit + wait (adapter has no TIMESTAMP_QUERY); warm-up pass discarded"
        ),
    }
    match args.reps {
        Some(n) => println!("reps: {n} calls per measured pass"),
        None => println!(
            "reps: auto (about {TARGET_S} s of device time per measured pass, {MAX_REPS} at most)"
        ),
    }
    println!(
        "max storage binding: {}{}; MB = 1e6 bytes, GB/s = 1e9 bytes/s",
        mb(gpu.limits.max_storage_buffer_binding_size as usize),
        match &refused {
            Some(e) => format!(" (a {} binding was refused: {e})", mb(256 << 20)),
            None => String::new(),
        }
    );
    println!();

    // Copy bandwidth.
    let (ct, copy_gbs) = bench_copy(&bench)?;
    println!("copy (shaders/copy.wgsl, dst[i] = src[i] over vec4<u32>)");
    println!(
        "  {:.1} µs/call   {} read + {} written   {:.2} GB/s   reps {}",
        ct.us,
        mb(COPY_BYTES),
        mb(COPY_BYTES),
        copy_gbs,
        ct.reps
    );
    println!();
    let pct = |g: f64| 100.0 * g / copy_gbs;

    // GEMV per format.
    let h = p.hidden;
    let shapes: [(&'static str, Epilogue, &'static str, usize, usize); 4] = [
        ("ffn gate+up", Epilogue::SwiGlu, "SwiGLU", 2 * p.ff, h),
        ("ffn down", Epilogue::Residual, "residual", h, p.ff),
        ("conv in_proj", Epilogue::ShortConv, "short-conv", 3 * h, h),
        ("attn q", Epilogue::Plain, "plain", h, h),
    ];
    let mut rows: Vec<GemvRow> = Vec::new();
    for &f in GPU_FORMATS {
        for (i, &(matrix, e, epilogue, r, c)) in shapes.iter().enumerate() {
            let (timing, bytes, note) = bench_gemv(&bench, f, e, r, c, 100 + i as u64)?;
            rows.push(GemvRow {
                matrix,
                epilogue,
                rows: r,
                cols: c,
                format: f,
                bytes,
                timing,
                note,
            });
        }
    }
    for f in [QuantFormat::Q6K, QuantFormat::F16] {
        let (timing, bytes, note) = bench_gemv(&bench, f, Epilogue::Plain, p.vocab, h, 200)?;
        rows.push(GemvRow {
            matrix: "output head",
            epilogue: "plain",
            rows: p.vocab,
            cols: h,
            format: f,
            bytes,
            timing,
            note,
        });
    }
    println!(
        "GEMV (decode, one token; weights = device-layout weight bytes read per call; % copy = GB/s / copy GB/s)"
    );
    println!(
        "  {:<13} {:<11} {:<15} {:<6} {:>13} {:>11} {:>12} {:>8} {:>6}  note",
        "matrix",
        "epilogue",
        "shape",
        "format",
        "time/call",
        "weights",
        "bandwidth",
        "% copy",
        "reps"
    );
    let print_gemv = |r: &GemvRow| {
        let g = gbs(r.bytes, r.timing.us);
        println!(
            "  {:<13} {:<11} {:<15} {:<6} {:>10.1} µs {:>11} {:>7.2} GB/s {:>6.1} % {:>6}  {}",
            r.matrix,
            r.epilogue,
            format!("[{}, {}]", r.rows, r.cols),
            r.format.name(),
            r.timing.us,
            mb(r.bytes),
            g,
            pct(g),
            r.timing.reps,
            r.note
        );
    };
    for r in &rows {
        print_gemv(r);
    }
    println!();

    println!(
        "fused short-conv block (conv in_proj GEMV with the ShortConv epilogue: B, C, x rows + causal conv L={CONV_L} + state update; the same runs as the `conv in_proj` rows above)"
    );
    for r in rows.iter().filter(|r| {
        r.matrix == "conv in_proj" && matches!(r.format, QuantFormat::Q4_0 | QuantFormat::Q4K)
    }) {
        let g = gbs(r.bytes, r.timing.us);
        println!(
            "  {:<6} [{}, {}]   {:.1} µs/call   weights {}   {:.2} GB/s   {:.1} % of copy",
            r.format.name(),
            r.rows,
            r.cols,
            r.timing.us,
            mb(r.bytes),
            g,
            pct(g)
        );
    }
    println!();

    // Attention decode.
    println!(
        "attention decode (attn_decode + attn_reduce per layer; keys rotated as read; state.pos = context - 1; KV bytes = K + V ring read once per KV group)"
    );
    println!(
        "  {:<5} {:<8} {:<17} {:>13} {:>11} {:>12} {:>8} {:>6}",
        "KV", "context", "splits x keys", "time/layer", "KV read", "bandwidth", "% copy", "reps"
    );
    for kv in KvType::ALL {
        for ctx in [1024, 4096, 16384, 32768] {
            let r = bench_attention(&bench, &p, ctx, kv)?;
            let g = gbs(r.kv_bytes, r.timing.us);
            println!(
                "  {:<5} {:<8} {:<17} {:>10.1} µs {:>11} {:>7.2} GB/s {:>6.1} % {:>6}",
                kv.name(),
                format!("{}K", r.ctx / 1024),
                format!("{} x {}", r.shape.n_splits(), r.shape.split()),
                r.timing.us,
                mb(r.kv_bytes),
                g,
                pct(g),
                r.timing.reps
            );
        }
    }
    println!();

    // Sampling.
    println!(
        "sampling (shaders/sample.wgsl, one workgroup, V = {})",
        p.vocab
    );
    let greedy = SampleParams {
        temperature: 0.0,
        top_k: 0,
        top_p: 1.0,
        min_p: 0.0,
        repeat_penalty: 1.0,
        repeat_last_n: 64,
        seed: 1,
        _pad: 0,
    };
    let full = SampleParams {
        temperature: 0.7,
        top_k: 40,
        top_p: 0.9,
        min_p: 0.05,
        repeat_penalty: 1.1,
        repeat_last_n: 64,
        seed: 1,
        _pad: 0,
    };
    println!(
        "  {:<72} {:>13} {:>16} {:>6}",
        "mode", "time/call", "rate", "reps"
    );
    for (name, sp) in [
        ("greedy", greedy),
        (
            "temp 0.7, top-k 40, top-p 0.9, min-p 0.05, repeat penalty 1.1 (last 64)",
            full,
        ),
    ] {
        let t = bench_sample(&bench, p.vocab, &sp)?;
        println!(
            "  {:<72} {:>10.1} µs {:>10.0} tok/s {:>6}",
            name,
            t.us,
            1e6 / t.us,
            t.reps
        );
    }
    println!();
    println!("total bench time {:.1} s", t_start.elapsed().as_secs_f64());
    Ok(())
}
