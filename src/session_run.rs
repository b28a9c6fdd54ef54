//! The scheduler: plans (recorded dispatch lists), prefill, decode, generate and eval.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;

use super::*;
use crate::platform::Instant;

impl Session {
    /// The dispatch list for a batch of `t` tokens ending with `tail`, built once and cached.
    pub(super) fn plan(&mut self, t: usize, tail: Tail) -> Result<&Vec<Dispatch>> {
        if !self.plans.contains_key(&(t, tail)) {
            let p = self.build_plan(t, tail)?;
            self.plans.insert((t, tail), p);
        }
        Ok(&self.plans[&(t, tail)])
    }

    /// The dispatches of `y = epilogue(m · x)`: one per part of `m` (one unless `m` was split
    /// across bindings). GEMV for one token, GEMM otherwise.
    #[allow(clippy::too_many_arguments)]
    fn linear(
        &self,
        m: &GpuMatrix,
        e: Epilogue,
        t: usize,
        x: &wgpu::Buffer,
        y: &wgpu::Buffer,
        y_stride: usize,
        y_off: usize,
        extra: &[&wgpu::Buffer],
    ) -> Result<Vec<Dispatch>> {
        let gpu = &self.model.gpu;
        // An epilogue that combines the stacked pieces reads them together; a plain product of
        // a stacked matrix (in_proj in prefill) handles each piece on its own, writing piece s
        // at column s * rows.
        let pieces: Vec<usize> = if m.stack == e.rows_per_output() {
            vec![usize::MAX]
        } else if e.rows_per_output() == 1 {
            (0..m.stack).collect()
        } else {
            return Err(Error::Gpu(format!(
                "{e:?} needs {} stacked weight pieces, the matrix has {}",
                e.rows_per_output(),
                m.stack
            )));
        };
        let mut out = Vec::new();
        for p in &m.parts {
            for &piece in &pieces {
                let (w_row0, off) = match piece {
                    usize::MAX => (0, y_off + p.row0),
                    s => (s * p.rows, y_off + s * m.rows + p.row0),
                };
                out.push(if t == 1 {
                    let spec = linear::gemv_spec_split(m.format, e, m.cols, p.rows, off, m.rows)?;
                    let mut b = vec![&p.buf, x, y];
                    b.extend_from_slice(extra);
                    gpu.dispatch(
                        &linear::with_w_row0(spec, w_row0),
                        &b,
                        linear::gemv_groups(p.rows),
                    )?
                } else {
                    let spec = linear::gemm_spec(m.format, e, m.cols, p.rows, y_stride, off)?;
                    gpu.dispatch(
                        &linear::with_w_row0(spec, w_row0),
                        &[&self.s.params, &p.buf, x, y],
                        linear::gemm_groups(p.rows, t),
                    )?
                });
            }
        }
        Ok(out)
    }

