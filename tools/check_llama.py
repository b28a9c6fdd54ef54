#!/usr/bin/env python3
"""Load a GGUF with llama.cpp (llama-cpp-python, CPU) and print whether it loaded and its greedy ids.

    python3 tools/check_llama.py FILE.gguf [--prompt-ids 1,2,3 | --prompt TEXT] [-n N] [--expect-ids 4,5,6] [--json]

Used to show that GGUFs written by other tools (e.g. `lfm synth`, `lfm quantize`) are valid llama.cpp models:
llama.cpp must load the file, and a greedy run from the prompt must give finite logits. The prompt defaults to
the model's BOS token alone. Greedy decoding is plain argmax (no sampler, no EOS stop): the prompt is evaluated
as one batch, then one token per step through llama.cpp's cache, with an F32 KV cache and no flash attention.

Prints the file's GGUF summary (architecture, general.file_type, tensor count per ggml type; read with gguf-py
when it is installed), then `loaded: yes|no`, the prompt ids, the greedy ids and their detokenized text.
On a load failure it prints the tail of llama.cpp's log. Exit status: 0 when the file loaded, ran and (with
--expect-ids) produced the expected ids; 1 otherwise. `--json` prints one JSON object instead.

tools/make_fixtures.py imports check_file() from here for its `--check-lfm-bin` checks.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np


def describe_gguf(path: Path) -> dict:
    """Architecture, file type and tensor types as gguf-py reads them (empty when gguf-py is missing)."""
    try:
        import gguf
    except ImportError:
        return {}
    reader = gguf.GGUFReader(str(path))
    fields = {k: f.contents() for k, f in reader.fields.items() if k in ("general.architecture", "general.file_type")}
    try:
        file_type = gguf.LlamaFileType(fields.get("general.file_type")).name
    except (ValueError, TypeError):
        file_type = str(fields.get("general.file_type"))
    return {
        "architecture": fields.get("general.architecture"),
        "file_type": file_type,
        "n_tensors": len(reader.tensors),
        "tensor_types": dict(sorted(Counter(t.tensor_type.name for t in reader.tensors).items())),
    }


def _open(path: Path, n_ctx: int, threads: int, log: io.StringIO):
    import llama_cpp

    with contextlib.redirect_stderr(log):  # llama-cpp-python prints llama.cpp's log through sys.stderr
        return llama_cpp.Llama(
            model_path=str(path),
            n_ctx=n_ctx,
            n_batch=n_ctx,
            n_ubatch=n_ctx,
            n_threads=threads,
            n_threads_batch=threads,
            n_gpu_layers=0,
            logits_all=True,
            type_k=llama_cpp.GGML_TYPE_F32,
            type_v=llama_cpp.GGML_TYPE_F32,
            flash_attn=False,
            verbose=True,
        )


def check_file(
    path: Path,
    prompt_ids: list[int] | None = None,
    prompt_text: str | None = None,
    n: int = 16,
    threads: int = 2,
) -> dict:
    """Load `path` with llama.cpp and run n greedy steps. Returns a dict (see `loaded`, `error`, `greedy`)."""
    path = Path(path)
    result: dict = {"file": str(path), "loaded": False}
    if not path.is_file():
        result["error"] = "no such file"
        return result
    result["bytes"] = path.stat().st_size
    try:
        result["gguf"] = describe_gguf(path)
    except Exception as e:  # noqa: BLE001 - report, keep going: llama.cpp may still load it
        result["gguf"] = {"error": f"gguf-py cannot read it: {e}"}
    try:
        import llama_cpp  # noqa: F401
    except ImportError as e:
        result["error"] = f"llama-cpp-python not installed: {e}"
        return result

    log = io.StringIO()
    n_ctx = max(512, len(prompt_ids or []) + n + 8)
    try:
        llm = _open(path, n_ctx, threads, log)
    except Exception as e:  # noqa: BLE001
        result["error"] = f"{type(e).__name__}: {e}"
        result["log_tail"] = log.getvalue().strip().splitlines()[-25:]
        return result
    result["loaded"] = True
    try:
        result["n_vocab"] = llm.n_vocab()
        result["n_embd"] = llm.n_embd()
        result["n_ctx_train"] = llm._model.n_ctx_train()
        if prompt_ids is None:
            if prompt_text is not None:
                prompt_ids = llm.tokenize(prompt_text.encode(), add_bos=True, special=True)
            else:
                prompt_ids = [llm.token_bos()]
        result["prompt_ids"] = list(prompt_ids)
        bad = [t for t in prompt_ids if not 0 <= t < llm.n_vocab()]
        if bad:
            raise ValueError(f"prompt ids out of range for vocab {llm.n_vocab()}: {bad}")
        with contextlib.redirect_stderr(log):
            llm.reset()
            llm.eval(prompt_ids)
            greedy, finite = [], True
            for _ in range(n):
                last = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
                finite &= bool(np.isfinite(last).all())
                nxt = int(np.argmax(last))
                greedy.append(nxt)
                llm.eval([nxt])
        result["greedy"] = greedy
        result["logits_finite"] = finite
        result["text"] = llm.detokenize(greedy).decode("utf-8", errors="replace")
        if not finite:
            result["error"] = "non-finite logits"
    except Exception as e:  # noqa: BLE001
        result["error"] = f"{type(e).__name__}: {e}"
        result["log_tail"] = log.getvalue().strip().splitlines()[-25:]
    finally:
        with contextlib.redirect_stderr(io.StringIO()):
            del llm
    return result


def ok(result: dict, expect_ids: list[int] | None = None) -> bool:
    if not result.get("loaded") or "error" in result:
        return False
    return expect_ids is None or result.get("greedy", [])[: len(expect_ids)] == expect_ids


def format_result(r: dict, expect_ids: list[int] | None = None) -> str:
    lines = [f"file: {r['file']}" + (f" ({r['bytes']:,} bytes)" if "bytes" in r else "")]
    g = r.get("gguf") or {}
    if "error" in g:
        lines.append(f"gguf: {g['error']}")
    elif g:
        types = ", ".join(f"{k} x{v}" for k, v in g["tensor_types"].items())
        lines.append(f"gguf: arch {g['architecture']}, file_type {g['file_type']}, {g['n_tensors']} tensors ({types})")
    lines.append(f"loaded: {'yes' if r.get('loaded') else 'no'}")
    if r.get("loaded"):
        lines.append(f"n_vocab {r.get('n_vocab')}, n_embd {r.get('n_embd')}, n_ctx_train {r.get('n_ctx_train')}")
    if "prompt_ids" in r:
        lines.append(f"prompt ids: {','.join(map(str, r['prompt_ids']))}")
    if "greedy" in r:
        lines.append(f"greedy ids: {','.join(map(str, r['greedy']))}")
        lines.append(f"greedy text: {r['text']!r}")
        lines.append(f"logits finite: {'yes' if r['logits_finite'] else 'NO'}")
    if expect_ids is not None and "greedy" in r:
        match = r["greedy"][: len(expect_ids)] == expect_ids
        lines.append(f"expected ids: {'match' if match else 'MISMATCH'} ({','.join(map(str, expect_ids))})")
    if "error" in r:
        lines.append(f"error: {r['error']}")
    for line in r.get("log_tail", []):
        lines.append(f"  llama.cpp: {line}")
    lines.append("RESULT: " + ("OK" if ok(r, expect_ids) else "FAIL"))
    return "\n".join(lines)


def _ids(s: str) -> list[int]:
    return [int(x) for x in s.replace(" ", "").split(",") if x]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("file", type=Path, help="GGUF file")
    group = ap.add_mutually_exclusive_group()
    group.add_argument("--prompt-ids", type=_ids, help="comma-separated prompt ids, fed as is (default: BOS)")
    group.add_argument("--prompt", help="prompt text, tokenized by llama.cpp with BOS and special tokens")
    ap.add_argument("-n", type=int, default=16, help="greedy steps (default 16)")
    ap.add_argument("--expect-ids", type=_ids, help="fail unless the greedy ids start with these")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()
    r = check_file(args.file, args.prompt_ids, args.prompt, args.n, args.threads)
    if args.json:
        r["ok"] = ok(r, args.expect_ids)
        print(json.dumps(r, ensure_ascii=False, indent=1))
    else:
        print(format_result(r, args.expect_ids))
    return 0 if ok(r, args.expect_ids) else 1


if __name__ == "__main__":
    sys.exit(main())
