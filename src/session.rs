//! A generation session: device-resident conv states, KV ring, token ring and scratch, and the
//! scheduler that records the forward pass (prefill in chunks, decode one submit per token),
//! samples on the GPU and reads back only token ids.
//!
//! Positions: `state.pos` on the GPU (mirrored in `Session::pos`) counts the tokens whose K/V and
//! conv inputs are already in the session. The token at `pos` in the token ring is the pending
//! one: the next decode step embeds it, writes its K/V into the ring, samples the token for
//! `pos + 1` and moves `pos` on. Which keys a token sees, where they live and their RoPE
//! positions follow `shaders/kv.wgsl`: with [`OnFull::Slide`] the first `sinks` tokens and the
//! most recent ones stay, and positions stay below the context however long the session runs.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::config::{LayerKind, Lfm2Config};
use crate::error::{Error, Result};
use crate::gpu::{Dispatch, ReadbackSlot};
use crate::model::{GpuMatrix, GpuModel, Mixer};
use crate::ops::attention::{self, AttnShape, KvType};
use crate::ops::linear::{self, Epilogue};
use crate::ops::sample::{self, SampleParams};
use crate::ops::{Params, State, conv, embed, norm};
use crate::sampling::SamplerConfig;

/// Context LFM2 was trained for: 32,768 tokens (LFM2 model cards). The released configs (and
/// so their GGUFs) say `max_position_embeddings: 128000`, beyond what the models saw.
pub const LFM2_TRAINED_CONTEXT: usize = 32_768;

/// The longest context a session may have: the file's positions, at most the trained context.
pub fn max_context(c: &Lfm2Config) -> usize {
    c.max_position_embeddings.min(LFM2_TRAINED_CONTEXT)
}

/// Sizes of the scratch buffers, in elements (and `f`, bytes per f32).
struct Dims {
    f: u64,
    ch: u64,
    h: u64,
    qd: u64,
    wide: u64,
    v: u64,
}

impl Dims {
    fn new(c: &Lfm2Config, o: &SessionOptions) -> Dims {
        let h = c.hidden_size as u64;
        let (qd, kvd) = (c.q_dim() as u64, c.kv_dim() as u64);
        Dims {
            f: 4,
            ch: o.chunk as u64,
            h,
            qd,
            wide: (3 * h).max(qd + 2 * kvd).max(c.ff_size as u64),
            v: c.vocab_size as u64,
        }
    }
}

/// What happens when the context is full.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum OnFull {
    /// Generation stops with [`StopReason::ContextFull`].
    #[default]
    Stop,
    /// The oldest tokens after the sinks are evicted (StreamingLLM, Xiao et al. 2023).
    Slide,
}

impl OnFull {
    pub fn name(self) -> &'static str {
        match self {
            OnFull::Stop => "stop",
            OnFull::Slide => "slide",
        }
    }
    pub fn parse(s: &str) -> Result<OnFull> {
        match s {
            "stop" => Ok(OnFull::Stop),
            "slide" => Ok(OnFull::Slide),
            _ => Err(Error::InvalidArgument(format!(
                "unknown context policy {s:?} (expected stop or slide)"
            ))),
        }
    }
}

/// Longest prefill chunk accepted (the scratch activations grow with it).
pub const MAX_CHUNK: usize = 1 << 16;

/// How a session is sized.
#[derive(Clone, Debug, PartialEq)]
pub struct SessionOptions {
    /// Tokens a query attends to at most (the context); RoPE positions stay below it.
    pub ctx: usize,
    /// Prefill chunk length.
    pub chunk: usize,
    /// Keep a `[chunk, vocab]` logits buffer so `eval` can return every position's logits.
    pub logits_all: bool,
    /// Storage of the KV ring.
    pub kv: KvType,
    /// What a full context does.
    pub on_full: OnFull,
    /// With [`OnFull::Slide`]: tokens at the start that are never evicted (attention sinks).
    pub sinks: usize,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            ctx: 4096,
            chunk: 128,
            logits_all: false,
            kv: KvType::F16,
            on_full: OnFull::Stop,
            sinks: 4,
        }
    }
}

