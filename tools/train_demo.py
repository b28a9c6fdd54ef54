#!/usr/bin/env python3
"""Train the built-in demo model: a tiny real-architecture LFM2 that writes Python (models/demo/).

    python3 tools/train_demo.py [--work DIR] [--out DIR] [--lfm-bin PATH]

Defaults: --work target/demo-train (checkpoints, logs, the f32 HF checkpoint and the F16/Q4_0 GGUFs; not
committed), --out models/demo (what is committed: the Q8_0 GGUF, the greedy references for tests/demo_model.rs,
the model card README.md and a copy of the Python licence). Rerunning resumes from the last checkpoint in
--work; delete --work to start over.

Stages (each skipped when its output in --work is current):
  corpus      every *.py file of the running interpreter's standard library (sysconfig "stdlib"), minus test
              directories, site-packages and generated tables; ~2% of the files (chosen by a hash of the path)
              are held out for the held-out loss.
  tokenizer   a byte-level BPE trained with `tokenizers` on the training files: the same construction as the
              fixtures' tokenizer (tools/make_fixtures.py: Llama-3 split, ignore_merges, BOS post-processor,
              LFM2's special tokens at ids 0..13, LFM2's chat template), vocab VOCAB_SIZE.
  train       transformers' Lfm2ForCausalLM (CONFIG below), AdamW + cosine LR, one CPU thread (bf16 autocast
              where the CPU has native bf16 matrix units, f32 master weights), a checkpoint every CKPT_EVERY steps.
  export      f32 HF checkpoint -> F16 GGUF (gguf-py, as llama.cpp's converter) -> Q8_0 and Q4_0 GGUFs
              (llama.cpp's own quantizer through llama-cpp-python); held-out loss of each; greedy references
              from transformers (float32, eager, full forward per step) on the dequantized Q8_0 weights, i.e.
              the exact oracle for the engine; the model card. With --lfm-bin, `lfm run` on the Q8_0 file
              checks the greedy ids against the references and writes sample completions into the card.

Requires: torch, transformers, tokenizers, gguf, numpy, safetensors, llama-cpp-python (as make_fixtures.py,
whose GGUF writer and checks this script imports). Uses one CPU thread throughout.
"""

from __future__ import annotations

import os

# One thread everywhere (set before torch / tokenizers start their pools).
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "RAYON_NUM_THREADS"):
    os.environ[_var] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import sysconfig  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import gguf  # noqa: E402
import numpy as np  # noqa: E402
import tokenizers  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers  # noqa: E402
from transformers import Lfm2Config, Lfm2ForCausalLM  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_fixtures as mf  # noqa: E402

torch.set_num_threads(1)
torch.set_num_interop_threads(1)
transformers.logging.set_verbosity_error()

REPO_ROOT = mf.REPO_ROOT
SEED = 1234
NAME = "lfm2-tiny-py"

# ----------------------------------------------------------------------------------------------------------
# Corpus
# ----------------------------------------------------------------------------------------------------------

