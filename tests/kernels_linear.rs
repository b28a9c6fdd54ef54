//! GEMV, GEMM, RMSNorm and embedding kernels against their CPU references, on every test
//! backend, for every weight format and epilogue, at sizes that are not multiples of the
//! workgroup (rows, tokens and row length). Tolerance: relative 1e-5 to 1e-4 (f32 sums in a
//! different order).

mod gpu_common;

use gpu_common::*;
use lfm::QuantFormat;
use lfm::ops::{self, linear, linear::Epilogue};
use lfm::reference::ops as cpu;

const TOL_FLOAT: f32 = 2e-5;

/// Relative tolerance per weight format: f32 sums in a different order. Quantized rows carry
/// integer-valued products of larger magnitude, so their sums round more.
fn tol(f: QuantFormat) -> f32 {
    if f.block_elems() > 1 { 1e-4 } else { TOL_FLOAT }
}

#[test]
fn gemv_every_format_and_epilogue() {
    for (backend, gpu) in gpus() {
        let mut rng = Rng::new(1);
        for &f in ops::GPU_FORMATS {
            for e in Epilogue::ALL {
                for (k, n) in sizes(f, &[(64, 1), (136, 67), (256, 5), (768, 9)]) {
                    let na = e.rows_per_output();
                    let scale = 1.0 / (k as f32).sqrt();
                    let (wb, w) = encode(f, &rng.vec(na * n * k, scale));
                    let x = rng.vec(k, 1.0);
                    let y0 = rng.vec(n + 3, 1.0);
                    let y_off = if e == Epilogue::Plain { 3 } else { 0 };
                    let wbuf = upload_weights(&gpu, f, &wb);
                    let xbuf = upload(&gpu, &x);
                    let ybuf = upload(&gpu, &y0);
                    let conv_w = rng.vec(n * 3, 1.0);
                    let st = rng.vec(2 * n, 1.0); // [L-1, N]
                    let cwb = upload(&gpu, &conv_w);
                    let stb = upload(&gpu, &st);
                    let spec = linear::gemv_spec(f, e, k, n, y_off).expect("spec");
                    let mut bufs = vec![&wbuf, &xbuf, &ybuf];
                    if e == Epilogue::ShortConv {
                        bufs.extend([&cwb, &stb]);
                    }
                    let d = gpu
                        .dispatch(&spec, &bufs, linear::gemv_groups(n))
                        .expect("dispatch");
                    gpu.run_blocking(&[&d]).expect("run");
                    let got = read(&gpu, &ybuf, n + 3);
                    let dots = cpu::matvec(&w, na * n, k, &x);
                    let mut want = y0.clone();
                    let what = format!("{backend} gemv {f} {e:?} k={k} n={n}");
                    match e {
                        Epilogue::Plain => want[3..3 + n].copy_from_slice(&dots),
                        Epilogue::Residual => (0..n).for_each(|i| want[i] += dots[i]),
                        Epilogue::SwiGlu => {
                            want[..n].copy_from_slice(&cpu::swiglu(&dots[..n], &dots[n..]))
                        }
                        Epilogue::ShortConv => {
                            // CPU state is [N, L-1]; the kernel's is [L-1, N].
                            let mut s: Vec<f32> = (0..n).flat_map(|c| [st[c], st[n + c]]).collect();
                            want[..n]
                                .copy_from_slice(&cpu::short_conv_step(&mut s, &dots, &conv_w, n));
                            let got_st = read(&gpu, &stb, 2 * n);
                            let want_st: Vec<f32> = (0..2)
                                .flat_map(|j| (0..n).map(move |c| (j, c)))
                                .map(|(j, c)| s[c * 2 + j])
                                .collect();
                            assert_close(&format!("{what} state"), &got_st, &want_st, tol(f));
                        }
                    }
                    assert_close(&what, &got, &want, tol(f));
                }
            }
        }
    }
}

