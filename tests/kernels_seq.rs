//! Sequence kernels against their CPU references on every test backend: the prefill short
//! convolution across chunk boundaries, attention prep + causal prefill + split-K decode over
//! the KV ring (every storage type; filled to capacity, and sliding with sinks), and GPU
//! sampling.

mod gpu_common;

use gpu_common::*;
use lfm::ops::attention::{self as attn, AttnShape};
use lfm::ops::sample::{self, SampleParams};
use lfm::ops::{self, conv};
use lfm::reference::ops as cpu;

#[test]
fn short_conv_prefill_carries_state_across_chunks() {
    for (backend, gpu) in gpus() {
        let mut rng = Rng::new(10);
        let h = 67;
        let conv_w = rng.vec(h * 3, 1.0);
        let (cwb, stb) = (
            upload(&gpu, &conv_w),
            gpu.storage("state", (2 * h * 4) as u64),
        );
        let mut cpu_state = vec![0.0f32; 2 * h]; // [H, L-1]
        let pb = params(&gpu, 1);
        for t in [5, 1, 9] {
            let bcx = rng.vec(t * 3 * h, 1.0);
            let bb = upload(&gpu, &bcx);
            let yb = gpu.storage("y", (t * h * 4) as u64);
            set_params(&gpu, &pb, t);
            let d = gpu
                .dispatch(
                    &conv::short_conv_spec(h, 3),
                    &[&pb, &bb, &cwb, &stb, &yb],
                    conv::short_conv_groups(h),
                )
                .expect("dispatch");
            gpu.run_blocking(&[&d]).expect("run");
            let want = cpu::short_conv_seq(&mut cpu_state, &bcx, &conv_w, h, t);
            assert_close(
                &format!("{backend} short_conv chunk of {t}"),
                &read(&gpu, &yb, t * h),
                &want,
                1e-5,
            );
        }
    }
}

/// Reference q/k after the per-head norm, rotated to `pos` when given.
fn prep_cpu(x: &[f32], heads: usize, hd: usize, w: &[f32], pos: Option<usize>) -> Vec<f32> {
    let mut v = x.to_vec();
    cpu::head_rms_norm(&mut v, heads, hd, w, 1e-5);
    if let Some(p) = pos {
        cpu::rope_neox(&mut v, heads, hd, p, 1e6);
    }
    v
}

/// Slot of absolute token `a` (the rule of shaders/kv.wgsl, restated).
fn slot_of(a: &AttnShape, t: usize) -> usize {
    if t < a.sinks {
        t
    } else {
        a.sinks + (t - a.sinks) % (a.slots - a.sinks)
    }
}