SKIP_DIRS = {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__"}
# Generated files that are data, not code written by people.
SKIP_FILES = {"pydoc_data/topics.py"}  # the reference manual as one dict of strings (Sphinx output)
HELDOUT_ONE_IN = 50  # a file is held out when sha256(relative path) % 50 == 0 (~2%)


def corpus_files(stdlib: Path) -> list[str]:
    out = []
    for p in sorted(stdlib.rglob("*.py")):
        rel = p.relative_to(stdlib).as_posix()
        parts = rel.split("/")
        if SKIP_DIRS & set(parts[:-1]) or rel in SKIP_FILES or parts[-1].startswith("_sysconfigdata"):
            continue
        head = p.read_text(encoding="utf-8", errors="replace")[:400]
        if "gencodec.py" in head:  # encodings/cp*.py etc.: generated codec tables
            continue
        out.append(rel)
    return out


def is_heldout(rel: str) -> bool:
    return int(hashlib.sha256(rel.encode()).hexdigest(), 16) % HELDOUT_ONE_IN == 0


def load_corpus(stdlib: Path) -> dict:
    files = corpus_files(stdlib)
    texts = {rel: (stdlib / rel).read_text(encoding="utf-8", errors="replace").replace("\r\n", "\n") for rel in files}
    digest = hashlib.sha256()
    for rel in files:
        digest.update(rel.encode() + b"\0" + texts[rel].encode() + b"\0")
    train = [r for r in files if not is_heldout(r)]
    heldout = [r for r in files if is_heldout(r)]
    return {
        "stdlib": str(stdlib),
        "texts": texts,
        "train": train,
        "heldout": heldout,
        "sha256": digest.hexdigest(),
        "train_bytes": sum(len(texts[r].encode()) for r in train),
        "heldout_bytes": sum(len(texts[r].encode()) for r in heldout),
    }


# ----------------------------------------------------------------------------------------------------------
# Tokenizer (the fixtures' construction, tools/make_fixtures.py build_tokenizer, without its appended merge)
# ----------------------------------------------------------------------------------------------------------

VOCAB_SIZE = 4096
EOT_ID = 2  # <|endoftext|>: separates files in the training stream (an end-of-generation token)


def train_tokenizer(corpus: dict) -> Tokenizer:
    tok = Tokenizer(models.BPE(ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(mf.LLAMA3_SPLIT_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=2,
        special_tokens=mf.SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([corpus["texts"][r] for r in corpus["train"]], trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<|startoftext|> $A",
        pair="<|startoftext|> $A <|startoftext|> $B",
        special_tokens=[("<|startoftext|>", mf.BOS_ID)],
    )
    mf.check(tok.get_vocab_size() == VOCAB_SIZE, f"vocab {tok.get_vocab_size()} != {VOCAB_SIZE}")
    for i, s in enumerate(mf.SPECIAL_TOKENS):
        mf.check(tok.token_to_id(s) == i, f"special token {s} not at id {i}")
    return tok


def encode_stream(tok: Tokenizer, texts: list[str]) -> np.ndarray:
    """The files' ids, each file followed by <|endoftext|> (no BOS: every training window starts with one)."""
    ids: list[int] = []
    for enc in tok.encode_batch(texts, add_special_tokens=False):
        ids += enc.ids + [EOT_ID]
    return np.array(ids, dtype=np.uint16)


NEWLINE_SPLIT_P = 0.1


def split_newlines(tok: Tokenizer, stream: np.ndarray) -> tuple[np.ndarray, int]:
    """Re-tokenizes a random NEWLINE_SPLIT_P of the tokens that end in newlines, e.g. `):Ċ`, as the same text in
    two tokens (`):` `Ċ`). The pre-tokenizer glues a line's final punctuation to its newline, so canonical text
    never has `):` before a newline, yet a prompt such as "def f(x):" ends with exactly that token; these
    alternative tokenizations (of identical text) teach the model to continue such a prompt onto the next line.
    Training stream only, seeded; returns (stream, number of splits)."""
    vocab = tok.get_vocab()
    first = np.full(VOCAB_SIZE, -1, dtype=np.int64)
    second = np.full(VOCAB_SIZE, -1, dtype=np.int64)
    for t, i in vocab.items():
        head = t.rstrip("Ċ")
        if i >= len(mf.SPECIAL_TOKENS) and head != t and head in vocab and t[len(head):] in vocab:
            first[i], second[i] = vocab[head], vocab[t[len(head):]]
    rng = np.random.default_rng([SEED, 1])
    split = (first[stream] >= 0) & (rng.random(len(stream)) < NEWLINE_SPLIT_P)
    out = np.empty(len(stream) + int(split.sum()), dtype=stream.dtype)
    dest = np.arange(len(stream)) + np.concatenate([[0], np.cumsum(split)[:-1]])
    out[dest] = np.where(split, first[stream], stream)
    out[dest[split] + 1] = second[stream[split]]
    return out, int(split.sum())


def line_starts(tok: Tokenizer, stream: np.ndarray, window: int) -> np.ndarray:
    """Positions i where a line begins (token i-1 ends with a newline or is <|endoftext|>, or i = 0) and a
    whole window of `window` tokens fits: training windows start there, as a prompt starts a line."""
    ends_line = np.zeros(VOCAB_SIZE, dtype=bool)
    for t, i in tok.get_vocab().items():
        ends_line[i] = t.endswith("Ċ")  # ByteLevel's "\n"
    ends_line[EOT_ID] = True
    prev = np.concatenate([[True], ends_line[stream[:-1]]])
    idx = np.nonzero(prev)[0]
    return idx[idx + window <= len(stream)]


# ----------------------------------------------------------------------------------------------------------
# Model and training configuration
# ----------------------------------------------------------------------------------------------------------

C, A = "conv", "full_attention"
MODEL = {
    "hidden": 256,
    # LFM2's pattern scaled down: attention at 2, 5, 7 (LFM2-350M..1.2B: 2, 5, 8, 10, 12, 14 of 16)
    "layer_types": [C, C, A, C, C, A, C, A],
    "heads": 4,  # head_dim 64, as in every released LFM2
    "kv_heads": 2,
    "ff": 256,
}
TRAIN = {
    "seq": 256,  # predicted tokens per window (the window is BOS + seq tokens)
    "batch": 16,
    "steps": 2400,
    "lr": 2e-3,
    "min_lr_frac": 0.1,
    "warmup": 100,
    "weight_decay": 0.1,
    "betas": (0.9, 0.95),
    "grad_clip": 1.0,
    "init_std": 0.02,  # transformers' Lfm2 default initializer_range
}
CKPT_EVERY = 100
EVAL_EVERY = 200
EVAL_WINDOWS = 32  # held-out windows for the periodic estimate; the final number uses all of them


def model_config() -> Lfm2Config:
    cfg = Lfm2Config(
        vocab_size=VOCAB_SIZE,
        hidden_size=MODEL["hidden"],
        intermediate_size=MODEL["ff"],
        block_auto_adjust_ff_dim=False,
        num_hidden_layers=len(MODEL["layer_types"]),
        layer_types=MODEL["layer_types"],
        num_attention_heads=MODEL["heads"],
        num_key_value_heads=MODEL["kv_heads"],
        max_position_embeddings=mf.MAX_POS,
        norm_eps=mf.NORM_EPS,
        conv_L_cache=mf.CONV_L_CACHE,
        conv_bias=False,
        rope_parameters={"rope_type": "default", "rope_theta": mf.ROPE_THETA},
        tie_word_embeddings=True,
        initializer_range=TRAIN["init_std"],
        pad_token_id=mf.PAD_ID,
        bos_token_id=mf.BOS_ID,
        eos_token_id=mf.EOS_ID,
    )
    cfg.architectures = ["Lfm2ForCausalLM"]
    return cfg


def use_bf16() -> bool:
    """bf16 autocast only where the CPU multiplies bf16 natively (AMX / AVX512-BF16); else f32."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " amx_bf16" in flags or " avx512_bf16" in flags


def lr_at(step: int) -> float:
    t = TRAIN
    if step < t["warmup"]:
        return t["lr"] * (step + 1) / t["warmup"]
    p = (step - t["warmup"]) / max(1, t["steps"] - t["warmup"])
    return t["lr"] * (t["min_lr_frac"] + (1 - t["min_lr_frac"]) * 0.5 * (1 + math.cos(math.pi * p)))


def batch_at(step: int, stream: np.ndarray, starts: np.ndarray) -> torch.Tensor:
    """[batch, 1 + seq] ids: BOS + seq tokens from line starts drawn by a generator seeded by (SEED, step)."""
    rng = np.random.default_rng([SEED, step])
    pick = starts[rng.integers(0, len(starts), TRAIN["batch"])]
    rows = [np.concatenate([[mf.BOS_ID], stream[s : s + TRAIN["seq"]]]) for s in pick]
    return torch.from_numpy(np.stack(rows).astype(np.int64))


def heldout_windows(stream: np.ndarray) -> torch.Tensor:
    """Non-overlapping BOS + seq windows covering the held-out stream (the tail that does not fill one is dropped)."""
    n = len(stream) // TRAIN["seq"]
    w = stream[: n * TRAIN["seq"]].reshape(n, TRAIN["seq"]).astype(np.int64)
    return torch.from_numpy(np.concatenate([np.full((n, 1), mf.BOS_ID), w], axis=1))


@torch.no_grad()
def heldout_loss(model: Lfm2ForCausalLM, windows: torch.Tensor, bs: int = 8) -> float:
    """Mean next-token cross-entropy (nats) over every predicted token, float32."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(windows), bs):
        x = windows[i : i + bs]
        logits = model(input_ids=x, use_cache=False).logits[:, :-1].float()
        total += torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1), reduction="sum"
        ).item()
        count += x[:, 1:].numel()
    model.train(was_training)
    return total / count


def param_groups(model: Lfm2ForCausalLM) -> list[dict]:
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "conv.conv" not in n]
    other = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "conv.conv" not in n)]
    return [{"params": decay, "weight_decay": TRAIN["weight_decay"]}, {"params": other, "weight_decay": 0.0}]