    fn build_plan(&self, t: usize, tail: Tail) -> Result<Vec<Dispatch>> {
        let m = &*self.model;
        let gpu = &m.gpu;
        let c = &m.config;
        let s = &self.s;
        let a = &self.attn;
        let (h, qd, kvd, ff) = (c.hidden_size, c.q_dim(), c.kv_dim(), c.ff_size);
        let qkv_w = qd + 2 * kvd;
        let mut d = Vec::new();
        let rms = |x: &wgpu::Buffer, w: &wgpu::Buffer, y: &wgpu::Buffer, last: bool| {
            gpu.dispatch(
                &norm::rms_norm_spec(h, c.norm_eps, last),
                &[&s.params, x, w, y],
                norm::rms_norm_groups(t, last),
            )
        };
        for p in &m.embed.parts {
            d.push(gpu.dispatch(
                &embed::embed_part_spec(
                    m.embed.format,
                    h,
                    p.row0,
                    p.rows,
                    c.vocab_size,
                    self.token_ring,
                )?,
                &[&s.params, &s.state, &s.tokens, &p.buf, &s.x],
                embed::embed_groups(t),
            )?);
        }
        for (layer, (st, st2)) in m.layers.iter().zip(&s.layer_state) {
            d.push(rms(&s.x, &layer.attn_norm, &s.xn, false)?);
            match &layer.mixer {
                Mixer::Conv {
                    conv_w,
                    in_proj,
                    out_proj,
                } => {
                    if t == 1 {
                        d.extend(self.linear(
                            in_proj,
                            Epilogue::ShortConv,
                            1,
                            &s.xn,
                            &s.mix,
                            h,
                            0,
                            &[conv_w, st],
                        )?);
                    } else {
                        d.extend(self.linear(
                            in_proj,
                            Epilogue::Plain,
                            t,
                            &s.xn,
                            &s.wide,
                            3 * h,
                            0,
                            &[],
                        )?);
                        d.push(gpu.dispatch(
                            &conv::short_conv_spec(h, c.conv_kernel),
                            &[&s.params, &s.wide, conv_w, st, &s.mix],
                            conv::short_conv_groups(h),
                        )?);
                    }
                    d.extend(self.linear(
                        out_proj,
                        Epilogue::Residual,
                        t,
                        &s.mix,
                        &s.x,
                        h,
                        0,
                        &[],
                    )?);
                }
                Mixer::Attention {
                    q,
                    k,
                    v,
                    o,
                    q_norm,
                    k_norm,
                } => {
                    let vc = st2
                        .as_ref()
                        .ok_or_else(|| Error::Gpu("attention layer without V ring".into()))?;
                    d.extend(self.linear(q, Epilogue::Plain, t, &s.xn, &s.wide, qkv_w, 0, &[])?);
                    d.extend(self.linear(k, Epilogue::Plain, t, &s.xn, &s.wide, qkv_w, qd, &[])?);
                    d.extend(self.linear(
                        v,
                        Epilogue::Plain,
                        t,
                        &s.xn,
                        &s.wide,
                        qkv_w,
                        qd + kvd,
                        &[],
                    )?);
                    d.push(gpu.dispatch(
                        &attention::prep_spec(a),
                        &[
                            &s.params, &s.state, &s.wide, q_norm, k_norm, &s.rope, &s.q, st, vc,
                        ],
                        attention::prep_groups(a, t),
                    )?);
                    if t == 1 {
                        d.push(gpu.dispatch(
                            &attention::decode_spec(a),
                            &[&s.state, &s.q, st, vc, &s.rope, &s.part_o, &s.part_ml],
                            attention::decode_groups(a),
                        )?);
                        d.push(gpu.dispatch(
                            &attention::reduce_spec(a),
                            &[&s.state, &s.part_o, &s.part_ml, &s.mix],
                            attention::reduce_groups(a),
                        )?);
                    } else {
                        d.push(gpu.dispatch(
                            &attention::prefill_spec(a),
                            &[&s.params, &s.state, &s.q, st, vc, &s.rope, &s.mix],
                            attention::prefill_groups(a, t),
                        )?);
                    }
                    d.extend(self.linear(o, Epilogue::Residual, t, &s.mix, &s.x, h, 0, &[])?);
                }
            }
            d.push(rms(&s.x, &layer.ffn_norm, &s.xn, false)?);
            d.extend(self.linear(
                &layer.gate_up,
                Epilogue::SwiGlu,
                t,
                &s.xn,
                &s.wide,
                ff,
                0,
                &[],
            )?);
            d.extend(self.linear(&layer.down, Epilogue::Residual, t, &s.wide, &s.x, h, 0, &[])?);
        }
        let advance = || gpu.dispatch(&sample::advance_spec(), &[&s.params, &s.state], [1, 1, 1]);
        match tail {
            Tail::Sample => {
                d.push(rms(&s.x, &m.final_norm, &s.last, true)?);
                d.extend(self.linear(
                    m.head(),
                    Epilogue::Plain,
                    1,
                    &s.last,
                    &s.logits,
                    c.vocab_size,
                    0,
                    &[],
                )?);
                d.push(gpu.dispatch(
                    &sample::sample_spec(c.vocab_size, self.token_ring),
                    &[&s.params, &s.sample_params, &s.state, &s.tokens, &s.logits],
                    [1, 1, 1],
                )?);
            }
            Tail::Advance => d.push(advance()?),
            Tail::LogitsAll => {
                d.push(rms(&s.x, &m.final_norm, &s.xn, false)?);
                d.extend(self.linear(
                    m.head(),
                    Epilogue::Plain,
                    t,
                    &s.xn,
                    &s.logits,
                    c.vocab_size,
                    0,
                    &[],
                )?);
                d.push(advance()?);
            }
        }
        Ok(d)
    }