/// Prep + prefill/decode over a ring, batch by batch, for every KV type and both ring policies:
/// `stop` filled exactly to capacity, and `slide` (4 sinks, a 40-token window, chunks of 16)
/// driven to 3.5 times its context so that slots wrap and keys are evicted. Checks: roped q;
/// the ring's contents against the CPU's normed keys and values (exact for f32, within the
/// format's rounding otherwise); attention against the CPU's windowed attention over the
/// values the ring actually holds (so the check is tight for every format).
#[test]
fn attention_over_the_kv_ring_every_type_and_policy() {
    for (backend, gpu) in gpus() {
        for kv in attn::KvType::ALL {
            for (nh, nkv, slide) in [(4, 2, false), (4, 1, false), (4, 2, true), (8, 2, true)] {
                let mut rng = Rng::new(11 + nkv as u64 + nh as u64);
                let hd = 16;
                let (ctx, sinks, chunk) = if slide { (40, 4, 16) } else { (70, 0, 40) };
                let a = AttnShape {
                    n_heads: nh,
                    n_kv_heads: nkv,
                    head_dim: hd,
                    eps: 1e-5,
                    ctx,
                    sinks,
                    slots: if slide { ctx + chunk - 1 } else { ctx },
                    kv,
                };
                a.check().expect("shape");
                let (qd, kvd) = (nh * hd, nkv * hd);
                let w_q = rng.vec(hd, 1.0);
                let w_k = rng.vec(hd, 1.0);
                let rope = attn::rope_table(ctx, hd, 1e6);
                let (qnb, knb, rb) = (upload(&gpu, &w_q), upload(&gpu, &w_k), upload(&gpu, &rope));
                let kc = gpu.storage("k", a.ring_bytes());
                let vc = gpu.storage("v", a.ring_bytes());
                let qkvb = gpu.storage("qkv", (chunk * (qd + 2 * kvd) * 4) as u64);
                let qb = gpu.storage("q", (chunk * qd * 4) as u64);
                let ob = gpu.storage("out", (chunk * qd * 4) as u64);
                let po = gpu.storage("part_o", (a.n_splits() * qd * 4) as u64);
                let pml = gpu.storage("part_ml", (a.n_splits() * nh * 2 * 4) as u64);
                let (pb, sb) = (params(&gpu, 1), state(&gpu, 0));
                let (mut kcpu, mut vcpu) = (Vec::new(), Vec::new());
                let mut pos = 0;
                let batches: &[usize] = if slide {
                    &[16, 16, 16, 1, 1, 16, 5, 1, 16, 16, 16, 1, 16, 1]
                } else {
                    &[40, 29, 1]
                };
                for &t in batches {
                    let qkv = rng.vec(t * (qd + 2 * kvd), 1.0);
                    gpu.queue.write_buffer(&qkvb, 0, bytemuck::cast_slice(&qkv));
                    set_params(&gpu, &pb, t);
                    set_state(&gpu, &sb, pos);
                    let prep = gpu
                        .dispatch(
                            &attn::prep_spec(&a),
                            &[&pb, &sb, &qkvb, &qnb, &knb, &rb, &qb, &kc, &vc],
                            attn::prep_groups(&a, t),
                        )
                        .expect("prep");
                    if t > 1 {
                        let pre = gpu
                            .dispatch(
                                &attn::prefill_spec(&a),
                                &[&pb, &sb, &qb, &kc, &vc, &rb, &ob],
                                attn::prefill_groups(&a, t),
                            )
                            .expect("prefill");
                        gpu.run_blocking(&[&prep, &pre]).expect("run");
                    } else {
                        let dec = gpu
                            .dispatch(
                                &attn::decode_spec(&a),
                                &[&sb, &qb, &kc, &vc, &rb, &po, &pml],
                                attn::decode_groups(&a),
                            )
                            .expect("decode");
                        let red = gpu
                            .dispatch(
                                &attn::reduce_spec(&a),
                                &[&sb, &po, &pml, &ob],
                                attn::reduce_groups(&a),
                            )
                            .expect("reduce");
                        gpu.run_blocking(&[&prep, &dec, &red]).expect("run");
                    }
                    let got_q = read(&gpu, &qb, t * qd);
                    let got_o = read(&gpu, &ob, t * qd);
                    let words = |b: &wgpu::Buffer| -> Vec<u32> {
                        let bytes = gpu.read_buffer(b, 0, a.ring_bytes()).expect("read ring");
                        bytemuck::cast_slice(&bytes).to_vec()
                    };
                    let (kring, vring) = (
                        attn::decode_ring(&a, &words(&kc)),
                        attn::decode_ring(&a, &words(&vc)),
                    );
                    for ti in 0..t {
                        let row = &qkv[ti * (qd + 2 * kvd)..(ti + 1) * (qd + 2 * kvd)];
                        kcpu.extend(prep_cpu(&row[qd..qd + kvd], nkv, hd, &w_k, None));
                        vcpu.extend_from_slice(&row[qd + kvd..]);
                    }
                    // What the ring holds, by absolute index, for tokens still in it.
                    let end = pos + t;
                    let (mut kh, mut vh) = (vec![f32::NAN; end * kvd], vec![f32::NAN; end * kvd]);
                    for tok in 0..end {
                        let live = tok < a.sinks || end - tok <= a.slots - a.sinks;
                        if live {
                            let sl = slot_of(&a, tok);
                            kh[tok * kvd..(tok + 1) * kvd]
                                .copy_from_slice(&kring[sl * kvd..(sl + 1) * kvd]);
                            vh[tok * kvd..(tok + 1) * kvd]
                                .copy_from_slice(&vring[sl * kvd..(sl + 1) * kvd]);
                        }
                    }
                    // The batch's own keys went in rounded through the format.
                    let mut kw = kcpu[pos * kvd..end * kvd].to_vec();
                    let mut vw = vcpu[pos * kvd..end * kvd].to_vec();
                    cpu::kv_round_trip(kv, &mut kw, t * nkv, hd);
                    cpu::kv_round_trip(kv, &mut vw, t * nkv, hd);
                    // int8: a value on a rounding boundary may land one step away.
                    let tol = match kv {
                        attn::KvType::F32 => 1e-5,
                        attn::KvType::F16 => 2e-3,
                        attn::KvType::Int8 => 0.04,
                    };
                    let what = format!(
                        "{backend} {} nh={nh} nkv={nkv} slide={slide} t={t} pos={pos}",
                        kv.name()
                    );
                    assert_close(&format!("{what} k ring"), &kh[pos * kvd..], &kw, tol);
                    assert_close(&format!("{what} v ring"), &vh[pos * kvd..], &vw, tol);
                    for ti in 0..t {
                        let p = pos + ti;
                        let row = &qkv[ti * (qd + 2 * kvd)..(ti + 1) * (qd + 2 * kvd)];
                        let q0 = prep_cpu(&row[..qd], nh, hd, &w_q, None);
                        let q = prep_cpu(&row[..qd], nh, hd, &w_q, Some((p + 1).min(ctx) - 1));
                        let what = format!("{what} query {p}");
                        assert_close(
                            &format!("{what} q"),
                            &got_q[ti * qd..(ti + 1) * qd],
                            &q,
                            1e-5,
                        );
                        let want = cpu::windowed_attention(
                            &q0,
                            &kh,
                            &vh,
                            p,
                            (ctx, sinks),
                            (nh, nkv, hd),
                            1e6,
                        );
                        assert_close(
                            &format!("{what} attention"),
                            &got_o[ti * qd..(ti + 1) * qd],
                            &want,
                            3e-5,
                        );
                    }
                    pos += t;
                }
                if slide {
                    assert!(pos > 3 * ctx, "the window must have slid");
                } else {
                    assert_eq!(pos, ctx, "the ring must be exactly full");
                }
            }
        }
    }
}