def train(work: Path, data: dict) -> dict:
    """Trains (resuming from work/ckpt.pt if present); returns the final checkpoint dict."""
    ckpt_path = work / "ckpt.pt"
    stamp = {"model": MODEL, "train": {**TRAIN, "betas": list(TRAIN["betas"])}, "seed": SEED,
             "corpus": data["sha256"], "vocab": VOCAB_SIZE}
    torch.manual_seed(SEED)
    cfg = model_config()
    cfg._attn_implementation = "sdpa"
    model = Lfm2ForCausalLM(cfg)
    opt = torch.optim.AdamW(param_groups(model), lr=TRAIN["lr"], betas=TRAIN["betas"], eps=1e-8)
    state = {"step": 0, "log": [], "evals": [], "train_seconds": 0.0, "stamp": stamp, "bf16": use_bf16()}
    if ckpt_path.exists():
        ck = torch.load(ckpt_path, weights_only=False)
        mf.check(ck["stamp"] == stamp, f"{ckpt_path} was made with another configuration: delete {work} to retrain")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        state = {k: ck[k] for k in state}
        mf.log(f"resuming at step {state['step']}")
    if state["step"] >= TRAIN["steps"]:
        return {**state, "model": model.state_dict()}

    stream, starts = data["train_ids"], data["train_starts"]
    windows = heldout_windows(data["heldout_ids"])[:EVAL_WINDOWS]
    n_params = sum(p.numel() for p in model.parameters())
    mf.log(f"model: {n_params:,} parameters; {len(stream):,} training tokens, {len(starts):,} window starts; "
           f"bf16 autocast: {state['bf16']}")

    def save() -> None:
        tmp = ckpt_path.with_suffix(".tmp")
        torch.save({**state, "model": model.state_dict(), "opt": opt.state_dict()}, tmp)
        os.replace(tmp, ckpt_path)

    model.train()
    interval_loss, interval_n = 0.0, 0
    while state["step"] < TRAIN["steps"]:
        step = state["step"]
        t0 = time.perf_counter()
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        x = batch_at(step, stream, starts)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=state["bf16"]):
            loss = model(input_ids=x, labels=x, use_cache=False).loss
        loss.backward()
        gnorm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), TRAIN["grad_clip"]))
        opt.step()
        opt.zero_grad(set_to_none=True)
        state["train_seconds"] += time.perf_counter() - t0
        state["step"] = step + 1
        interval_loss += float(loss.detach())
        interval_n += 1
        if state["step"] % 50 == 0 or state["step"] == TRAIN["steps"]:
            row = {"step": state["step"], "lr": lr_at(step), "train_loss": interval_loss / interval_n,
                   "grad_norm": gnorm, "seconds": round(state["train_seconds"], 1)}
            state["log"].append(row)
            interval_loss, interval_n = 0.0, 0
            rate = state["step"] * TRAIN["batch"] * TRAIN["seq"] / max(state["train_seconds"], 1e-9)
            mf.log(f"step {row['step']:5d}  lr {row['lr']:.2e}  loss {row['train_loss']:.4f}  "
                   f"|g| {gnorm:.2f}  {row['seconds']:.0f}s  {rate:.0f} tok/s")
        if state["step"] % EVAL_EVERY == 0 or state["step"] == TRAIN["steps"]:
            h = heldout_loss(model, windows)
            state["evals"].append({"step": state["step"], "heldout_loss": h})
            mf.log(f"step {state['step']:5d}  held-out loss ({len(windows)} windows) {h:.4f}")
        if state["step"] % CKPT_EVERY == 0 or state["step"] == TRAIN["steps"]:
            save()
    return {**state, "model": model.state_dict()}