impl SessionOptions {
    /// The attention geometry and KV ring layout these options give `c`.
    pub fn attn_shape(&self, c: &Lfm2Config) -> AttnShape {
        let slide = self.on_full == OnFull::Slide;
        AttnShape {
            n_heads: c.num_heads,
            n_kv_heads: c.num_kv_heads,
            head_dim: c.head_dim,
            eps: c.norm_eps,
            ctx: self.ctx,
            sinks: if slide { self.sinks } else { 0 },
            slots: if slide {
                self.ctx + self.chunk.saturating_sub(1)
            } else {
                self.ctx
            },
            kv: self.kv,
        }
    }

    /// Length of the device token ring: a batch, the sampled token, and the repetition window.
    pub fn token_ring(&self) -> usize {
        self.chunk + sample::SAMPLE_WG + 2
    }

    /// Checks the options against a model.
    pub fn check(&self, c: &Lfm2Config) -> Result<()> {
        if self.ctx == 0 || self.chunk == 0 {
            return Err(Error::InvalidArgument(
                "context and chunk must be > 0".into(),
            ));
        }
        if self.chunk > MAX_CHUNK {
            return Err(Error::InvalidArgument(format!(
                "a prefill chunk of {} tokens is more than {MAX_CHUNK}",
                self.chunk
            )));
        }
        if self.ctx > max_context(c) {
            return Err(Error::InvalidArgument(format!(
                "a context of {} tokens is more than the {} positions the model was trained on",
                self.ctx,
                max_context(c)
            )));
        }
        if self.on_full == OnFull::Slide && self.sinks >= self.ctx {
            return Err(Error::InvalidArgument(format!(
                "{} sink tokens leave no room for a window in a context of {}",
                self.sinks, self.ctx
            )));
        }
        self.attn_shape(c).check()
    }

    /// Device bytes a session with these options allocates for `c`, by buffer.
    pub fn buffer_plan(&self, c: &Lfm2Config) -> Vec<(&'static str, u64)> {
        let a = self.attn_shape(c);
        let Dims {
            f,
            ch,
            h,
            qd,
            wide,
            v,
        } = Dims::new(c, self);
        let n_attn = c
            .layers
            .iter()
            .filter(|k| **k == LayerKind::Attention)
            .count() as u64;
        let n_conv = c.layers.len() as u64 - n_attn;
        vec![
            ("kv rings", 2 * n_attn * a.ring_bytes()),
            ("conv states", n_conv * (c.conv_kernel as u64 - 1) * h * f),
            ("rope table", (self.ctx * c.head_dim) as u64 * f),
            ("token ring", self.token_ring() as u64 * 4),
            (
                "activations",
                ch * (2 * h + wide + h.max(qd) + qd) * f + h * f,
            ),
            ("logits", if self.logits_all { ch * v * f } else { v * f }),
            (
                "attention splits",
                (a.n_splits() as u64) * (qd + 2 * c.num_heads as u64) * f,
            ),
            ("uniforms and state", 16 + 32 + 16),
        ]
    }

    /// Total of [`SessionOptions::buffer_plan`].
    pub fn device_bytes(&self, c: &Lfm2Config) -> u64 {
        self.buffer_plan(c).iter().map(|(_, b)| b).sum()
    }
}

/// Why generation stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// An end-of-generation token was sampled.
    Eos,
    /// The requested number of tokens was generated.
    Length,
    /// The KV ring is full.
    ContextFull,
    /// The caller asked to stop.
    Cancelled,
}

impl StopReason {
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::Eos => "eos",
            StopReason::Length => "length",
            StopReason::ContextFull => "context_full",
            StopReason::Cancelled => "cancelled",
        }
    }
}

/// What one `generate` call did.
#[derive(Clone, Debug)]
pub struct GenerateStats {
    pub prompt_tokens: usize,
    pub generated: Vec<u32>,
    pub stop: StopReason,
    pub prefill_seconds: f64,
    pub decode_seconds: f64,
    pub submits: usize,
}