#[test]
fn gemm_every_format_and_epilogue() {
    for (backend, gpu) in gpus() {
        let mut rng = Rng::new(2);
        for &f in ops::GPU_FORMATS {
            for e in [Epilogue::Plain, Epilogue::Residual, Epilogue::SwiGlu] {
                for (t, k, n) in
                    sizes3(f, &[(3, 64, 5), (33, 136, 40), (70, 64, 67), (35, 512, 33)])
                {
                    let na = e.rows_per_output();
                    let (wb, w) = encode(f, &rng.vec(na * n * k, 1.0 / (k as f32).sqrt()));
                    let x = rng.vec(t * k, 1.0);
                    let stride = n + 2;
                    let y_off = 1;
                    let y0 = rng.vec(t * stride, 1.0);
                    let wbuf = upload_weights(&gpu, f, &wb);
                    let (xbuf, ybuf, pbuf) = (upload(&gpu, &x), upload(&gpu, &y0), params(&gpu, t));
                    let spec = linear::gemm_spec(f, e, k, n, stride, y_off).expect("spec");
                    let d = gpu
                        .dispatch(
                            &spec,
                            &[&pbuf, &wbuf, &xbuf, &ybuf],
                            linear::gemm_groups(n, t),
                        )
                        .expect("dispatch");
                    gpu.run_blocking(&[&d]).expect("run");
                    let got = read(&gpu, &ybuf, t * stride);
                    let dots = cpu::matmul(&w, na * n, k, &x, t); // [t, na * n]
                    let mut want = y0.clone();
                    for ti in 0..t {
                        let r = &dots[ti * na * n..(ti + 1) * na * n];
                        for j in 0..n {
                            let o = ti * stride + y_off + j;
                            want[o] = match e {
                                Epilogue::Plain => r[j],
                                Epilogue::Residual => want[o] + r[j],
                                _ => cpu::silu(r[j]) * r[n + j],
                            };
                        }
                    }
                    assert_close(
                        &format!("{backend} gemm {f} {e:?} t={t} k={k} n={n}"),
                        &got,
                        &want,
                        tol(f),
                    );
                }
            }
        }
    }
}

#[test]
fn rms_norm_rows_and_last_row() {
    for (backend, gpu) in gpus() {
        let mut rng = Rng::new(3);
        for (t, h) in [(1, 64), (5, 100), (3, 1000)] {
            let x = rng.vec(t * h, 2.0);
            let w = rng.vec(h, 1.0);
            let (xb, wb, pb) = (upload(&gpu, &x), upload(&gpu, &w), params(&gpu, t));
            let yb = gpu.storage("y", (t * h * 4) as u64);
            let want: Vec<f32> = x
                .chunks(h)
                .flat_map(|r| cpu::rms_norm(r, &w, 1e-5))
                .collect();
            for last in [false, true] {
                let spec = ops::norm::rms_norm_spec(h, 1e-5, last);
                let d = gpu
                    .dispatch(
                        &spec,
                        &[&pb, &xb, &wb, &yb],
                        ops::norm::rms_norm_groups(t, last),
                    )
                    .expect("dispatch");
                gpu.run_blocking(&[&d]).expect("run");
                let what = format!("{backend} rms_norm t={t} h={h} last_row={last}");
                if last {
                    assert_close(&what, &read(&gpu, &yb, h), &want[(t - 1) * h..], TOL_FLOAT);
                } else {
                    assert_close(&what, &read(&gpu, &yb, t * h), &want, TOL_FLOAT);
                }
            }
        }
    }
}

#[test]
fn embed_reads_ids_from_the_token_ring() {
    for (backend, gpu) in gpus() {
        let mut rng = Rng::new(4);
        for &f in ops::GPU_FORMATS {
            let (v, h) = (37, if f.block_elems() > 1 { 256 } else { 72 });
            let (wb, w) = encode(f, &rng.vec(v * h, 1.0));
            let ring = [5u32, 9, 36, 0, 17, 4];
            // The batch wraps around the end of the ring: positions 4, 5, 6 -> indices 4, 5, 0.
            let (pos, t) = (4, 3);
            let wbuf = upload_weights(&gpu, f, &wb);
            let (pb, sb, tb) = (params(&gpu, t), state(&gpu, pos), upload_u32(&gpu, &ring));
            let xb = gpu.storage("x", (t * h * 4) as u64);
            let spec = ops::embed::embed_spec(f, h, v, ring.len()).expect("spec");
            let d = gpu
                .dispatch(
                    &spec,
                    &[&pb, &sb, &tb, &wbuf, &xb],
                    ops::embed::embed_groups(t),
                )
                .expect("dispatch");
            gpu.run_blocking(&[&d]).expect("run");
            let want: Vec<f32> = (pos..pos + t)
                .map(|p| ring[p % ring.len()] as usize)
                .flat_map(|id| w[id * h..(id + 1) * h].to_vec())
                .collect();
            assert_close(
                &format!("{backend} embed {f}"),
                &read(&gpu, &xb, t * h),
                &want,
                0.0,
            );
        }
    }
}

/// The (k, n) cases whose row length `k` the format can hold.
fn sizes(f: QuantFormat, all: &[(usize, usize)]) -> Vec<(usize, usize)> {
    let step = ops::layout::chunk_elems(f).max(f.block_elems());
    all.iter().copied().filter(|(k, _)| k % step == 0).collect()
}

fn sizes3(f: QuantFormat, all: &[(usize, usize, usize)]) -> Vec<(usize, usize, usize)> {
    let step = ops::layout::chunk_elems(f).max(f.block_elems());
    all.iter()
        .copied()
        .filter(|(_, k, _)| k % step == 0)
        .collect()
}