# ----------------------------------------------------------------------------------------------------------
# Export: HF dir, GGUFs, held-out losses, references
# ----------------------------------------------------------------------------------------------------------

# Prompts for the references, in order of preference; the first N_REF_PROMPTS whose greedy continuation has no
# near tie (every top-1/top-2 logit gap > mf.MIN_GREEDY_MARGIN) become the test cases.
REF_PROMPTS = [
    "def fibonacci(n):",
    "import os\nimport sys\n",
    "class Stack:\n",
    "    def __init__(self, name):\n",
    "def read_config(path):\n",
    "for i in range(10):\n",
    '"""Utilities for parsing dates."""\n',
    "    if not isinstance(value, str):\n",
]
N_REF_PROMPTS = 3
N_REF_GREEDY = 48
COMMITTED = ["q8_0"]  # quantizations copied to --out (f16 and q4_0 stay in --work)
# The card's `lfm run` samples: these prompts, seed 1, the default sampler otherwise.
SAMPLE_PROMPTS = ["def fibonacci(n):", "class Stack:\n    def push(self, item):\n",
                  "def read_lines(path):\n    with open(path) as f:\n"]
SAMPLE_ARGS = ["-n", "96", "--seed", "1"]


def gguf_path(work: Path, q: str) -> Path:
    return work / f"{NAME}-{q}.gguf"