struct Sampler {
    gpu: std::sync::Arc<lfm::gpu::Gpu>,
    d: lfm::gpu::Dispatch,
    sp: wgpu::Buffer,
    st: wgpu::Buffer,
    tokens: wgpu::Buffer,
    logits: wgpu::Buffer,
}

impl Sampler {
    fn new(gpu: std::sync::Arc<lfm::gpu::Gpu>, v: usize) -> Sampler {
        let pb = params(&gpu, 1);
        let sp = gpu.uniform("sp", 32);
        let st = state(&gpu, 0);
        let tokens = gpu.storage("tokens", 4096 * 4);
        let logits = gpu.storage("logits", (v * 4) as u64);
        let d = gpu
            .dispatch(
                &sample::sample_spec(v, 4096),
                &[&pb, &sp, &st, &tokens, &logits],
                [1, 1, 1],
            )
            .expect("dispatch");
        Sampler {
            gpu,
            d,
            sp,
            st,
            tokens,
            logits,
        }
    }

    /// Samples from `logits` with `history` in the token ring; returns (token, new pos).
    fn draw(&self, logits: &[f32], history: &[u32], p: &SampleParams) -> (u32, u32) {
        let g = &self.gpu;
        g.queue.write_buffer(&self.sp, 0, bytemuck::bytes_of(p));
        g.queue
            .write_buffer(&self.logits, 0, bytemuck::cast_slice(logits));
        g.queue
            .write_buffer(&self.tokens, 0, bytemuck::cast_slice(history));
        set_state(g, &self.st, history.len() - 1);
        g.run_blocking(&[&self.d]).expect("run");
        let toks = g
            .read_buffer(&self.tokens, 0, ((history.len() + 1) * 4) as u64)
            .expect("read");
        let st = g.read_buffer(&self.st, 0, 16).expect("read");
        let id = u32::from_le_bytes(
            toks[history.len() * 4..history.len() * 4 + 4]
                .try_into()
                .expect("4 bytes"),
        );
        (
            id,
            u32::from_le_bytes(st[0..4].try_into().expect("4 bytes")),
        )
    }
}

fn greedy() -> SampleParams {
    SampleParams {
        temperature: 0.0,
        top_k: 0,
        top_p: 1.0,
        min_p: 0.0,
        repeat_penalty: 1.0,
        repeat_last_n: 64,
        seed: 7,
        _pad: 0,
    }
}