impl GenerateStats {
    pub fn prefill_tok_s(&self) -> f64 {
        rate(self.prompt_tokens, self.prefill_seconds)
    }
    /// Decode rate over the tokens after the first (the first comes out of prefill).
    pub fn decode_tok_s(&self) -> f64 {
        rate(self.generated.len().saturating_sub(1), self.decode_seconds)
    }
}

fn rate(n: usize, s: f64) -> f64 {
    if s > 0.0 { n as f64 / s } else { 0.0 }
}

/// What a batch ends with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Tail {
    /// Final norm + head on the last row, then sample the next token.
    Sample,
    /// Nothing: just move `pos` on (a prefill chunk that is not the last).
    Advance,
    /// Final norm + head on every row into `[T, vocab]` logits, then move `pos` on.
    LogitsAll,
}

struct Scratch {
    params: wgpu::Buffer,
    sample_params: wgpu::Buffer,
    state: wgpu::Buffer,
    tokens: wgpu::Buffer,
    /// Residual stream `[chunk, H]`.
    x: wgpu::Buffer,
    /// Normed activations `[chunk, H]`.
    xn: wgpu::Buffer,
    /// Wide activations `[chunk, max(3H, q + 2kv, ff)]`.
    wide: wgpu::Buffer,
    /// Mixer output `[chunk, max(H, q)]`.
    mix: wgpu::Buffer,
    /// Roped queries `[chunk, q]`.
    q: wgpu::Buffer,
    /// Last row after the final norm `[H]`.
    last: wgpu::Buffer,
    /// `[vocab]`, or `[chunk, vocab]` with `logits_all`.
    logits: wgpu::Buffer,
    part_o: wgpu::Buffer,
    part_ml: wgpu::Buffer,
    /// RoPE `(cos, sin)` by position in the window `[ctx, head_dim / 2]`.
    rope: wgpu::Buffer,
    /// Per layer: conv state `[L-1, H]` or (K, V) rings (`shaders/kv.wgsl`).
    layer_state: Vec<(wgpu::Buffer, Option<wgpu::Buffer>)>,
}

/// A session over a [`GpuModel`].
pub struct Session {
    model: Arc<GpuModel>,
    opts: SessionOptions,
    attn: AttnShape,
    s: Scratch,
    plans: HashMap<(usize, Tail), Vec<Dispatch>>,
    slots: [ReadbackSlot; 2],
    /// Mirror of `state.pos`.
    pos: usize,
    /// Tokens at positions `0..=pos` as written to the token ring (the last one pending).
    history: Vec<u32>,
    sampler: SamplerConfig,
    submits: usize,
    /// Length of the device token ring.
    token_ring: usize,
    /// The pending token was sampled by a step drained after a stop and not yet delivered.
    undelivered: bool,
    /// Set by a [`CancelToken`]; checked between prefill chunks and decode steps.
    cancel: Arc<AtomicBool>,
    /// Called with (prompt tokens done, prompt tokens) during a multi-chunk prefill.
    prefill_progress: Option<Box<dyn FnMut(usize, usize) + Send>>,
}

/// Stops a session's generation in progress from anywhere (another thread, a UI callback):
/// `generate` returns [`StopReason::Cancelled`] after the prefill chunk or token in progress,
/// and the session stays usable (what was processed stays processed; see `generate`).
#[derive(Clone, Debug)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Release);
    }
}