def export(work: Path, out: Path, data: dict, tok: Tokenizer, state: dict, lfm_bin: Path | None) -> None:
    cfg = model_config()
    ff = mf.swiglu_width(cfg.intermediate_size, cfg.block_auto_adjust_ff_dim, cfg.block_ffn_dim_multiplier,
                         cfg.block_multiple_of)
    weights = {k: v.float().numpy().copy() for k, v in state["model"].items() if k != "lm_head.weight"}
    hf_dir = work / "hf"
    hf_dir.mkdir(exist_ok=True)
    cfg.save_pretrained(hf_dir)
    save_file({k: torch.from_numpy(v) for k, v in weights.items()}, str(hf_dir / "model.safetensors"),
              metadata={"format": "pt"})
    mf.write_tokenizer_files(tok, hf_dir)
    mf.write_generation_config(hf_dir)

    f16 = gguf_path(work, "f16")
    mf.write_gguf(f16, NAME, cfg, ff, weights, hf_dir, tok, gguf.LlamaFileType.MOSTLY_F16)
    dequant = {"f32": weights, "f16": mf.verify_gguf(f16, cfg, ff, weights, tok, gguf.LlamaFileType.MOSTLY_F16)}
    types = {}
    for q in ("q8_0", "q4_0"):
        mf.llama_quantize(f16, gguf_path(work, q), q, nthread=1)
        dequant[q], types[q] = mf.read_quant_gguf(gguf_path(work, q), q, cfg, ff, tok, weights)

    # Held-out loss of every version (float32 math on the stored values).
    windows = heldout_windows(data["heldout_ids"])
    losses, oracles = {}, {}
    for key, w in dequant.items():
        oracles[key] = mf.make_model(model_config())
        mf.load_into(oracles[key], w)
        losses[key] = heldout_loss(oracles[key], windows)
        mf.log(f"held-out loss {key}: {losses[key]:.4f} ({len(windows)} windows of {TRAIN['seq']} tokens)")

    # Greedy references on the dequantized Q8_0 weights (the exact oracle for the engine on the Q8_0 file).
    refs = {}
    for q in COMMITTED:
        cases, rejected = [], []
        for text in REF_PROMPTS:
            ids = tok.encode(text).ids  # BOS + text, the engine's `-p` rule
            greedy, _, margins = mf.greedy_and_rows(oracles[q], ids, N_REF_GREEDY)
            case = {"text": text, "tokens": ids, "greedy": greedy, "greedy_margins": [round(m, 4) for m in margins],
                    "completion": tok.decode(greedy)}
            if min(margins) > mf.MIN_GREEDY_MARGIN and len(cases) < N_REF_PROMPTS:
                cases.append(case)
            elif len(cases) < N_REF_PROMPTS:
                rejected.append({"text": text, "min_margin": round(min(margins), 5)})
        mf.check(len(cases) == N_REF_PROMPTS, f"{q}: only {len(cases)} prompts without a near tie")
        refs[f"{NAME}-{q}.gguf"] = {"cases": cases, "rejected_near_ties": rejected}

    out.mkdir(parents=True, exist_ok=True)
    for q in COMMITTED:
        shutil.copyfile(gguf_path(work, q), out / gguf_path(work, q).name)
    shutil.copyfile(Path(data["stdlib"]) / "LICENSE.txt", out / "PYTHON-LICENSE.txt")
    mf.write_json(
        out / "reference.json",
        {
            "about": "Greedy continuations (no end-of-generation stop) of each prompt from transformers on the "
            "file's dequantized weights; tokens = BOS + the prompt's ids. Written by tools/train_demo.py.",
            "backend": mf.BACKEND,
            "min_margin_required": mf.MIN_GREEDY_MARGIN,
            "files": refs,
        },
    )
    samples = engine_checks(lfm_bin, out, refs) if lfm_bin else None
    write_card(out, work, data, tok, state, losses, types, refs, samples)


def engine_checks(lfm_bin: Path, out: Path, refs: dict) -> list[dict]:
    """`lfm run` on the committed files: greedy ids must equal the references; returns the card's samples."""
    for fname, r in refs.items():
        for case in r["cases"]:
            ids = ",".join(map(str, case["tokens"]))
            cmd = [str(lfm_bin), "run", "-m", str(out / fname), "--prompt-ids", ids, "-n", str(N_REF_GREEDY),
                   "--temp", "0", "--ignore-eos", "--json"]
            lines = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()
            got = [json.loads(s)["id"] for s in lines if '"id"' in s]
            mf.check(got == case["greedy"], f"lfm run greedy on {fname} / {case['text']!r}: {got} != {case['greedy']}")
            mf.log(f"lfm run greedy == transformers: {fname} / {case['text']!r}")
    fname = f"{NAME}-{COMMITTED[0]}.gguf"
    samples = []
    for text in SAMPLE_PROMPTS:
        args = ["run", "-m", f"models/demo/{fname}", "-p", text, *SAMPLE_ARGS]
        res = subprocess.run([str(lfm_bin), *args[:2], str(out / fname), *args[3:]], check=True,
                             capture_output=True, text=True)
        device = res.stderr.strip().splitlines()[-1].rsplit(" on ", 1)[-1].rstrip("]") if res.stderr.strip() else "?"
        samples.append({"cmd": "lfm " + " ".join(_shell_quote(a) for a in args), "prompt": text, "text": res.stdout,
                        "device": device})
    return samples


def _shell_quote(s: str) -> str:
    if s and all(c.isalnum() or c in "-_./:=" for c in s):
        return s
    return "'" + s.replace("'", "'\\''") + "'" if "\n" not in s else "$'" + s.replace("\n", "\\n") + "'"


# ----------------------------------------------------------------------------------------------------------
# Model card
# ----------------------------------------------------------------------------------------------------------