    /// Records one batch into one encoder and submits it; with `readback`, the token sampled
    /// for position `pos + t` is copied into that slot and mapped asynchronously.
    fn submit(
        &mut self,
        t: usize,
        tail: Tail,
        readback: Option<usize>,
    ) -> Result<wgpu::SubmissionIndex> {
        let gpu = self.model.gpu.clone();
        gpu.faults.check()?;
        let params = Params {
            n_tokens: t as u32,
            _pad: [0; 3],
        };
        gpu.queue
            .write_buffer(&self.s.params, 0, bytemuck::bytes_of(&params));
        self.plan(t, tail)?;
        let plan = &self.plans[&(t, tail)];
        let mut enc = gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("lfm step"),
            });
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("lfm forward"),
                timestamp_writes: None,
            });
            for d in plan {
                d.record(&mut pass);
            }
        }
        let new_pos = self.pos + t;
        if let Some(i) = readback {
            self.slots[i].copy_from(
                &mut enc,
                &self.s.tokens,
                (new_pos % self.token_ring) as u64 * 4,
            );
        }
        let idx = gpu.queue.submit([enc.finish()]);
        if let Some(i) = readback {
            self.slots[i].request();
        }
        self.pos = new_pos;
        self.submits += 1;
        Ok(idx)
    }

    /// Waits until every slot's map (requested after submit `idx`) has completed.
    pub(super) async fn await_slots(
        &self,
        slots: &[&ReadbackSlot],
        idx: &wgpu::SubmissionIndex,
    ) -> Result<()> {
        // Natively the map callback only runs inside `poll`; in the browser the event loop runs
        // it while `ready()` is pending.
        #[cfg(not(target_arch = "wasm32"))]
        while slots.iter().any(|s| !s.is_ready()) {
            self.model.gpu.wait_submission(Some(idx.clone()))?;
        }
        #[cfg(target_arch = "wasm32")]
        let _ = idx;
        for s in slots {
            s.ready().await;
        }
        // A map that failed because the device went away is reported as the loss.
        self.model.gpu.faults.check()
    }

    async fn wait_token(&self, slot: usize, idx: &wgpu::SubmissionIndex) -> Result<u32> {
        self.await_slots(&[&self.slots[slot]], idx).await?;
        let b = self.slots[slot].take()?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Checks that `ids` are valid tokens and that the session can take them.
    fn check_tokens(&self, ids: &[u32]) -> Result<()> {
        let v = self.model.config.vocab_size;
        if let Some(bad) = ids.iter().find(|&&i| i as usize >= v) {
            return Err(Error::InvalidArgument(format!(
                "token id {bad} is outside the vocabulary of {v}"
            )));
        }
        if self.opts.on_full == OnFull::Stop && self.pos + ids.len() > self.opts.ctx {
            return Err(Error::InvalidArgument(format!(
                "{} tokens at position {} do not fit the context of {} tokens",
                ids.len(),
                self.pos,
                self.opts.ctx
            )));
        }
        if self.pos as u64 + ids.len() as u64 >= u64::from(u32::MAX) {
            return Err(Error::InvalidArgument(
                "the session has reached 2^32 tokens; reset it".into(),
            ));
        }
        Ok(())
    }

    /// Writes one batch (at most a chunk) into the token ring from the current position.
    fn stage_chunk(&mut self, ids: &[u32]) {
        let tr = self.token_ring;
        let mut at = self.pos % tr;
        let mut rest = ids;
        while !rest.is_empty() {
            let n = rest.len().min(tr - at);
            self.model.gpu.queue.write_buffer(
                &self.s.tokens,
                at as u64 * 4,
                bytemuck::cast_slice(&rest[..n]),
            );
            rest = &rest[n..];
            at = 0;
        }
        self.history.truncate(self.pos);
        self.history.extend_from_slice(ids);
    }

    /// Tokens processed so far (positions `0..position()`).
    pub fn tokens(&self) -> &[u32] {
        &self.history[..self.pos.min(self.history.len())]
    }

    /// Runs `ids` through the model and returns the logits of every one of them, `[T, vocab]`
    /// row-major. Needs `SessionOptions::logits_all`. Logits are read back: this is for
    /// evaluation, not for generation.
    pub fn eval(&mut self, ids: &[u32]) -> Result<Vec<f32>> {
        if !self.opts.logits_all {
            return Err(Error::InvalidArgument(
                "eval needs a session created with logits_all".into(),
            ));
        }
        self.check_tokens(ids)?;
        let v = self.model.config.vocab_size;
        let mut out = Vec::with_capacity(ids.len() * v);
        for chunk in ids.chunks(self.opts.chunk) {
            self.stage_chunk(chunk);
            self.submit(chunk.len(), Tail::LogitsAll, None)?;
            out.extend(
                self.model
                    .gpu
                    .read_f32(&self.s.logits, 0, chunk.len() * v)?,
            );
        }
        Ok(out)
    }

    /// Feeds `prompt` (prefill, in chunks) then decodes up to `max_new` tokens, one submit per
    /// token, calling `on_token` with each sampled id as soon as it is read back; `on_token`
    /// returns `false` to stop (as does a [`CancelToken`], between prefill chunks too).
    /// With an empty prompt, continues from the pending token; a token that was sampled after
    /// a stop but not delivered is delivered first, so stop + continue loses nothing. A stop
    /// during prefill keeps the chunks already processed (`tokens()` says which).
    /// Blocks until done (native only; the browser awaits [`Session::generate_async`]).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn generate(
        &mut self,
        prompt: &[u32],
        max_new: usize,
        stop_at_eog: &dyn Fn(u32) -> bool,
        on_token: &mut dyn FnMut(u32) -> bool,
    ) -> Result<GenerateStats> {
        crate::platform::block_on(self.generate_async(prompt, max_new, stop_at_eog, on_token))
    }

    /// [`Session::generate`] as a future that never blocks: each readback is awaited, so in the
    /// browser the event loop runs (and a stop request can arrive) between tokens.
    pub async fn generate_async(
        &mut self,
        prompt: &[u32],
        max_new: usize,
        stop_at_eog: &dyn Fn(u32) -> bool,
        on_token: &mut dyn FnMut(u32) -> bool,
    ) -> Result<GenerateStats> {
        self.cancel.store(false, Ordering::Release);
        let start = Instant::now();
        let prompt_tokens = prompt.len();
        let mut stats = GenerateStats {
            prompt_tokens,
            generated: Vec::new(),
            stop: StopReason::Length,
            prefill_seconds: 0.0,
            decode_seconds: 0.0,
            submits: 0,
        };
        if max_new == 0 {
            return Ok(stats);
        }
        let submits0 = self.submits;
        let mut inflight: VecDeque<(usize, wgpu::SubmissionIndex)> = VecDeque::new();
        let mut next_slot = 0;
        let undelivered = std::mem::take(&mut self.undelivered);
        if prompt.is_empty() {
            if self.history.len() != self.pos + 1 {
                return Err(Error::InvalidArgument(
                    "empty prompt and no pending token to continue from".into(),
                ));
            }
            if undelivered {
                // Sampled by a step that ran after the last delivered token: its turn now.
                let tok = self.history[self.pos];
                stats.generated.push(tok);
                if !on_token(tok) || self.take_cancel() {
                    stats.stop = StopReason::Cancelled;
                    return Ok(stats);
                }
                if stop_at_eog(tok) {
                    stats.stop = StopReason::Eos;
                    return Ok(stats);
                }
                if stats.generated.len() >= max_new {
                    return Ok(stats);
                }
            }
            if !self.can_step() {
                stats.stop = StopReason::ContextFull;
                return Ok(stats);
            }
            inflight.push_back((next_slot, self.submit(1, Tail::Sample, Some(next_slot))?));
            next_slot ^= 1;
        } else {
            self.check_tokens(prompt)?;
            let chunk = self.opts.chunk;
            let n_chunks = prompt.len().div_ceil(chunk);
            // At most two chunks on the GPU at once, so that a stop request or a lost device is
            // noticed within a chunk and progress can be reported.
            let mut queued: VecDeque<(usize, WorkDone)> = VecDeque::new();
            let mut done = 0;
            for (i, c) in prompt.chunks(chunk).enumerate() {
                if queued.len() == 2
                    && let Some((n, w)) = queued.pop_front()
                {
                    w.wait(self).await?;
                    done += n;
                    self.report_prefill(done, prompt.len());
                }
                if self.take_cancel() {
                    for (_, w) in queued.drain(..) {
                        w.wait(self).await?;
                    }
                    stats.stop = StopReason::Cancelled;
                    stats.prefill_seconds = start.elapsed().as_secs_f64();
                    stats.submits = self.submits - submits0;
                    return Ok(stats);
                }
                self.stage_chunk(c);
                if i + 1 < n_chunks {
                    let idx = self.submit(c.len(), Tail::Advance, None)?;
                    queued.push_back((c.len(), WorkDone::after(self, idx)));
                } else {
                    inflight.push_back((
                        next_slot,
                        self.submit(c.len(), Tail::Sample, Some(next_slot))?,
                    ));
                    next_slot ^= 1;
                }
            }
            if n_chunks > 1 {
                self.report_prefill(prompt.len(), prompt.len());
            }
        }
        let mut first_at = None;
        loop {
            // Keep one step queued behind the one being read back.
            let can_step = stats.generated.len() + inflight.len() < max_new && self.can_step();
            if can_step && inflight.len() < 2 {
                inflight.push_back((next_slot, self.submit(1, Tail::Sample, Some(next_slot))?));
                next_slot ^= 1;
            }
            let Some((slot, idx)) = inflight.pop_front() else {
                stats.stop = StopReason::ContextFull;
                break;
            };
            let tok = self.wait_token(slot, &idx).await?;
            if first_at.is_none() {
                first_at = Some(Instant::now());
            }
            let p = self.pos - inflight.len();
            self.history.truncate(p);
            self.history.push(tok);
            stats.generated.push(tok);
            let keep_going = on_token(tok) && !self.take_cancel();
            if stop_at_eog(tok) {
                stats.stop = StopReason::Eos;
                break;
            }
            if !keep_going {
                stats.stop = StopReason::Cancelled;
                break;
            }
            if stats.generated.len() >= max_new {
                stats.stop = StopReason::Length;
                break;
            }
        }
        // Drain a step still in flight; its effects are already counted in `pos`, and its token
        // is the pending one: delivered first if the session is continued without a prompt.
        while let Some((slot, idx)) = inflight.pop_front() {
            let tok = self.wait_token(slot, &idx).await?;
            let p = self.pos - inflight.len();
            self.history.truncate(p);
            self.history.push(tok);
            self.undelivered = true;
        }
        let end = Instant::now();
        let first = first_at.unwrap_or(end);
        stats.prefill_seconds = first.duration_since(start).as_secs_f64();
        stats.decode_seconds = end.duration_since(first).as_secs_f64();
        stats.submits = self.submits - submits0;
        Ok(stats)
    }
}

