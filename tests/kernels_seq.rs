//! Sequence kernels against their CPU references on every test backend: the prefill short
//! convolution across chunk boundaries, attention prep + causal prefill + split-K decode over a
//! KV ring filled to capacity (GQA 2:1 and 4:1), and GPU sampling.

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

/// Reference q/k after per-head norm and RoPE at `pos`.
fn prep_cpu(x: &[f32], heads: usize, hd: usize, w: &[f32], pos: usize) -> Vec<f32> {
    let mut v = x.to_vec();
    cpu::head_rms_norm(&mut v, heads, hd, w, 1e-5);
    cpu::rope_neox(&mut v, heads, hd, pos, 1e6);
    v
}

#[test]
fn attention_prefill_and_decode_fill_the_ring() {
    for (backend, gpu) in gpus() {
        for (nh, nkv) in [(4, 2), (4, 1)] {
            let mut rng = Rng::new(11 + nkv as u64);
            let hd = 16;
            let cap = 70;
            let a = AttnShape {
                n_heads: nh,
                n_kv_heads: nkv,
                head_dim: hd,
                eps: 1e-5,
                capacity: cap,
            };
            let (qd, kvd) = (nh * hd, nkv * hd);
            let w_q = rng.vec(hd, 1.0);
            let w_k = rng.vec(hd, 1.0);
            let inv = attn::inv_freq(hd, 1e6);
            let (qnb, knb, ifb) = (upload(&gpu, &w_q), upload(&gpu, &w_k), upload(&gpu, &inv));
            let kc = gpu.storage("k", (cap * kvd * 4) as u64);
            let vc = gpu.storage("v", (cap * kvd * 4) as u64);
            let max_t = 40;
            let qkvb = gpu.storage("qkv", (max_t * (qd + 2 * kvd) * 4) as u64);
            let qb = gpu.storage("q", (max_t * qd * 4) as u64);
            let ob = gpu.storage("out", (max_t * qd * 4) as u64);
            let po = gpu.storage("part_o", (a.n_splits() * qd * 4) as u64);
            let pml = gpu.storage("part_ml", (a.n_splits() * nh * 2 * 4) as u64);
            let (pb, sb) = (params(&gpu, 1), state(&gpu, 0));
            let (mut kcpu, mut vcpu) = (Vec::new(), Vec::new());
            let mut pos = 0;
            // Two prefill chunks, then a decode step that takes the last slot of the ring.
            for t in [40, 29, 1] {
                let qkv = rng.vec(t * (qd + 2 * kvd), 1.0);
                gpu.queue.write_buffer(&qkvb, 0, bytemuck::cast_slice(&qkv));
                set_params(&gpu, &pb, t);
                set_state(&gpu, &sb, pos);
                let prep = gpu
                    .dispatch(
                        &attn::prep_spec(&a),
                        &[&pb, &sb, &qkvb, &qnb, &knb, &ifb, &qb, &kc, &vc],
                        attn::prep_groups(&a, t),
                    )
                    .expect("prep");
                if t > 1 {
                    let pre = gpu
                        .dispatch(
                            &attn::prefill_spec(&a),
                            &[&pb, &sb, &qb, &kc, &vc, &ob],
                            attn::prefill_groups(&a, t),
                        )
                        .expect("prefill");
                    gpu.run_blocking(&[&prep, &pre]).expect("run");
                } else {
                    let dec = gpu
                        .dispatch(
                            &attn::decode_spec(&a),
                            &[&sb, &qb, &kc, &vc, &po, &pml],
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
                for ti in 0..t {
                    let row = &qkv[ti * (qd + 2 * kvd)..(ti + 1) * (qd + 2 * kvd)];
                    let p = pos + ti;
                    let q = prep_cpu(&row[..qd], nh, hd, &w_q, p);
                    kcpu.extend(prep_cpu(&row[qd..qd + kvd], nkv, hd, &w_k, p));
                    vcpu.extend_from_slice(&row[qd + kvd..]);
                    let what = format!("{backend} nh={nh} nkv={nkv} t={t} pos={p}");
                    assert_close(
                        &format!("{what} q"),
                        &got_q[ti * qd..(ti + 1) * qd],
                        &q,
                        1e-5,
                    );
                    let want = cpu::attention_step(&q, &kcpu, &vcpu, p + 1, nh, nkv, hd);
                    assert_close(
                        &format!("{what} attention"),
                        &got_o[ti * qd..(ti + 1) * qd],
                        &want,
                        2e-5,
                    );
                }
                pos += t;
            }
            assert_eq!(pos, cap, "the ring must be exactly full");
            assert_close(
                &format!("{backend} k ring"),
                &read(&gpu, &kc, cap * kvd),
                &kcpu,
                1e-5,
            );
            assert_close(
                &format!("{backend} v ring"),
                &read(&gpu, &vc, cap * kvd),
                &vcpu,
                0.0,
            );
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
                &sample::sample_spec(v),
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