impl Session {
    pub fn new(model: Arc<GpuModel>, opts: SessionOptions) -> Result<Session> {
        let c = &model.config;
        opts.check(c)?;
        let attn = opts.attn_shape(c);
        let gpu = &model.gpu;
        let Dims {
            f,
            ch,
            h,
            qd,
            wide,
            v,
        } = Dims::new(c, &opts);
        // Every buffer must fit one binding; say so with the plan rather than fail in wgpu.
        let limit = gpu
            .limits
            .max_storage_buffer_binding_size
            .min(gpu.limits.max_buffer_size);
        let biggest = [
            ("a K or V ring", attn.ring_bytes()),
            ("the RoPE table", (opts.ctx * c.head_dim) as u64 * f),
            (
                "the logits",
                if opts.logits_all { ch * v * f } else { v * f },
            ),
            ("the activations", ch * wide * f),
        ];
        let plan = || crate::memory::MemoryPlan::new(c, model.weight_bytes, opts.clone());
        if let Some((what, bytes)) = biggest.iter().find(|(_, b)| *b > limit) {
            return Err(Error::OutOfMemory(format!(
                "{what} would take {} in one buffer, more than this device's limit of {} (try a shorter --ctx, --kv int8 or a smaller --chunk); the plan:\n{}",
                crate::memory::human_bytes(*bytes),
                crate::memory::human_bytes(limit),
                plan()
            )));
        }
        #[cfg(not(target_arch = "wasm32"))]
        let oom = gpu.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let mut layer_state = Vec::new();
        for (i, kind) in c.layers.iter().enumerate() {
            layer_state.push(match kind {
                LayerKind::Conv => (
                    gpu.storage(
                        &format!("conv_state.{i}"),
                        (c.conv_kernel as u64 - 1) * h * f,
                    ),
                    None,
                ),
                LayerKind::Attention => (
                    gpu.storage(&format!("k_ring.{i}"), attn.ring_bytes()),
                    Some(gpu.storage(&format!("v_ring.{i}"), attn.ring_bytes())),
                ),
            });
        }
        let rope = attention::rope_table(opts.ctx, c.head_dim, c.rope_theta);
        let token_ring = opts.token_ring();
        let s = Scratch {
            params: gpu.uniform("params", 16),
            sample_params: gpu.uniform("sample_params", 32),
            state: gpu.storage("state", 16),
            tokens: gpu.storage("tokens", token_ring as u64 * 4),
            x: gpu.storage("x", ch * h * f),
            xn: gpu.storage("xn", ch * h * f),
            wide: gpu.storage("wide", ch * wide * f),
            mix: gpu.storage("mix", ch * h.max(qd) * f),
            q: gpu.storage("q", ch * qd * f),
            last: gpu.storage("last", h * f),
            logits: gpu.storage("logits", if opts.logits_all { ch * v * f } else { v * f }),
            part_o: gpu.storage("part_o", (attn.n_splits() as u64) * qd * f),
            part_ml: gpu.storage("part_ml", (attn.n_splits() * c.num_heads * 2) as u64 * f),
            rope: gpu.storage_init("rope", bytemuck::cast_slice(&rope)),
            layer_state,
        };
        #[cfg(not(target_arch = "wasm32"))]
        if let Some(e) = crate::platform::block_on(oom.pop()) {
            return Err(Error::OutOfMemory(format!(
                "the device could not allocate the session ({e}); the plan:\n{}",
                plan()
            )));
        }
        let slots = [
            ReadbackSlot::new(gpu, "token_readback_a", 4),
            ReadbackSlot::new(gpu, "token_readback_b", 4),
        ];
        let mut session = Session {
            model,
            opts,
            attn,
            s,
            plans: HashMap::new(),
            slots,
            pos: 0,
            history: Vec::new(),
            sampler: SamplerConfig::default(),
            submits: 0,
            token_ring,
            undelivered: false,
            cancel: Arc::new(AtomicBool::new(false)),
            prefill_progress: None,
        };
        session.set_sampler(SamplerConfig::default())?;
        // Build the decode plan now so pipeline errors surface at creation.
        session.plan(1, Tail::Sample)?;
        Ok(session)
    }

    pub fn model(&self) -> &GpuModel {
        &self.model
    }
    /// The model, shared (to open another session on it, or restore a snapshot).
    pub fn shared_model(&self) -> Arc<GpuModel> {
        self.model.clone()
    }
    pub fn options(&self) -> &SessionOptions {
        &self.opts
    }
    /// Tokens already processed (in the KV ring and conv states).
    pub fn position(&self) -> usize {
        self.pos
    }
    /// Bytes this engine has allocated on the device (weights + session buffers).
    pub fn device_bytes(&self) -> u64 {
        self.model.gpu.bytes.get()
    }
    /// Submits issued so far.
    pub fn submits(&self) -> usize {
        self.submits
    }
    /// Dispatches recorded per decode step.
    pub fn dispatches_per_token(&self) -> usize {
        self.plans.get(&(1, Tail::Sample)).map_or(0, Vec::len)
    }