def write_card(out: Path, work: Path, data: dict, tok: Tokenizer, state: dict, losses: dict, types: dict,
               refs: dict, samples: list[dict] | None) -> None:
    cfg = model_config()
    n_params = sum(v.numel() for k, v in state["model"].items() if k != "lm_head.weight")
    tokens_seen = state["step"] * TRAIN["batch"] * TRAIN["seq"]
    n_train = len(data["train_ids"])
    bpt = data["heldout_bytes"] / len(data["heldout_ids"])
    evals = {e["step"]: e["heldout_loss"] for e in state["evals"]}
    curve = "\n".join(
        f"| {r['step']} | {r['step'] * TRAIN['batch'] * TRAIN['seq'] / 1e6:.2f} | {r['lr']:.2e} | "
        f"{r['train_loss']:.3f} | {evals[r['step']]:.3f} |" if r["step"] in evals else
        f"| {r['step']} | {r['step'] * TRAIN['batch'] * TRAIN['seq'] / 1e6:.2f} | {r['lr']:.2e} | "
        f"{r['train_loss']:.3f} | |"
        for r in state["log"] if r["step"] % 100 == 0 or r["step"] in (50, state["step"])
    )
    files = "\n".join(
        f"| `{p.name}` | {p.stat().st_size:,} | `{hashlib.sha256(p.read_bytes()).hexdigest()[:16]}…` |"
        for p in sorted(out.iterdir()) if p.is_file() and p.name != "README.md"
    )
    versions = (f"| {q.upper()} | {gguf_path(work, q).stat().st_size:,} | {losses[q]:.4f} | "
                f"{losses[q] / math.log(2) / bpt:.3f} |" for q in ("f16", "q8_0", "q4_0"))
    loss_rows = f"| f32 (HF checkpoint) | | {losses['f32']:.4f} | {losses['f32'] / math.log(2) / bpt:.3f} |\n" + \
        "\n".join(versions)
    type_mix = ", ".join(f"{t} x{n}" for t, n in sorted(_count(types["q8_0"].values()).items()))
    layers = ", ".join("attn" if t == A else "conv" for t in cfg.layer_types)
    ref_rows = "\n".join(
        f"| `{c['text']!r}` | {len(c['tokens'])} | {min(c['greedy_margins']):.3f} | `{c['completion'][:60]!r}…` |"
        for r in refs.values() for c in r["cases"]
    )
    rejected = "; ".join(f"`{x['text']!r}` (min gap {x['min_margin']})" for r in refs.values()
                         for x in r["rejected_near_ties"]) or "none"
    sample_device = f", on {samples[0]['device']}" if samples else ""
    heldout_list = ", ".join(f"`{r}`" for r in data["heldout"])
    heads = (f"{cfg.num_attention_heads} heads / {cfg.num_key_value_heads} KV heads, "
             f"head_dim {cfg.hidden_size // cfg.num_attention_heads}")
    untrained = f"positions beyond ~{TRAIN['seq']} are untrained"
    if samples:
        sample_text = "\n\n".join(f"`$ {s['cmd']}`\n\n```python\n{s['prompt']}{s['text'].rstrip()}\n```"
                                  for s in samples)
    else:
        sample_text = "(not produced: rerun with `--lfm-bin target/release/lfm`)"
    card = f"""# {NAME}: a tiny LFM2 that writes Python

The built-in model of `lfm run` / `lfm chat` (compiled into the binary), small enough to serve to a browser. A
{n_params / 1e6:.2f}M-parameter LFM2 with the real architecture (gated short-convolution and grouped-query
attention layers in LFM2's pattern, SwiGLU, RMSNorm, tied embedding) trained from scratch for
{state['train_seconds'] / 60:.0f} minutes on one CPU thread, on the Python standard library's source code. It
continues Python code plausibly (syntax, naming, docstrings, idioms); it knows nothing else, has seen only
{TRAIN['seq']}-token windows, and is not a chat model (its chat template is there so `lfm chat` works).

Made by `python3 tools/train_demo.py --lfm-bin target/release/lfm` (this card included); rerunning it
reproduces the recipe exactly and the numbers closely (float arithmetic differs across CPUs and libraries).

## Files

| file | bytes | sha256 |
|---|---|---|
{files}

`{NAME}-q8_0.gguf` is the model (tensor types: {type_mix}; llama.cpp's quantizer,
llama-cpp-python {mf.llama_cpp_version()}, from the F16 GGUF written with gguf-py as llama.cpp's LFM2 converter
does). `reference.json` holds the greedy references checked by `tests/demo_model.rs`. `PYTHON-LICENSE.txt` is
the licence of the training text (below). The F16 and Q4_0 files and the f32 Hugging Face checkpoint are
written to `{work.relative_to(REPO_ROOT) if work.is_relative_to(REPO_ROOT) else work}/` and not committed.

## Training data and licence

- Corpus: every `*.py` file of the CPython {platform.python_version()} standard library as installed at
  `{data['stdlib']}`, excluding test directories (`test/`, `tests/`, `idle_test/`), `site-packages/`,
  generated codec tables (`encodings/*` made by `gencodec.py`), `_sysconfigdata*` and `pydoc_data/topics.py`
  (the reference manual as a Python dict). {len(data['train']) + len(data['heldout'])} files,
  {(data['train_bytes'] + data['heldout_bytes']) / 1e6:.1f} MB; sha256 of the corpus (paths and texts)
  `{data['sha256']}`.
- Held out: the {len(data['heldout'])} files whose path hashes to 0 mod {HELDOUT_ONE_IN}
  ({data['heldout_bytes'] / 1e3:.0f} kB, {len(data['heldout_ids']):,} tokens): {heldout_list}.
- Training: the other {len(data['train'])} files ({data['train_bytes'] / 1e6:.1f} MB, {n_train:,} tokens).
- Licence: CPython's standard library is distributed under the **PSF License Agreement** (Python Software
  Foundation License Version 2), with the older BeOpen, CNRI and CWI licences for earlier parts; see the
  `LICENSE.txt` shipped with it, on the training machine `{Path(data['stdlib']) / 'LICENSE.txt'}`, copied
  here as `PYTHON-LICENSE.txt`. The PSF licence permits derivative works provided PSF's licence agreement
  and copyright notice are retained, which that copy does. These weights are a statistical summary of that
  code; text the model generates can reproduce fragments of it.

## Tokenizer

Byte-level BPE, vocab {VOCAB_SIZE} ({len(mf.SPECIAL_TOKENS)} special + 256 bytes + {VOCAB_SIZE - 270} merges),
trained with `tokenizers` {tokenizers.__version__} on the training files, built like the test fixtures'
tokenizer (`tools/make_fixtures.py`): Llama-3 split regex, `ignore_merges`, GGUF `tokenizer.ggml.pre = lfm2`,
BOS `<|startoftext|>` (1) added, EOS `<|im_end|>` (7), PAD `<|pad|>` (0), LFM2's special tokens at ids 0..13
and LFM2's chat template. {bpt:.2f} bytes per token on the held-out files. Files are separated by
`<|endoftext|>` (2) in the training stream, so the model may end a generation with it.

## Architecture

| | |
|---|---|
| parameters | {n_params:,} (tied embedding {VOCAB_SIZE * cfg.hidden_size:,}) |
| hidden | {cfg.hidden_size} |
| layers | {len(cfg.layer_types)}: {layers} |
| attention | {heads}, per-head q/k RMSNorm, NeoX RoPE theta {mf.ROPE_THETA:g} |
| short conv | kernel {cfg.conv_L_cache}, no bias |
| FFN (SwiGLU) | {cfg.intermediate_size} (`intermediate_size`, `block_auto_adjust_ff_dim` false) |
| vocab | {VOCAB_SIZE} |
| norm eps | {mf.NORM_EPS:g} |
| context | trained on {TRAIN['seq'] + 1}-token windows; `context_length` {mf.MAX_POS} as LFM2 ({untrained}) |

## Training

transformers {transformers.__version__} `Lfm2ForCausalLM` (sdpa attention), torch {torch.__version__}, one
CPU thread ({cpu_name()}), {'bf16 autocast (f32 master weights)' if state['bf16'] else 'float32'}.
Seed {SEED}. {state['step']} steps of {TRAIN['batch']} windows x ({TRAIN['seq']} + 1) tokens (BOS, then
{TRAIN['seq']} tokens of the training stream starting at a line start drawn uniformly with a generator seeded by
(seed, step)): {tokens_seen / 1e6:.1f}M predicted tokens, {tokens_seen / n_train:.1f} passes over the training
stream. AdamW (betas {TRAIN['betas']}, eps 1e-8, weight decay {TRAIN['weight_decay']} on matrices), peak LR
{TRAIN['lr']:g}, {TRAIN['warmup']} warm-up steps, cosine decay to {TRAIN['min_lr_frac']:g} x peak, gradient
clip {TRAIN['grad_clip']}, init std {TRAIN['init_std']}. Wall time of the training steps
{state['train_seconds'] / 60:.1f} minutes.

Loss curve (train loss: mean over the last 50 steps; held-out: the first {EVAL_WINDOWS} held-out windows,
float32):

| step | tokens (M) | LR | train loss | held-out loss |
|---|---|---|---|---|
{curve}

Final held-out loss over all {len(heldout_windows(data['heldout_ids']))} held-out windows (float32 math on the
stored weights; bits per byte = loss / ln 2 / {bpt:.2f} bytes per token):

| version | GGUF bytes | held-out loss (nats/token) | bits/byte |
|---|---|---|---|
{loss_rows}

## Engine vs transformers

`tests/demo_model.rs` runs the engine on `{NAME}-q8_0.gguf` on every test backend and requires the greedy
ids of `reference.json`: transformers (float32, eager attention, a full forward per step) on the Q8_0 weights
as dequantized by gguf-py, which is exactly what the engine computes with (it keeps Q8_0 on the device and
decodes it in f32). Prompts are kept only if no greedy step is a near tie (top-1/top-2 logit gap
> {mf.MIN_GREEDY_MARGIN}, ~100x the engine's f32 error):

| prompt | prompt tokens | min gap | greedy continuation (start) |
|---|---|---|---|
{ref_rows}

Prompts skipped for a near tie: {rejected}.

## Samples from the engine

`lfm run` (this engine{sample_device}) with the default sampler (temperature 0.3, min-p 0.15, repetition
penalty 1.05) and seed 1 (not picked: the first seed tried); the prompt, then the generated text. Like any
model this small it drifts off topic and falls into loops at low temperature, and it writes docstrings
readily because the standard library does:

{sample_text}
"""
    (out / "README.md").write_text(card, encoding="utf-8")
    mf.log(f"wrote {out / 'README.md'}")


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def _count(xs) -> dict:
    out: dict = {}
    for x in xs:
        out[x] = out.get(x, 0) + 1
    return out


