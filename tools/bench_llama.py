#!/usr/bin/env python3
"""Peer baseline for `lfm bench`: llama.cpp (via llama-cpp-python) on the same GGUF, CPU.

    python3 tools/bench_llama.py MODEL.gguf [-p 512] [-n 128] [--threads 2]

Prints pp (prompt processing) and tg (decode) tokens/s, measured the way `lfm bench` does:
the same deterministic prompt ids, one eval of the prompt, then greedy decoding one token at a
time.
"""
import argparse
import json
import time

import llama_cpp


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("-p", type=int, default=512)
    ap.add_argument("-n", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    t0 = time.time()
    llm = llama_cpp.Llama(
        model_path=a.model, n_ctx=a.p + a.n + 8, n_threads=a.threads, n_threads_batch=a.threads,
        n_batch=512, n_gpu_layers=0, verbose=False, logits_all=False,
    )
    load_s = time.time() - t0
    v = llm.n_vocab()
    prompt = [16 + (i * 7919) % (v - 16) for i in range(a.p)]
    # warm-up
    llm.eval(prompt[:8])
    llm.reset()
    t0 = time.time()
    llm.eval(prompt)
    tok = int(llm.scores[llm.n_tokens - 1].argmax())
    t1 = time.time()
    for _ in range(a.n - 1):
        llm.eval([tok])
        tok = int(llm.scores[llm.n_tokens - 1].argmax())
    t2 = time.time()
    print(json.dumps({
        "model": a.model, "backend": f"llama.cpp CPU, {a.threads} threads",
        "pp_tok_s": a.p / (t1 - t0), "tg_tok_s": (a.n - 1) / (t2 - t1),
        "ttft_ms": (t1 - t0) * 1e3, "load_s": load_s,
    }))


if __name__ == "__main__":
    main()