impl Session {
    /// For a conversation re-rendered as `full` tokens: keeps the processed prefix that `full`
    /// starts with and returns how many leading tokens of `full` are already in the session; a
    /// conversation that diverged (or nothing new) resets the session and returns 0.
    pub fn reuse_prefix(&mut self, full: &[u32]) -> usize {
        let done = self.tokens();
        if done.len() < full.len() && full.starts_with(done) {
            return done.len();
        }
        self.reset();
        0
    }
}

/// Completion of one submit: natively its submission index (waited for with `poll`); in the
/// browser a future fed by `on_submitted_work_done`, registered right after the submit.
struct WorkDone {
    #[cfg(not(target_arch = "wasm32"))]
    idx: wgpu::SubmissionIndex,
    #[cfg(target_arch = "wasm32")]
    flag: std::sync::Arc<(
        std::sync::atomic::AtomicBool,
        std::sync::Mutex<Option<std::task::Waker>>,
    )>,
}

impl WorkDone {
    fn after(s: &Session, idx: wgpu::SubmissionIndex) -> WorkDone {
        #[cfg(not(target_arch = "wasm32"))]
        {
            let _ = s;
            WorkDone { idx }
        }
        #[cfg(target_arch = "wasm32")]
        {
            let _ = idx;
            let flag = std::sync::Arc::new((
                std::sync::atomic::AtomicBool::new(false),
                std::sync::Mutex::new(None::<std::task::Waker>),
            ));
            let f = flag.clone();
            s.model.gpu.queue.on_submitted_work_done(move || {
                f.0.store(true, Ordering::Release);
                if let Some(w) = f.1.lock().ok().and_then(|mut w| w.take()) {
                    w.wake();
                }
            });
            WorkDone { flag }
        }
    }

    async fn wait(self, s: &Session) -> Result<()> {
        #[cfg(not(target_arch = "wasm32"))]
        {
            s.model.gpu.wait_submission(Some(self.idx))
        }
        #[cfg(target_arch = "wasm32")]
        {
            let _ = s;
            std::future::poll_fn(|cx| {
                if self.flag.0.load(Ordering::Acquire) {
                    return std::task::Poll::Ready(());
                }
                if let Ok(mut w) = self.flag.1.lock() {
                    *w = Some(cx.waker().clone());
                }
                if self.flag.0.load(Ordering::Acquire) {
                    std::task::Poll::Ready(())
                } else {
                    std::task::Poll::Pending
                }
            })
            .await;
            Ok(())
        }
    }
}