# ----------------------------------------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------------------------------------


def prepare(work: Path, stdlib: Path) -> tuple[dict, Tokenizer]:
    corpus = load_corpus(stdlib)
    mf.log(f"corpus: {len(corpus['train'])} training files ({corpus['train_bytes']:,} bytes), "
           f"{len(corpus['heldout'])} held out ({corpus['heldout_bytes']:,} bytes), sha256 {corpus['sha256'][:16]}...")
    meta_path, tok_path, ids_path = work / "data.json", work / "tokenizer.json", work / "tokens.npz"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    want = {"sha256": corpus["sha256"], "vocab": VOCAB_SIZE, "newline_split_p": NEWLINE_SPLIT_P}
    if meta != want or not ids_path.exists():
        t0 = time.perf_counter()
        tok = train_tokenizer(corpus)
        tok.save(str(tok_path))
        tok = Tokenizer.from_file(str(tok_path))
        train_ids = encode_stream(tok, [corpus["texts"][r] for r in corpus["train"]])
        split_ids, n_split = split_newlines(tok, train_ids)
        mf.check(tok.decode(split_ids.tolist()) == tok.decode(train_ids.tolist()), "newline splits change the text")
        train_ids = split_ids
        mf.log(f"newline splits: {n_split:,}")
        heldout_ids = encode_stream(tok, [corpus["texts"][r] for r in corpus["heldout"]])
        np.savez(ids_path, train=train_ids, heldout=heldout_ids)
        meta_path.write_text(json.dumps(want))
        mf.log(f"tokenizer + encoding: {time.perf_counter() - t0:.0f}s")
    tok = Tokenizer.from_file(str(tok_path))
    ids = np.load(ids_path)
    data = {k: corpus[k] for k in ("stdlib", "train", "heldout", "sha256", "train_bytes", "heldout_bytes")}
    data["train_ids"], data["heldout_ids"] = ids["train"], ids["heldout"]
    data["train_starts"] = line_starts(tok, data["train_ids"], TRAIN["seq"])
    mf.log(f"tokens: {len(data['train_ids']):,} train, {len(data['heldout_ids']):,} held out; "
           f"{corpus['train_bytes'] / len(data['train_ids']):.2f} bytes/token")
    return data, tok


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=REPO_ROOT / "target" / "demo-train", help="scratch/checkpoints")
    ap.add_argument("--out", type=Path, default=REPO_ROOT / "models" / "demo", help="committed artifacts")
    ap.add_argument("--stdlib", type=Path, default=Path(sysconfig.get_paths()["stdlib"]),
                    help="Python standard library to train on (default: this interpreter's)")
    ap.add_argument("--lfm-bin", type=Path, help="the `lfm` binary: check greedy ids and write samples into the card")
    ap.add_argument("--steps", type=int, help=f"override the number of steps (default {TRAIN['steps']}; for trials)")
    ap.add_argument("--prepare-only", action="store_true", help="stop after the tokenizer and the encoded corpus")
    args = ap.parse_args()
    if args.steps:
        TRAIN["steps"] = args.steps
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    data, tok = prepare(work, args.stdlib.resolve())
    if args.prepare_only:
        return
    state = train(work, data)
    export(work, args.out.resolve(), data, tok, state, args.lfm_bin.resolve() if args.lfm_bin else None)


if __name__ == "__main__":
    main()