    /// A handle that stops this session's current (or next started) generation.
    pub fn cancel_token(&self) -> CancelToken {
        CancelToken(self.cancel.clone())
    }

    /// Consumes a pending cancel request.
    fn take_cancel(&self) -> bool {
        self.cancel.swap(false, Ordering::AcqRel)
    }

    /// Sets the callback told of prefill progress (prompt tokens done, total) while a prompt
    /// of several chunks is processed.
    pub fn set_prefill_progress(&mut self, f: Option<Box<dyn FnMut(usize, usize) + Send>>) {
        self.prefill_progress = f;
    }

    fn report_prefill(&mut self, done: usize, total: usize) {
        if let Some(f) = &mut self.prefill_progress {
            f(done, total);
        }
    }

    /// The sampler settings in use.
    pub fn sampler(&self) -> &SamplerConfig {
        &self.sampler
    }

    pub fn set_sampler(&mut self, cfg: SamplerConfig) -> Result<()> {
        cfg.validate()?;
        let p = SampleParams::from(&cfg);
        self.model
            .gpu
            .queue
            .write_buffer(&self.s.sample_params, 0, bytemuck::bytes_of(&p));
        self.sampler = cfg;
        Ok(())
    }

    /// Whether a decode step may run (a stopping ring must not be full).
    fn can_step(&self) -> bool {
        match self.opts.on_full {
            OnFull::Stop => self.pos < self.opts.ctx,
            OnFull::Slide => self.pos + 1 < u32::MAX as usize,
        }
    }

    /// The conv layers' states, read back: per conv layer `[L - 1, H]` (oldest first).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_conv_states(&self) -> Result<Vec<Vec<f32>>> {
        let gpu = &self.model.gpu;
        self.s
            .layer_state
            .iter()
            .filter(|(_, v)| v.is_none())
            .map(|(b, _)| gpu.read_f32(b, 0, b.size() as usize / 4))
            .collect()
    }

    /// Benchmarks only: moves the session to position `n` as if `n` tokens (all id 0) had been
    /// processed, without computing them. The KV ring keeps whatever it holds (zeros in a new
    /// session), which costs attention exactly what real keys would; the output is meaningless.
    #[doc(hidden)]
    pub fn bench_seek(&mut self, n: usize) -> Result<()> {
        if self.opts.on_full == OnFull::Stop && n >= self.opts.ctx {
            return Err(Error::InvalidArgument(format!(
                "cannot seek to {n} in a context of {}",
                self.opts.ctx
            )));
        }
        let st = State {
            pos: n as u32,
            ..Default::default()
        };
        self.model
            .gpu
            .queue
            .write_buffer(&self.s.state, 0, bytemuck::bytes_of(&st));
        self.pos = n;
        self.history = vec![0; n];
        Ok(())
    }

    /// Forgets everything: position 0, zero conv states (the KV ring needs no clearing).
    pub fn reset(&mut self) {
        let gpu = &self.model.gpu;
        gpu.queue
            .write_buffer(&self.s.state, 0, bytemuck::bytes_of(&State::default()));
        for (buf, v) in &self.s.layer_state {
            if v.is_none() {
                let zeros = vec![0u8; buf.size() as usize];
                gpu.queue.write_buffer(buf, 0, &zeros);
            }
        }
        self.pos = 0;
        self.history.clear();
        self.undelivered = false;
    }
}

// Plan building and the scheduler are in session_run.rs to keep files small.
#[path = "session_run.rs"]
mod run;

// Session snapshots (save / restore).
#[path = "session_snapshot.rs"]
#[deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod snapshot;
pub use snapshot::{SNAPSHOT_VERSION, SnapshotBuffer, SnapshotHeader, parse_snapshot};