#[test]
fn sampling_greedy_penalty_and_filters() {
    for (backend, gpu) in gpus() {
        let v = 1000;
        let s = Sampler::new(gpu, v);
        let mut rng = Rng::new(20);
        let mut logits = rng.vec(v, 3.0);
        // A tie for the maximum: greedy takes the lowest id, like torch.argmax.
        logits[900] = 10.0;
        logits[123] = 10.0;
        logits[5] = 9.5;
        let (id, pos) = s.draw(&logits, &[1, 2, 3], &greedy());
        assert_eq!(
            (id, pos),
            (123, 3),
            "{backend}: greedy tie / position advance"
        );
        assert_eq!(id as usize, cpu::argmax(&logits));
        // Repetition penalty: ids 123 and 900 in the history (123 twice) drop below id 5.
        let p = SampleParams {
            repeat_penalty: 2.0,
            ..greedy()
        };
        let hist = [123u32, 900, 123, 4];
        let (id, _) = s.draw(&logits, &hist, &p);
        let mut pen = logits.clone();
        sample::apply_penalty(&mut pen, &hist, &p);
        assert_eq!(id as usize, cpu::argmax(&pen), "{backend}: penalty");
        assert_eq!(id, 5);
        // Stochastic settings: every draw is in the CPU-computed allowed set, and over many
        // draws the frequencies follow the allowed weights.
        let settings = [
            SampleParams {
                temperature: 0.8,
                top_k: 20,
                ..greedy()
            },
            SampleParams {
                temperature: 1.0,
                top_p: 0.5,
                ..greedy()
            },
            SampleParams {
                temperature: 1.0,
                min_p: 0.2,
                ..greedy()
            },
            SampleParams {
                temperature: 0.7,
                top_k: 50,
                top_p: 0.9,
                min_p: 0.05,
                repeat_penalty: 1.3,
                ..greedy()
            },
            SampleParams {
                temperature: 1.0,
                top_k: 1,
                ..greedy()
            },
        ];
        let logits = rng.vec(v, 3.0);
        for p in settings {
            let hist: Vec<u32> = (0..40).map(|i| (i * 37 % v) as u32).collect();
            let mut pen = logits.clone();
            sample::apply_penalty(&mut pen, &hist, &p);
            let allowed = sample::allowed(&pen, &p);
            assert!(!allowed.is_empty());
            if p.top_k > 0 {
                assert!(
                    allowed.len() <= p.top_k as usize,
                    "{backend}: top-k kept {}",
                    allowed.len()
                );
            }
            let total: f64 = allowed.iter().map(|a| a.1).sum();
            let mut counts = std::collections::HashMap::new();
            let n = 300;
            for i in 0..n {
                let mut h = hist.clone();
                h.push(i as u32 % 7); // vary the position (the draw depends on it)
                let h = [h.as_slice(), &vec![0; i as usize]].concat();
                let mut pen_i = logits.clone();
                sample::apply_penalty(&mut pen_i, &h, &p);
                let (id, _) = s.draw(&logits, &h, &p);
                let ok = sample::allowed(&pen_i, &p);
                assert!(
                    ok.iter().any(|a| a.0 == id),
                    "{backend}: {p:?} drew {id} outside the allowed set"
                );
                *counts.entry(id).or_insert(0usize) += 1;
            }
            // The most likely allowed token's frequency is within 4 sigma of its probability.
            let (best, w) = allowed
                .iter()
                .cloned()
                .fold((0, 0.0), |a, b| if b.1 > a.1 { b } else { a });
            let prob = w / total;
            let freq = *counts.get(&best).unwrap_or(&0) as f64 / n as f64;
            let sigma = (prob * (1.0 - prob) / n as f64).sqrt().max(1e-3);
            assert!(
                (freq - prob).abs() <= 4.0 * sigma + 0.02,
                "{backend}: {p:?}: token {best} drawn {freq:.3} vs p={prob:.3}"
            );
        }
    }
}

#[test]
fn advance_moves_the_position() {
    for (_, gpu) in gpus() {
        let (pb, sb) = (params(&gpu, 17), state(&gpu, 5));
        let d = gpu
            .dispatch(&sample::advance_spec(), &[&pb, &sb], [1, 1, 1])
            .expect("dispatch");
        gpu.run_blocking(&[&d]).expect("run");
        let st: Vec<u8> = gpu.read_buffer(&sb, 0, 16).expect("read");
        assert_eq!(bytemuck::pod_read_unaligned::<ops::State>(&st).pos, 22);
    }
}
