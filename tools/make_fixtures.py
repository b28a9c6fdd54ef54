#!/usr/bin/env python3
"""Generate the test fixtures in tests/fixtures/: tiny random-weight LFM2 models + reference outputs.

    python3 tools/make_fixtures.py [--out DIR]      # default DIR = tests/fixtures

What it writes (everything below DIR is regenerated; see DIR/README.md, which this script writes too):

  tokenizer     A byte-level BPE trained with Hugging Face `tokenizers` on a fixed list of Python
                standard-library files: Llama-3 split regex (Isolated) + ByteLevel(add_prefix_space=False,
                use_regex=False), ignore_merges=True, ByteLevel decoder, BOS added by a TemplateProcessing
                post-processor, LFM2's special tokens at ids 0..13 (BOS 1 <|startoftext|>, EOS 7 <|im_end|>,
                PAD 0 <|pad|>) and LFM2's chat template (docs/lfm2-spec.md section 4). Both models share it.
  tiny-a/       HF dir, current config keys (`intermediate_size`, `layer_types`, `rope_parameters`,
                `tie_word_embeddings`), single f32 `model.safetensors`.
  tiny-a-f32.gguf, tiny-a-f16.gguf
                GGUF files written with gguf-py the way llama.cpp's LFM2 converter does (spec section 3);
                in the F16 file norms and conv kernels stay F32.
  tiny-b/       HF dir, LEGACY config keys (`block_ff_dim` + auto-adjust, `full_attn_idxs`, `tie_embedding`,
                `theta`), BF16 weights in a 2-shard checkpoint with `model.safetensors.index.json`.
  tiny-b-bf16.gguf
                GGUF, matrices BF16, norms and conv kernels F32.
  tiny-q-{q4_0,q8_0,q4_k_m,q6_k}.gguf
                hidden 256 / FFN 512 model (K-quant-compatible widths) written as F16 GGUF in a temp dir, then
                quantized by llama.cpp's own quantizer (llama-cpp-python `llama_model_quantize`, default params).
  expected/     Reference logits and greedy continuations from transformers `Lfm2ForCausalLM` (CPU, float32,
                eager attention, every logit from ONE full forward over the whole sequence, no KV cache); for tiny-q
                on the weights dequantized by gguf-py (exact oracle), plus `*.llama.*` logits/greedy from llama.cpp.
  tokenizer_cases.json, chat_cases.json
                Tokenizer and chat-template cases rendered/encoded by `tokenizers` / transformers.

Weights are random but deterministic: every tensor gets its own numpy PCG64 stream seeded from
(SEED, model name, tensor name). Linear and conv weights ~ N(0, 1/fan_in), RMSNorm weights 1 + N(0, 0.1),
and the tied embedding is scaled so that the final logits have std ~3 (so every op visibly moves the output).

The script checks what it writes: transformers reads both configs as intended (incl. the legacy SwiGLU
width rule), HF dirs reload bit-exactly, GGUF files re-read with gguf-py's GGUFReader carry the expected
metadata/types and reproduce the HF logits, greedy ids equal the argmax of the stored rows, and an
independent NumPy forward pass written from docs/lfm2-spec.md section 2 matches transformers.

Options: --check-lfm-bin PATH runs `PATH synth` / `PATH quantize` afterwards and loads each output in llama.cpp
(tools/check_llama.py), comparing `lfm quantize` of tiny-q's F16 file with llama.cpp's quantization tensor by
tensor (--check-only: skip generation); --search-tiny-q-seed A B prints the oracle greedy margin per seed.

Requires: python3 with torch (CPU), transformers, tokenizers, gguf (gguf-py), numpy, jinja2, safetensors,
llama-cpp-python (LLAMA_CPP_PYTHON below; its llama.cpp quantizer determines the tiny-q bytes).
The tokenizer depends on the training text, i.e. on the Python 3.11 stdlib sources found via `sysconfig`;
the README records the corpus sha256, and the script warns when it differs from the committed one.
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import json
import platform
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import zlib
from collections import Counter
from pathlib import Path

import gguf
import jinja2
import numpy as np
import safetensors
import tokenizers
import torch
import transformers
from safetensors.torch import save_file
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import AutoTokenizer, Lfm2Config, Lfm2ForCausalLM

# SEED was picked (by trying 1..40) so that no greedy step of any reference is a near tie: the smallest
# top-1/top-2 logit gap is > MIN_GREEDY_MARGIN, ~100x the error of an f32 implementation, so tests can
# demand exact greedy ids. Most seeds have some gap < 0.005.
SEED = 23
MIN_GREEDY_MARGIN = 0.02
MAX_TOTAL_BYTES = 8_500_000  # whole fixture directory (incl. files other tools write there); tiny-q is ~4.9 MB
REPO_ROOT = Path(__file__).resolve().parent.parent

# ----------------------------------------------------------------------------------------------------------
# Tokenizer definition
# ----------------------------------------------------------------------------------------------------------

VOCAB_SIZE = 360  # 14 special + 256 byte symbols + 89 trained merges + 1 appended merge (below)

# One merge appended after training whose result is unreachable by plain BPE: the pieces of " end" merge as
# "Ġ" "en" "d" ("en" outranks "Ġe" and "nd"), so the last-ranked ("Ġe", "nd") never fires. With
# ignore_merges=True the pre-token "Ġend" is a whole vocab entry and is emitted directly, so " end" encodes
# to one token only if an implementation honours ignore_merges (as llama.cpp's LLAMA3/"lfm2" pre-type does).
EXTRA_MERGE = ("Ġe", "nd")

SPECIAL_TOKENS = [
    "<|pad|>",  # 0
    "<|startoftext|>",  # 1  BOS
    "<|endoftext|>",  # 2
    "<|fim_pre|>",  # 3
    "<|fim_mid|>",  # 4
    "<|fim_suf|>",  # 5
    "<|im_start|>",  # 6
    "<|im_end|>",  # 7  EOS
    "<|tool_list_start|>",  # 8
    "<|tool_list_end|>",  # 9
    "<|tool_call_start|>",  # 10
    "<|tool_call_end|>",  # 11
    "<|tool_response_start|>",  # 12
    "<|tool_response_end|>",  # 13
]
PAD_ID, BOS_ID, EOS_ID = 0, 1, 7

# Llama-3 pre-tokenizer split regex (docs/lfm2-spec.md section 4; llama.cpp maps pre "lfm2" to LLAMA3).
LLAMA3_SPLIT_REGEX = (
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# LFM2's chat template, verbatim from docs/lfm2-spec.md section 4 (tab-indented lines; every tag trims).
CHAT_TEMPLATE = "\n".join(
    [
        "{{- bos_token -}}",
        '{%- set system_prompt = "" -%}',
        '{%- set ns = namespace(system_prompt="") -%}',
        '{%- if messages[0]["role"] == "system" -%}',
        '\t{%- set ns.system_prompt = messages[0]["content"] -%}',
        "\t{%- set messages = messages[1:] -%}",
        "{%- endif -%}",
        "{%- if tools -%}",
        '\t{%- set ns.system_prompt = ns.system_prompt + ("\\n" if ns.system_prompt else "")'
        ' + "List of tools: <|tool_list_start|>[" -%}',
        "\t{%- for tool in tools -%}",
        "\t\t{%- if tool is not string -%}{%- set tool = tool | tojson -%}{%- endif -%}",
        "\t\t{%- set ns.system_prompt = ns.system_prompt + tool -%}",
        '\t\t{%- if not loop.last -%}{%- set ns.system_prompt = ns.system_prompt + ", " -%}{%- endif -%}',
        "\t{%- endfor -%}",
        '\t{%- set ns.system_prompt = ns.system_prompt + "]<|tool_list_end|>" -%}',
        "{%- endif -%}",
        '{%- if ns.system_prompt -%}{{- "<|im_start|>system\\n" + ns.system_prompt + "<|im_end|>\\n" -}}{%- endif -%}',
        "{%- for message in messages -%}",
        '\t{{- "<|im_start|>" + message["role"] + "\\n" -}}',
        '\t{%- set content = message["content"] -%}',
        "\t{%- if content is not string -%}{%- set content = content | tojson -%}{%- endif -%}",
        '\t{%- if message["role"] == "tool" -%}{%- set content = "<|tool_response_start|>" + content'
        ' + "<|tool_response_end|>" -%}{%- endif -%}',
        '\t{{- content + "<|im_end|>\\n" -}}',
        "{%- endfor -%}",
        '{%- if add_generation_prompt -%}{{- "<|im_start|>assistant\\n" -}}{%- endif -%}',
    ]
)

# Tokenizer training text: a fixed, sorted list of stdlib files (code, docstrings, a license text).
CORPUS_FILES = [
    "LICENSE.txt",
    "argparse.py",
    "difflib.py",
    "email/message.py",
    "html/__init__.py",
    "json/__init__.py",
    "json/decoder.py",
    "json/encoder.py",
    "string.py",
    "textwrap.py",
]

# ----------------------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------------------

TINY_A = {
    "name": "tiny-a",
    "hidden": 64,
    "layer_types": ["conv", "conv", "full_attention", "conv", "full_attention", "conv"],
    "heads": 4,
    "kv_heads": 2,
    "ff": 48,  # intermediate_size, no auto-adjust: effective width 48 (non-square FFN)
}
TINY_B = {
    "name": "tiny-b",
    "hidden": 64,
    "layer_types": ["full_attention", "conv", "conv", "full_attention", "conv"],
    "heads": 4,
    "kv_heads": 1,  # GQA 4:1
    "block_ff_dim": 76,  # legacy: auto-adjust -> int(2*76/3) = 50 -> round up to a multiple of 8 -> 56
    "block_multiple_of": 8,
}
# tiny-q: K-quant-compatible widths (every matrix row length ne0 is 256 or 512, a multiple of the 256-weight
# K-quant super-block; ffn_down rows hold two super-blocks). Quantized by llama.cpp's own quantizer.
TINY_Q = {
    "name": "tiny-q",
    "hidden": 256,
    "layer_types": ["conv", "full_attention"],
    "heads": 4,  # head_dim 64
    "kv_heads": 1,  # GQA 4:1
    "ff": 512,  # intermediate_size, no auto-adjust
}
# Picked like SEED, by trying 1..250 (python3 tools/make_fixtures.py --search-tiny-q-seed 1 250; seed 1 was
# the best of 1..100 at 0.028): the smallest top-1/top-2 gap of
# the exact-oracle greedy steps over all four quantized files and three prompts is > MIN_GREEDY_MARGIN.
TINY_Q_SEED = 191
# file suffix -> (llama_ftype name suffix, base ggml type, general.file_type)
TINY_Q_QUANTS = {
    "q4_0": ("MOSTLY_Q4_0", "Q4_0", 2),
    "q8_0": ("MOSTLY_Q8_0", "Q8_0", 7),
    "q4_k_m": ("MOSTLY_Q4_K_M", "Q4_K", 15),
    "q6_k": ("MOSTLY_Q6_K", "Q6_K", 18),
}
LLAMA_CPP_PYTHON = "0.3.36"  # the llama-cpp-python release (and so the llama.cpp quantizer) used
CONV_L_CACHE = 3
NORM_EPS = 1e-5
ROPE_THETA = 1e6
MAX_POS = 128000
LOGIT_STD_TARGET = 3.0


def swiglu_width(ff: int, auto_adjust: bool, multiplier: float | None, multiple_of: int) -> int:
    """LFM2's SwiGLU width rule (spec section 1.1; identical in HF Lfm2MLP and llama.cpp's converter)."""
    if auto_adjust:
        ff = int(2 * ff / 3)
        if multiplier is not None:
            ff = int(multiplier * ff)
            ff = multiple_of * ((ff + multiple_of - 1) // multiple_of)
    return ff


# ----------------------------------------------------------------------------------------------------------
# Prompts and test cases
# ----------------------------------------------------------------------------------------------------------

P1_TEXT = """fn softmax(xs: &mut [f32]) {
    let max = xs.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for x in xs.iter_mut() { *x = (*x - max).exp(); sum += *x; }
}
"""
P1_LEN = 30  # BOS + the first 30 tokens of P1_TEXT

P2_TEXT = (
    "The river begins as a thin thread of meltwater high in the mountains, where the snow never quite "
    "disappears, even in August. By the end of the first gorge it has gathered the strength of a "
    "hundred small streams, and the farmers who live along its banks have learned to read its moods: a "
    "pale green current means the glaciers are melting fast, a brown one means that rain has fallen "
    "somewhere upstream, and a clear, slow river in late autumn means the first frost is only a few days "
    "away. In 1897 a survey team measured its length at 412 kilometres; a second survey in 1954, using "
    "better instruments, found 398. Nobody could agree on which number to print in the school books, so "
    "for many years both were printed side by side, with a small footnote explaining the difference. "
    "Children in the valley still argue about it.\n\n"
    "Further downstream the river widens into a long, narrow lake. The old ferry that crossed it was "
    "replaced by a bridge in 1968, but the ferryman's house is still there, painted blue, with a garden "
    "full of tomatoes and a sign that says \"Fresh eggs - 2 for 1\" that nobody has updated in thirty "
    "years. On summer evenings the lake is so still that the mountains appear twice: once in the sky and "
    "once, upside down, in the water. Fishermen say that the best trout are caught exactly where the two "
    "images meet, although none of them has ever explained how one is supposed to find that place.\n\n"
    "def count_words(text):\n"
    "    counts = {}\n"
    "    for word in text.split():\n"
    "        counts[word] = counts.get(word, 0) + 1\n"
    "    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))\n\n"
    "At the far end of the lake the water slips over a low stone weir and becomes a river again, wider "
    "and slower now, carrying barges of gravel and timber towards the sea. The towns along this stretch "
    "are older than the bridge, older than the survey, older than anyone can remember, and each of them "
    "claims to be the place where the river truly begins to matter."
)
P2_LEN = 300  # BOS + the first 300 tokens of P2_TEXT: crosses prefill chunks of 64 / 128 / 256
P3_LEN = 20  # BOS + 20 seeded random non-special ids
N_GREEDY = 40
P2Q_LEN = 150  # tiny-q's p2: BOS + the first 150 tokens of P2_TEXT (crosses prefill chunks of 64 / 128)
N_GREEDY_Q = 32

TOKENIZER_CASES = [
    "Hello world",
    "Hello, world! How are you today?",
    "The end. Send: weekend end\nend",  # " end" -> one token only via ignore_merges (see EXTRA_MERGE)
    " leading space",
    "   three leading spaces and trailing ones   ",
    "don't I'll we've they're she'd he's I'm",
    "DON'T WE'VE I'LL It'S",
    "''''' quotes 'single' \"double\" `back`",
    "Café naïve résumé façade Øresund",
    "Привет, мир! Ελληνικά",
    "日本語のテキストと中文字符",
    "emoji 🚀🦙 and 😶‍🌫️ zwj ✅",
    "12345678901234567890",
    "3.14159, 1,000,000 and 0x1F -42",
    "tabs\tand\t\tmore tabs",
    "line1\nline2\r\nline3\n\n\nend\n",
    "    indented code\n        deeper\n",
    "def f(x):\n    return x**2  # square\n",
    "x = {'key': [1, 2, 3]}; y = \"q\" ... !!!???",
    "non\u00a0breaking\u3000ideographic space",
    "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
    "<|startoftext|>already has a BOS",
    'text <|tool_call_start|>[f(a="v")]<|tool_call_end|> inside',
    "<|im_start| is not special <|unknown|>",
    "",
    " ",
    "\n",
    "a",
]

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather for a city, température in °C",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "description": "City name"},
                    "days": {"type": "integer", "description": "Forecast length"},
                },
                "required": ["city"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "search",
            "parameters": {
                "type": "object",
                "properties": {"query": {"type": "string"}, "limit": {"type": "integer"}},
                "required": ["query", "limit"],
            },
            "description": "Search the web",
        },
    },
]

CHAT_CASES = [
    {
        "name": "system_user_generation_prompt",
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "What is the capital of France?"},
        ],
        "add_generation_prompt": True,
    },
    {
        "name": "multi_turn",
        "messages": [
            {"role": "user", "content": "Hi!"},
            {"role": "assistant", "content": "Hello! How can I help?"},
            {"role": "user", "content": "Tell me a joke about tabs\tand newlines\n."},
        ],
        "add_generation_prompt": True,
    },
    {
        "name": "no_system_no_generation_prompt",
        "messages": [{"role": "user", "content": "Just one message, ünïcødé 日本"}],
        "add_generation_prompt": False,
    },
    {
        "name": "tools",
        "messages": [
            {"role": "system", "content": "Use tools when needed."},
            {"role": "user", "content": "Weather in Paris?"},
        ],
        "tools": TOOLS,
        "add_generation_prompt": True,
    },
    {
        "name": "tools_without_system",
        "messages": [{"role": "user", "content": "Search for rust webgpu"}],
        "tools": TOOLS,
        "add_generation_prompt": True,
    },
    {
        "name": "tool_response",
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": '<|tool_call_start|>[get_weather(city="Paris")]<|tool_call_end|>'},
            {"role": "tool", "content": '{"temperature": 21, "sky": "clear"}'},
        ],
        "tools": TOOLS,
        "add_generation_prompt": True,
    },
    {
        "name": "tool_response_dict_content",
        "messages": [
            {"role": "user", "content": "Weather?"},
            {"role": "tool", "content": {"temperature": 21, "sky": "clear", "hourly": [20, 22]}},
        ],
        "add_generation_prompt": True,
    },
    {
        "name": "assistant_last",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "2+2?"},
            {"role": "assistant", "content": "4"},
        ],
        "add_generation_prompt": False,
    },
]

BACKEND = (
    f"transformers {transformers.__version__} Lfm2ForCausalLM, torch {torch.__version__.split('+')[0]} CPU, "
    "float32, eager attention, one full forward per sequence (use_cache=False)"
)

# ----------------------------------------------------------------------------------------------------------
# Small helpers
# ----------------------------------------------------------------------------------------------------------


def log(msg: str) -> None:
    print(msg, flush=True)


def check(cond: bool, msg: str) -> None:
    if not cond:
        raise SystemExit(f"CHECK FAILED: {msg}")


def to_json(obj, indent: int = 0) -> str:
    """Readable JSON: objects and lists of objects are indented, lists of scalars stay on one line."""
    pad = "  " * indent
    if isinstance(obj, dict):
        if not obj:
            return "{}"
        items = [f"{pad}  {json.dumps(k, ensure_ascii=False)}: {to_json(v, indent + 1)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, (list, tuple)):
        if all(not isinstance(x, (dict, list, tuple)) for x in obj):
            return json.dumps(list(obj), ensure_ascii=False)
        items = [pad + "  " + to_json(x, indent + 1) for x in obj]
        return "[\n" + ",\n".join(items) + "\n" + pad + "]"
    return json.dumps(obj, ensure_ascii=False)


def write_json(path: Path, obj) -> None:
    path.write_text(to_json(obj) + "\n", encoding="utf-8")


def save_npy(path: Path, arr: np.ndarray) -> None:
    np.save(path, np.ascontiguousarray(arr, dtype="<f4"))


def rng_for(*parts: str | int, seed: int = SEED) -> np.random.Generator:
    """A numpy stream that depends only on the seed and the given names (stable across runs and machines)."""
    return np.random.default_rng([seed] + [zlib.crc32(str(p).encode()) for p in parts])


# ----------------------------------------------------------------------------------------------------------
# Tokenizer
# ----------------------------------------------------------------------------------------------------------


def training_corpus() -> tuple[list[str], str]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    texts = [(stdlib / f).read_text(encoding="utf-8") for f in CORPUS_FILES]
    digest = hashlib.sha256("\0".join(texts).encode()).hexdigest()
    return texts, digest


def build_tokenizer() -> tuple[Tokenizer, str]:
    texts, digest = training_corpus()
    tok = Tokenizer(models.BPE(ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(LLAMA3_SPLIT_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE - 1,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<|startoftext|> $A",
        pair="<|startoftext|> $A <|startoftext|> $B",
        special_tokens=[("<|startoftext|>", BOS_ID)],
    )

    # Append EXTRA_MERGE as the last (lowest-priority) merge and its result as the last token.
    spec = json.loads(tok.to_str())
    check(spec["model"]["ignore_merges"] is True, "ignore_merges lost in training")
    vocab, merges = spec["model"]["vocab"], spec["model"]["merges"]
    left, right = EXTRA_MERGE
    check(left in vocab and right in vocab and left + right not in vocab, f"cannot append merge {EXTRA_MERGE}")
    vocab[left + right] = VOCAB_SIZE - 1
    merges.append([left, right])
    tok = Tokenizer.from_str(json.dumps(spec))
    spec["model"]["ignore_merges"] = False
    plain_bpe = Tokenizer.from_str(json.dumps(spec))
    check(len(plain_bpe.encode(" end", add_special_tokens=False).ids) > 1, "appended merge is reachable")
    check(tok.encode(" end", add_special_tokens=False).ids == [VOCAB_SIZE - 1], "ignore_merges not effective")

    check(tok.get_vocab_size() == VOCAB_SIZE, f"vocab {tok.get_vocab_size()} != {VOCAB_SIZE}")
    for i, s in enumerate(SPECIAL_TOKENS):
        check(tok.token_to_id(s) == i, f"special token {s} not at id {i}")
    return tok, digest


def tokenizer_config() -> dict:
    added = {
        str(i): {
            "content": s,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": True,
        }
        for i, s in enumerate(SPECIAL_TOKENS)
    }
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": SPECIAL_TOKENS[BOS_ID],
        "eos_token": SPECIAL_TOKENS[EOS_ID],
        "pad_token": SPECIAL_TOKENS[PAD_ID],
        "add_bos_token": True,
        "add_eos_token": False,
        "model_max_length": MAX_POS,
        "clean_up_tokenization_spaces": False,
        "legacy": False,
        "added_tokens_decoder": added,
        "chat_template": CHAT_TEMPLATE,
    }


def write_tokenizer_files(tok: Tokenizer, hf_dir: Path) -> None:
    tok.save(str(hf_dir / "tokenizer.json"), pretty=True)
    write_json(hf_dir / "tokenizer_config.json", tokenizer_config())


# ----------------------------------------------------------------------------------------------------------
# Configs and weights
# ----------------------------------------------------------------------------------------------------------


def tiny_a_config() -> Lfm2Config:
    return current_config(TINY_A)


def current_config(s: dict) -> Lfm2Config:
    """An Lfm2Config with the current keys (`intermediate_size` used as is, no auto-adjust)."""
    cfg = Lfm2Config(
        vocab_size=VOCAB_SIZE,
        hidden_size=s["hidden"],
        intermediate_size=s["ff"],
        block_auto_adjust_ff_dim=False,
        num_hidden_layers=len(s["layer_types"]),
        layer_types=s["layer_types"],
        num_attention_heads=s["heads"],
        num_key_value_heads=s["kv_heads"],
        max_position_embeddings=MAX_POS,
        norm_eps=NORM_EPS,
        conv_L_cache=CONV_L_CACHE,
        conv_bias=False,
        rope_parameters={"rope_type": "default", "rope_theta": ROPE_THETA},
        tie_word_embeddings=True,
        pad_token_id=PAD_ID,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
    )
    cfg.architectures = ["Lfm2ForCausalLM"]
    return cfg


def tiny_b_legacy_config() -> dict:
    """config.json in the style of the original LFM2 checkpoints (legacy keys, incl. unused ones)."""
    s = TINY_B
    return {
        "architectures": ["Lfm2ForCausalLM"],
        "model_type": "lfm2",
        "block_auto_adjust_ff_dim": True,
        "block_dim": s["hidden"],
        "block_ff_dim": s["block_ff_dim"],
        "block_ffn_dim_multiplier": 1.0,
        "block_mlp_init_scale": 1.0,
        "block_multiple_of": s["block_multiple_of"],
        "block_norm_eps": NORM_EPS,
        "block_use_swiglu": True,
        "bos_token_id": BOS_ID,
        "conv_L_cache": CONV_L_CACHE,
        "conv_bias": False,
        "conv_dim": s["hidden"],
        "eos_token_id": EOS_ID,
        "full_attn_idxs": [i for i, t in enumerate(s["layer_types"]) if t == "full_attention"],
        "hidden_size": s["hidden"],
        "max_position_embeddings": MAX_POS,
        "norm_eps": NORM_EPS,
        "num_attention_heads": s["heads"],
        "num_heads": s["heads"],
        "num_hidden_layers": len(s["layer_types"]),
        "num_key_value_heads": s["kv_heads"],
        "pad_token_id": PAD_ID,
        "theta": ROPE_THETA,
        "tie_embedding": True,
        "torch_dtype": "bfloat16",
        "use_cache": True,
        "vocab_size": VOCAB_SIZE,
    }


def random_weights(model_name: str, shapes: dict[str, tuple[int, ...]], seed: int = SEED) -> dict[str, np.ndarray]:
    """Deterministic random weights (f32) for every HF tensor name except the tied lm_head."""
    out = {}
    for name, shape in shapes.items():
        rng = rng_for(model_name, name, seed=seed)
        z = rng.standard_normal(shape)
        if name.endswith("norm.weight") or name.endswith("layernorm.weight"):
            w = 1.0 + 0.1 * z  # RMSNorm gains
        elif name == "model.embed_tokens.weight":
            w = z  # unit normal; scaled by calibrate_embedding()
        elif name.endswith("conv.conv.weight"):
            w = z / np.sqrt(shape[1] * shape[2])  # depthwise [H, 1, L]: fan_in = L
        else:
            w = z / np.sqrt(shape[1])  # nn.Linear [out, in]: fan_in = in
        out[name] = w.astype(np.float32)
    return out


def hf_shapes(model: Lfm2ForCausalLM) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items() if k != "lm_head.weight"}


def load_into(model: Lfm2ForCausalLM, weights: dict[str, np.ndarray]) -> None:
    missing, unexpected = model.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()}, strict=False)
    check(not unexpected and set(missing) <= {"lm_head.weight"}, f"state dict mismatch {missing} {unexpected}")
    check(torch.equal(model.lm_head.weight, model.model.embed_tokens.weight), "lm_head is not tied")


@torch.no_grad()
def full_logits(model: Lfm2ForCausalLM, ids: list[int]) -> np.ndarray:
    out = model(input_ids=torch.tensor([ids], dtype=torch.long), use_cache=False)
    return out.logits[0].float().numpy()


def calibrate_embedding(model: Lfm2ForCausalLM, weights: dict[str, np.ndarray], calib_ids: list[int]) -> float:
    """Scale the (tied) embedding so the logits over `calib_ids` have std LOGIT_STD_TARGET."""
    base = weights["model.embed_tokens.weight"].copy()
    scale = LOGIT_STD_TARGET / np.sqrt(base.shape[1])
    for _ in range(4):
        weights["model.embed_tokens.weight"] = (base * scale).astype(np.float32)
        load_into(model, weights)
        std = float(full_logits(model, calib_ids).std())
        scale *= LOGIT_STD_TARGET / std
    weights["model.embed_tokens.weight"] = (base * scale).astype(np.float32)
    return scale


def to_bf16(weights: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(v).to(torch.bfloat16) for k, v in weights.items()}


def make_model(cfg: Lfm2Config) -> Lfm2ForCausalLM:
    cfg._attn_implementation = "eager"
    return Lfm2ForCausalLM(cfg).eval()


def load_hf(hf_dir: Path) -> Lfm2ForCausalLM:
    return Lfm2ForCausalLM.from_pretrained(hf_dir, dtype=torch.float32, attn_implementation="eager").eval()


# ----------------------------------------------------------------------------------------------------------
# HF checkpoint writing
# ----------------------------------------------------------------------------------------------------------


def write_generation_config(hf_dir: Path) -> None:
    write_json(
        hf_dir / "generation_config.json",
        {"bos_token_id": BOS_ID, "eos_token_id": EOS_ID, "pad_token_id": PAD_ID},
    )


def write_sharded_bf16(hf_dir: Path, tensors: dict[str, torch.Tensor], split_layer: int) -> None:
    """Two shards: embedding + layers < split_layer, then the rest; plus model.safetensors.index.json."""

    def shard_of(name: str) -> int:
        if name.startswith("model.layers."):
            return 1 if int(name.split(".")[2]) < split_layer else 2
        return 1 if name == "model.embed_tokens.weight" else 2

    files = {1: "model-00001-of-00002.safetensors", 2: "model-00002-of-00002.safetensors"}
    weight_map = {}
    for shard, fname in files.items():
        part = {k: v.contiguous() for k, v in tensors.items() if shard_of(k) == shard}
        save_file(part, str(hf_dir / fname), metadata={"format": "pt"})
        weight_map.update({k: fname for k in part})
    total = sum(v.numel() * v.element_size() for v in tensors.values())
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    write_json(hf_dir / "model.safetensors.index.json", index)


# ----------------------------------------------------------------------------------------------------------
# GGUF (mirrors llama.cpp's LFM2 converter: conversion/lfm2.py + conversion/base.py)
# ----------------------------------------------------------------------------------------------------------

HF_TO_GGUF_LAYER = {
    "operator_norm": "attn_norm",
    "ffn_norm": "ffn_norm",
    "feed_forward.w1": "ffn_gate",
    "feed_forward.w3": "ffn_up",
    "feed_forward.w2": "ffn_down",
    "conv.conv": "shortconv.conv",
    "conv.in_proj": "shortconv.in_proj",
    "conv.out_proj": "shortconv.out_proj",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.out_proj": "attn_output",
    "self_attn.q_layernorm": "attn_q_norm",
    "self_attn.k_layernorm": "attn_k_norm",
}


def gguf_name(hf_name: str) -> str:
    if hf_name == "model.embed_tokens.weight":
        return "token_embd.weight"
    if hf_name == "model.embedding_norm.weight":
        return "token_embd_norm.weight"  # the FINAL norm (llama.cpp's name for it)
    _, _, bid, rest = hf_name.split(".", 3)
    stem = rest.removesuffix(".weight")
    return f"blk.{bid}.{HF_TO_GGUF_LAYER[stem]}.weight"


def hf_name_from_gguf(name: str) -> str:
    if name == "token_embd.weight":
        return "model.embed_tokens.weight"
    if name == "token_embd_norm.weight":
        return "model.embedding_norm.weight"
    gguf_to_hf = {v: k for k, v in HF_TO_GGUF_LAYER.items()}
    blk, bid, rest = name.split(".", 2) if name.count(".") >= 2 else (name, "", "")
    stem = rest.removesuffix(".weight")
    check(blk == "blk" and stem in gguf_to_hf, f"unexpected GGUF tensor {name}")
    return f"model.layers.{bid}.{gguf_to_hf[stem]}.weight"


def gguf_tensor_type(name: str, data: np.ndarray, ftype: gguf.LlamaFileType) -> gguf.GGMLQuantizationType:
    """The converter's type choice: 1-D tensors, *_norm.weight and the short-conv kernel stay F32."""
    if data.ndim <= 1 or name.endswith("_norm.weight") or name.endswith("shortconv.conv.weight"):
        return gguf.GGMLQuantizationType.F32
    return {
        gguf.LlamaFileType.ALL_F32: gguf.GGMLQuantizationType.F32,
        gguf.LlamaFileType.MOSTLY_F16: gguf.GGMLQuantizationType.F16,
        gguf.LlamaFileType.MOSTLY_BF16: gguf.GGMLQuantizationType.BF16,
    }[ftype]


def write_gguf(
    path: Path,
    model_name: str,
    cfg: Lfm2Config,
    ff_effective: int,
    weights: dict[str, np.ndarray],
    hf_dir: Path,
    tok: Tokenizer,
    ftype: gguf.LlamaFileType,
) -> None:
    w = gguf.GGUFWriter(str(path), gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LFM2])  # "lfm2"
    n_params = sum(v.size for v in weights.values())

    # general.* (converter: set_type + Metadata.set_gguf_meta_model)
    w.add_type(gguf.GGUFType.MODEL)
    w.add_name(model_name)
    w.add_size_label(gguf.size_label(n_params, 0, 0, 0))

    # TextModel.set_gguf_parameters + LFM2Model.set_gguf_parameters
    w.add_block_count(cfg.num_hidden_layers)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_feed_forward_length(ff_effective)  # post-adjust width
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv([cfg.num_key_value_heads if t != "conv" else 0 for t in cfg.layer_types])
    w.add_rope_freq_base(cfg.rope_parameters["rope_theta"])
    w.add_layer_norm_rms_eps(cfg.norm_eps)
    w.add_file_type(ftype)
    w.add_vocab_size(cfg.vocab_size)
    w.add_shortconv_l_cache(cfg.conv_L_cache)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)

    # TextModel._set_vocab_gpt2: token list/types, then SpecialVocab (merges, special ids, add_*, template)
    id_to_token = {i: t for t, i in tok.get_vocab(with_added_tokens=True).items()}
    tokens = [id_to_token[i] for i in range(cfg.vocab_size)]
    types = [
        gguf.TokenType.CONTROL if i < len(SPECIAL_TOKENS) else gguf.TokenType.NORMAL for i in range(cfg.vocab_size)
    ]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("lfm2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    gguf.SpecialVocab(hf_dir, load_merges=True, n_vocab=cfg.vocab_size).add_to_gguf(w, quiet=True)

    # Tensors, in the converter's order (sorted HF names); no output.weight (tied)
    name_map = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LFM2, cfg.num_hidden_layers)
    for hf_name in sorted(weights):
        new_name = gguf_name(hf_name)
        check(
            name_map.get_name(hf_name, try_suffixes=(".weight",)) == new_name,
            f"tensor name {hf_name} -> {new_name} disagrees with gguf-py's TensorNameMap",
        )
        data = weights[hf_name]
        if "conv.conv" in hf_name:
            data = data.squeeze(1)  # [H, 1, L] -> [H, L]  (ggml ne {L, H})
        qtype = gguf_tensor_type(new_name, data, ftype)
        w.add_tensor(new_name, gguf.quants.quantize(data, qtype), raw_dtype=qtype)

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def read_gguf(path: Path) -> tuple[dict, dict[str, np.ndarray], dict[str, str]]:
    """Return (metadata fields, HF-named f32 state dict, HF name -> GGUF type name)."""
    reader = gguf.GGUFReader(str(path))
    fields = {k: f.contents() for k, f in reader.fields.items() if not k.startswith("GGUF.")}
    weights, types = {}, {}
    for t in reader.tensors:
        arr = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        arr = arr.reshape([int(n) for n in reversed(t.shape.tolist())])
        hf = hf_name_from_gguf(t.name)
        if "conv.conv" in hf:
            arr = arr[:, None, :]
        weights[hf] = arr
        types[hf] = t.tensor_type.name
    return fields, weights, types


def verify_gguf(
    path: Path,
    cfg: Lfm2Config,
    ff_effective: int,
    weights: dict[str, np.ndarray],
    tok: Tokenizer,
    ftype: gguf.LlamaFileType,
) -> dict[str, np.ndarray]:
    fields, read, types = read_gguf(path)
    check_gguf_metadata(path, fields, cfg, ff_effective, tok, int(ftype))

    # read_gguf maps every GGUF name back to an HF name, so an equal set also rules out e.g. output.weight
    check(set(read) == set(weights), f"{path.name}: tensor set differs")
    for name, ref in weights.items():
        check(read[name].shape == ref.shape, f"{path.name}: {name} shape {read[name].shape} != {ref.shape}")
        f32_forced = ref.ndim <= 1 or "norm" in name or "conv.conv" in name
        if f32_forced or ftype == gguf.LlamaFileType.ALL_F32:
            ok = types[name] == "F32" and np.array_equal(read[name], ref)
        elif ftype == gguf.LlamaFileType.MOSTLY_F16:
            ok = types[name] == "F16" and np.array_equal(read[name], ref.astype(np.float16).astype(np.float32))
        else:  # BF16: the reference weights are already bf16-representable, so the round trip is exact
            ok = types[name] == "BF16" and np.array_equal(read[name], ref)
        check(ok, f"{path.name}: {name} has type {types[name]} or wrong values")
    return read


def check_gguf_metadata(path: Path, fields: dict, cfg: Lfm2Config, ff_effective: int, tok: Tokenizer,
                        file_type: int) -> None:
    """The metadata keys the converter writes (docs/lfm2-spec.md section 3.1), as read back by gguf-py."""
    arch = "lfm2"
    expect = {
        "general.architecture": arch,
        "general.file_type": file_type,
        f"{arch}.block_count": cfg.num_hidden_layers,
        f"{arch}.context_length": cfg.max_position_embeddings,
        f"{arch}.embedding_length": cfg.hidden_size,
        f"{arch}.feed_forward_length": ff_effective,
        f"{arch}.attention.head_count": cfg.num_attention_heads,
        f"{arch}.attention.head_count_kv": [cfg.num_key_value_heads if t != "conv" else 0 for t in cfg.layer_types],
        f"{arch}.vocab_size": cfg.vocab_size,
        f"{arch}.shortconv.l_cache": cfg.conv_L_cache,
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.pre": "lfm2",
        "tokenizer.ggml.bos_token_id": BOS_ID,
        "tokenizer.ggml.eos_token_id": EOS_ID,
        "tokenizer.ggml.padding_token_id": PAD_ID,
        "tokenizer.ggml.add_bos_token": True,
        "tokenizer.ggml.add_eos_token": False,
        "tokenizer.chat_template": CHAT_TEMPLATE,
    }
    for key, val in expect.items():
        check(fields.get(key) == val, f"{path.name}: {key} = {fields.get(key)!r}, expected {val!r}")
    check(abs(fields[f"{arch}.rope.freq_base"] - ROPE_THETA) < 1e-3, "rope.freq_base")
    check(abs(fields[f"{arch}.attention.layer_norm_rms_epsilon"] - NORM_EPS) < 1e-9, "rms eps")
    tokens = fields["tokenizer.ggml.tokens"]
    check(len(tokens) == cfg.vocab_size and tokens[BOS_ID] == "<|startoftext|>", "token list")
    check(fields["tokenizer.ggml.token_type"][:15] == [3] * 14 + [1], "token types")
    merges = json.loads(tok.to_str())["model"]["merges"]
    check(fields["tokenizer.ggml.merges"] == [" ".join(m) for m in merges], "merges")


# ----------------------------------------------------------------------------------------------------------
# Independent NumPy forward pass (docs/lfm2-spec.md section 2), used only as a cross-check
# ----------------------------------------------------------------------------------------------------------


def numpy_forward(w: dict[str, np.ndarray], cfg: Lfm2Config, ids: list[int]) -> np.ndarray:
    w = {k: v.astype(np.float64) for k, v in w.items()}
    eps, nh, nkv = cfg.norm_eps, cfg.num_attention_heads, cfg.num_key_value_heads
    hd = cfg.hidden_size // nh
    theta = cfg.rope_parameters["rope_theta"]

    def rms(x, g):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * g

    def rope(x):  # x: [T, heads, hd], NeoX rotate-half
        pos = np.arange(x.shape[0])[:, None]
        inv = theta ** (-np.arange(0, hd, 2) / hd)
        ang = np.concatenate([pos * inv, pos * inv], -1)[:, None, :]
        rot = np.concatenate([-x[..., hd // 2 :], x[..., : hd // 2]], -1)
        return x * np.cos(ang) + rot * np.sin(ang)

    x = w["model.embed_tokens.weight"][ids]
    T, H = x.shape
    for i, kind in enumerate(cfg.layer_types):
        p = f"model.layers.{i}."
        h = rms(x, w[p + "operator_norm.weight"])
        if kind == "conv":
            b, c, xx = np.split(h @ w[p + "conv.in_proj.weight"].T, 3, axis=-1)
            bx = np.concatenate([np.zeros((CONV_L_CACHE - 1, H)), b * xx])
            k = w[p + "conv.conv.weight"][:, 0, :]  # [H, L], tap L-1 = current token
            conv = sum(bx[j : j + T] * k[:, j] for j in range(CONV_L_CACHE))
            y = (c * conv) @ w[p + "conv.out_proj.weight"].T
        else:
            q = rms((h @ w[p + "self_attn.q_proj.weight"].T).reshape(T, nh, hd), w[p + "self_attn.q_layernorm.weight"])
            k = rms((h @ w[p + "self_attn.k_proj.weight"].T).reshape(T, nkv, hd), w[p + "self_attn.k_layernorm.weight"])
            v = (h @ w[p + "self_attn.v_proj.weight"].T).reshape(T, nkv, hd)
            q, k = rope(q), rope(k)
            out = np.zeros((T, nh, hd))
            mask = np.triu(np.full((T, T), -np.inf), 1)
            for head in range(nh):
                g = head // (nh // nkv)
                s = q[:, head] @ k[:, g].T / np.sqrt(hd) + mask
                s = np.exp(s - s.max(-1, keepdims=True))
                out[:, head] = (s / s.sum(-1, keepdims=True)) @ v[:, g]
            y = out.reshape(T, H) @ w[p + "self_attn.out_proj.weight"].T
        x = x + y
        h = rms(x, w[p + "ffn_norm.weight"])
        gate, up = h @ w[p + "feed_forward.w1.weight"].T, h @ w[p + "feed_forward.w3.weight"].T
        x = x + (gate / (1 + np.exp(-gate)) * up) @ w[p + "feed_forward.w2.weight"].T
    x = rms(x, w["model.embedding_norm.weight"])
    return x @ w["model.embed_tokens.weight"].T


# ----------------------------------------------------------------------------------------------------------
# Reference outputs
# ----------------------------------------------------------------------------------------------------------


def prompt_positions(n: int, name: str) -> list[int]:
    if name == "p2":
        pos = [0, 1, 63, 64, 127, 128, 255, 256, n - 2, n - 1]
    else:
        pos = [0, 1, n // 3, (2 * n) // 3, n - 2, n - 1]
    return sorted(set(p for p in pos if p < n))


def greedy_and_rows(
    model: Lfm2ForCausalLM, prompt: list[int], n_greedy: int = N_GREEDY
) -> tuple[list[int], np.ndarray, list[float]]:
    """Greedy ids (each step a full forward, no cache, no EOS stop) and the n_greedy+1 rows from one forward."""
    seq, greedy, margins = list(prompt), [], []
    for _ in range(n_greedy):
        last = full_logits(model, seq)[-1]
        nxt = int(np.argmax(last))
        top2 = np.sort(last)[-2:]
        greedy.append(nxt)
        margins.append(float(top2[1] - top2[0]))
        seq.append(nxt)
    rows = full_logits(model, prompt + greedy)[len(prompt) - 1 :]
    check(rows.shape[0] == n_greedy + 1, "rows count")
    check([int(np.argmax(r)) for r in rows[:n_greedy]] == greedy, "greedy ids != argmax(rows)")
    return greedy, rows, margins


def write_expected(
    exp_dir: Path,
    variant: str,
    files: list[str],
    model: Lfm2ForCausalLM,
    prompts: dict[str, list[int]],
    n_greedy: int = N_GREEDY,
) -> dict:
    summary = {}
    for pname, ids in prompts.items():
        logits = full_logits(model, ids)
        positions = prompt_positions(len(ids), pname)
        greedy, rows, margins = greedy_and_rows(model, ids, n_greedy)
        check(np.abs(rows[0] - logits[-1]).max() < 1e-4, "row 0 != last prompt logits")
        save_npy(exp_dir / f"{variant}.{pname}.npy", logits[positions])
        save_npy(exp_dir / f"{variant}.{pname}.rows.npy", rows)
        write_json(
            exp_dir / f"{variant}.{pname}.json",
            {
                "tokens": ids,
                "greedy": greedy,
                "greedy_margins": [round(m, 5) for m in margins],
                "positions": positions,
                "backend": BACKEND,
                "files": files,
            },
        )
        summary[pname] = {
            "len": len(ids),
            "logit_std": float(logits.std()),
            "min_margin": min(margins),
            "greedy": greedy,
            "positions": positions,
        }
    return summary


# ----------------------------------------------------------------------------------------------------------
# tiny-q: GGUFs quantized by llama.cpp's own quantizer, with exact-oracle and llama.cpp references
# ----------------------------------------------------------------------------------------------------------

LLAMA_N_CTX = 512  # every sequence (prompt + greedy) fits one batch / ubatch
LLAMA_THREADS = 2


def import_llama_cpp():
    try:
        import llama_cpp
        import llama_cpp._logger as llama_logger
    except ImportError as e:
        raise SystemExit(f"tiny-q needs llama-cpp-python (pip install llama-cpp-python=={LLAMA_CPP_PYTHON}): {e}")
    llama_logger.set_verbose(False)  # llama.cpp's log: errors only
    return llama_cpp


def llama_cpp_version() -> str:
    from importlib.metadata import version

    return version("llama_cpp_python")


def use_more_bits(i_layer: int, n_layers: int) -> bool:
    """llama.cpp's use_more_bits (llama-quant.cpp), C integer division."""
    return i_layer < n_layers // 8 or i_layer >= 7 * n_layers // 8 or (i_layer - n_layers // 8) % 3 == 2


def expected_quant_type(name: str, qname: str, layer_types: list[str]) -> str:
    """The ggml type llama.cpp's quantizer gives GGUF tensor `name` (docs/lfm2-spec.md section 3.3)."""
    base = TINY_Q_QUANTS[qname][1]
    if name.endswith("_norm.weight") or "shortconv.conv" in name:
        return "F32"  # norms: never quantized (1-D / *_norm); conv kernel: excluded by name
    if name == "token_embd.weight":  # tied embedding: gets the output tensor's type
        return "Q8_0" if base == "Q8_0" else "Q6_K"
    if qname == "q4_k_m":
        bid = int(name.split(".")[1])
        attn = [i for i, t in enumerate(layer_types) if t == "full_attention"]
        if name.endswith("attn_v.weight") and use_more_bits(attn.index(bid), len(attn)):
            return "Q6_K"  # counter i_attention_wv runs over attention layers only
        if name.endswith("ffn_down.weight") and use_more_bits(bid, len(layer_types)):
            return "Q6_K"
    return base


def llama_quantize(src: Path, dst: Path, qname: str, nthread: int = LLAMA_THREADS) -> None:
    """llama-quantize through llama-cpp-python: default params (no imatrix), the given ftype."""
    llama_cpp = import_llama_cpp()
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, "LLAMA_FTYPE_" + TINY_Q_QUANTS[qname][0])
    params.nthread = nthread
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    check(rc == 0 and dst.exists(), f"llama_model_quantize({src.name} -> {dst.name}) failed with {rc}")


def llama_open(path: Path):
    """llama.cpp CPU context: F32 KV cache, no flash attention, logits for every position."""
    llama_cpp = import_llama_cpp()
    return llama_cpp.Llama(
        model_path=str(path),
        n_ctx=LLAMA_N_CTX,
        n_batch=LLAMA_N_CTX,
        n_ubatch=LLAMA_N_CTX,
        n_threads=LLAMA_THREADS,
        n_threads_batch=LLAMA_THREADS,
        n_gpu_layers=0,
        logits_all=True,
        type_k=llama_cpp.GGML_TYPE_F32,
        type_v=llama_cpp.GGML_TYPE_F32,
        flash_attn=False,
        verbose=False,
    )


def llama_backend() -> str:
    return (
        f"llama.cpp via llama-cpp-python {llama_cpp_version()}, CPU, {LLAMA_THREADS} threads, F32 KV cache, "
        "flash attention off; prompt logits from one batch, greedy steps one token at a time through the cache"
    )


def llama_forward(llm, ids: list[int]) -> np.ndarray:
    """Logits at every position of `ids`, evaluated as one batch from an empty state."""
    llm.reset()
    llm.eval(ids)
    return np.array(llm.scores[: len(ids)], dtype=np.float32)


def llama_greedy(llm, prompt: list[int], n: int) -> tuple[list[int], list[float], np.ndarray, np.ndarray]:
    """llama.cpp's own greedy path: (ids, margins, rows [n+1, vocab], prompt logits [len, vocab])."""
    llm.reset()
    llm.eval(prompt)
    prompt_logits = np.array(llm.scores[: len(prompt)], dtype=np.float32)
    rows, greedy, margins = [prompt_logits[-1]], [], []
    for _ in range(n):
        last = rows[-1]
        nxt = int(np.argmax(last))
        top2 = np.sort(last)[-2:]
        greedy.append(nxt)
        margins.append(float(top2[1] - top2[0]))
        llm.eval([nxt])
        rows.append(np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32))
    return greedy, margins, np.stack(rows), prompt_logits


def ggml_dequantizer():
    """ggml's own C dequantizers (dequantize_row_*, exported by the libggml-base that llama-cpp-python ships),
    or None when the library cannot be found. Used to cross-check gguf-py's NumPy dequantization."""
    llama_cpp = import_llama_cpp()
    libs = sorted((Path(llama_cpp.__file__).parent / "lib").glob("libggml-base.*"))
    if not libs:
        return None
    lib = ctypes.CDLL(str(libs[0]))
    funcs = {}
    for tname in ("Q4_0", "Q8_0", "Q4_K", "Q6_K"):
        f = getattr(lib, f"dequantize_row_{tname.lower().replace('_k', '_K')}")
        f.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
        f.restype = None
        funcs[tname] = f

    def dequant(raw: np.ndarray, tname: str, n: int) -> np.ndarray:
        src = np.ascontiguousarray(raw, dtype=np.uint8)
        out = np.empty(n, dtype=np.float32)
        funcs[tname](src.ctypes.data, out.ctypes.data, n)
        return out

    return dequant


def build_tiny_q(tok: Tokenizer, tok_dir: Path, calib_ids: list[int], seed: int, work: Path) -> dict:
    """Weights (f32), the F16 GGUF in `work`, and one llama.cpp-quantized GGUF per TINY_Q_QUANTS entry."""
    cfg = current_config(TINY_Q)
    model = make_model(cfg)
    ff = swiglu_width(cfg.intermediate_size, cfg.block_auto_adjust_ff_dim, cfg.block_ffn_dim_multiplier,
                      cfg.block_multiple_of)
    check(model.model.layers[0].feed_forward.w1.out_features == ff == TINY_Q["ff"], "tiny-q FFN width")
    check(cfg.hidden_size % 256 == 0 and ff % 256 == 0, "tiny-q: K-quants need every ne0 % 256 == 0")
    weights = random_weights("tiny-q", hf_shapes(model), seed=seed)
    scale = calibrate_embedding(model, weights, calib_ids)
    f16 = work / "tiny-q-f16.gguf"
    write_gguf(f16, "tiny-q", cfg, ff, weights, tok_dir, tok, gguf.LlamaFileType.MOSTLY_F16)
    quants = {}
    for qname in TINY_Q_QUANTS:
        quants[qname] = work / f"tiny-q-{qname}.gguf"
        llama_quantize(f16, quants[qname], qname)
    return {"cfg": cfg, "ff": ff, "weights": weights, "scale": scale, "f16": f16, "quants": quants, "model": model}


def read_quant_gguf(path: Path, qname: str, cfg: Lfm2Config, ff: int, tok: Tokenizer, weights: dict):
    """Re-read a quantized GGUF: metadata, tensor set/shapes, per-tensor types == llama.cpp's rules.
    Returns (HF-named dequantized f32 weights, {GGUF name: type name})."""
    fields, read, types = read_gguf(path)
    check_gguf_metadata(path, fields, cfg, ff, tok, TINY_Q_QUANTS[qname][2])
    check(set(read) == set(weights), f"{path.name}: tensor set differs")
    gtypes = {}
    for hf, ref in weights.items():
        name = gguf_name(hf)
        gtypes[name] = types[hf]
        check(read[hf].shape == ref.shape, f"{path.name}: {name} shape")
        want = expected_quant_type(name, qname, cfg.layer_types)
        check(types[hf] == want, f"{path.name}: {name} is {types[hf]}, expected {want} by llama.cpp's rules")
        if want == "F32":
            check(np.array_equal(read[hf], ref), f"{path.name}: {name} F32 values changed")
    return read, dict(sorted(gtypes.items(), key=lambda kv: _gguf_sort_key(kv[0])))


def _gguf_sort_key(name: str):
    parts = name.split(".")
    return (1, int(parts[1]), parts[2]) if parts[0] == "blk" else (0 if name == "token_embd.weight" else 2, 0, name)


def oracle_min_margin(built: dict, tok: Tokenizer, prompts: dict[str, list[int]]) -> float:
    """Smallest top-1/top-2 gap of the exact-oracle greedy steps over all quantized files and prompts."""
    margins = []
    for qname, path in built["quants"].items():
        read, _ = read_quant_gguf(path, qname, built["cfg"], built["ff"], tok, built["weights"])
        model = make_model(current_config(TINY_Q))
        load_into(model, read)
        for ids in prompts.values():
            margins += greedy_and_rows(model, ids, N_GREEDY_Q)[2]
    return min(margins)


def search_tiny_q_seed(out: Path, seeds: range) -> None:
    """Print the smallest oracle greedy margin for each candidate TINY_Q_SEED (needs the tokenizer in out/)."""
    tok = Tokenizer.from_file(str(out / "tiny-a" / "tokenizer.json"))
    prompts = make_prompts_q(tok)
    for seed in seeds:
        with tempfile.TemporaryDirectory() as tmp:
            built = build_tiny_q(tok, out / "tiny-a", prompts["p2"], seed, Path(tmp))
            log(f"seed {seed}: min oracle greedy margin {oracle_min_margin(built, tok, prompts):.4f}")


def make_prompts_q(tok: Tokenizer) -> dict[str, list[int]]:
    """tiny-q prompts: p1 and p3 as for tiny-a/b, p2 = BOS + the first P2Q_LEN tokens of the same text."""
    prompts = make_prompts(tok)
    prompts["p2"] = prompts["p2"][: P2Q_LEN + 1]
    return prompts


def common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def write_llama_expected(
    exp_dir: Path, variant: str, files: list[str], llm, oracle: Lfm2ForCausalLM, prompts: dict, oracle_summary: dict
) -> dict:
    """`<variant>.<p>.llama.{json,npy}` from llama.cpp, plus its distance to the exact oracle."""
    stats = {}
    for pname, ids in prompts.items():
        greedy, margins, rows, plog = llama_greedy(llm, ids, N_GREEDY_Q)
        positions = prompt_positions(len(ids), pname)
        check(positions == oracle_summary[pname]["positions"], "positions differ from the oracle's")
        # llama.cpp's cached one-token steps vs its own batch evaluation of the same sequence
        batch = llama_forward(llm, ids + greedy)[len(ids) - 1 :]
        cached_vs_batch = float(np.abs(batch - rows).max())
        # the same sequence (prompt + ORACLE greedy) through both backends, every position compared
        seq = ids + oracle_summary[pname]["greedy"]
        lo, oo = llama_forward(llm, seq), full_logits(oracle, seq)
        diff = np.abs(lo - oo)
        agree = np.argmax(lo, -1) == np.argmax(oo, -1)
        vs = {
            "sequence": "tokens + the oracle's greedy ids, one batch in each backend",
            "positions_compared": len(seq),
            "max_abs_diff": round(float(diff.max()), 5),
            "max_abs_diff_prompt": round(float(diff[: len(ids)].max()), 5),
            "mean_abs_diff": round(float(diff.mean()), 5),
            "top1_agree": int(agree.sum()),
            "top1_disagree_positions": [int(i) for i in np.nonzero(~agree)[0]],
            "greedy_common_prefix": common_prefix(greedy, oracle_summary[pname]["greedy"]),
            "llama_cached_vs_batch_max_abs_diff": round(cached_vs_batch, 6),
        }
        save_npy(exp_dir / f"{variant}.{pname}.llama.npy", plog[positions])
        write_json(
            exp_dir / f"{variant}.{pname}.llama.json",
            {
                "tokens": ids,
                "greedy": greedy,
                "greedy_margins": [round(m, 5) for m in margins],
                "positions": positions,
                "backend": llama_backend(),
                "files": files,
                "vs_oracle": vs,
            },
        )
        stats[pname] = vs
    return stats


def make_tiny_q(out: Path, tok: Tokenizer, prompts: dict[str, list[int]], verified: list[str], work: Path) -> dict:
    """tiny-q: F16 GGUF (in `work`, not kept) -> llama.cpp quantizer -> out/tiny-q-<type>.gguf; references."""
    exp_dir = out / "expected"
    if llama_cpp_version() != LLAMA_CPP_PYTHON:
        log(f"WARNING: llama-cpp-python {llama_cpp_version()} != {LLAMA_CPP_PYTHON}: its quantizer may write other "
            "bytes, so the tiny-q files and references may change (and TINY_Q_SEED may need a new search)")
    built = build_tiny_q(tok, out / "tiny-a", prompts["p2"], TINY_Q_SEED, work)
    cfg, ff, weights = built["cfg"], built["ff"], built["weights"]
    verify_gguf(built["f16"], cfg, ff, weights, tok, gguf.LlamaFileType.MOSTLY_F16)
    f32_logits = {p: full_logits(built["model"], ids) for p, ids in prompts.items()}

    # determinism of the quantizer: 1 thread vs 2 threads, byte for byte
    for qname, path in built["quants"].items():
        again = work / f"again-{qname}.gguf"
        llama_quantize(built["f16"], again, qname, nthread=1)
        check(again.read_bytes() == path.read_bytes(), f"{qname}: quantizer output depends on the thread count")
    verified.append(
        "- tiny-q: llama.cpp's quantizer is deterministic here: quantizing the F16 file with 1 and with 2 threads "
        "gives byte-identical files for every type."
    )

    dequant_c = ggml_dequantizer()
    info = {"types": {}, "sizes": {}, "vs_oracle": {}, "oracle": {}, "quant_err": {}, "c_dequant_max_diff": {}}
    for qname, src in built["quants"].items():
        variant = f"tiny-q-{qname}"
        dst = out / f"{variant}.gguf"
        shutil.copyfile(src, dst)
        read, gtypes = read_quant_gguf(dst, qname, cfg, ff, tok, weights)
        info["types"][qname] = gtypes
        log(f"{dst.name}: " + ", ".join(f"{n} {t}" for n, t in gtypes.items()))

        # gguf-py's NumPy dequantization vs ggml's own C dequantizer, tensor by tensor
        if dequant_c is not None:
            worst = 0.0
            for t in gguf.GGUFReader(str(dst)).tensors:
                if t.tensor_type.name in ("Q4_0", "Q8_0", "Q4_K", "Q6_K"):
                    ours = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32).ravel()
                    theirs = dequant_c(t.data, t.tensor_type.name, int(t.n_elements))
                    worst = max(worst, float(np.abs(ours - theirs).max()))
            info["c_dequant_max_diff"][qname] = worst
            check(worst == 0.0, f"{dst.name}: gguf-py and ggml dequantize differently (max |diff| {worst})")

        # quantization error of the weights (relative RMS over all quantized matrices)
        num = sum(float(((read[k] - weights[k]) ** 2).sum()) for k in weights if gtypes[gguf_name(k)] != "F32")
        den = sum(float((weights[k] ** 2).sum()) for k in weights if gtypes[gguf_name(k)] != "F32")
        info["quant_err"][qname] = float(np.sqrt(num / den))

        oracle = make_model(current_config(TINY_Q))
        load_into(oracle, read)
        summary = write_expected(exp_dir, variant, [dst.name], oracle, prompts, N_GREEDY_Q)
        info["oracle"][qname] = summary
        info["oracle_vs_f32"] = info.get("oracle_vs_f32", {})
        info["oracle_vs_f32"][qname] = max(
            float(np.abs(full_logits(oracle, ids) - f32_logits[p]).max()) for p, ids in prompts.items()
        )
        llm = llama_open(dst)
        check(llm.n_vocab() == VOCAB_SIZE, f"llama.cpp sees vocab {llm.n_vocab()}")
        info["vs_oracle"][qname] = write_llama_expected(exp_dir, variant, [dst.name], llm, oracle, prompts, summary)
        del llm
        for p, v in info["vs_oracle"][qname].items():
            log(f"  {variant} {p}: oracle min margin {summary[p]['min_margin']:.4f}; llama.cpp vs oracle max |diff| "
                f"{v['max_abs_diff']:.4f} (prompt {v['max_abs_diff_prompt']:.4f}), top-1 {v['top1_agree']}/"
                f"{v['positions_compared']}, greedy common prefix {v['greedy_common_prefix']}/{N_GREEDY_Q}")

    verified.append(
        "- tiny-q: every quantized file re-read with gguf-py: metadata as above (`general.file_type` = the llama "
        "ftype), tensor set and shapes, norms and conv kernels still F32 with unchanged values, and each tensor's "
        "ggml type equal to llama.cpp's type rules (docs/lfm2-spec.md section 3.3, recomputed independently)."
    )
    if info["c_dequant_max_diff"]:
        verified.append(
            "- tiny-q: gguf-py's NumPy dequantization (used by the oracle) equals ggml's own C `dequantize_row_*` "
            "(from the libggml-base shipped with llama-cpp-python) bit for bit on every quantized tensor."
        )
    else:
        log("WARNING: libggml-base not found; gguf-py vs ggml dequantization not cross-checked")
    info["scale"] = built["scale"]
    info["out"] = out
    info["ff"] = ff
    info["cfg"] = cfg
    info["work_f16"] = built["f16"]
    return info


def llama_crosscheck_f32(out: Path, prompts: dict[str, list[int]], verified: list[str]) -> None:
    """llama.cpp on the unquantized tiny-a/tiny-b GGUFs vs the stored transformers rows (sanity of the llama
    path used for the tiny-q `.llama.` references, and of the GGUF layout)."""
    notes = []
    for gguf_file, variant, tol in [("tiny-a-f32.gguf", "tiny-a", 1e-3), ("tiny-a-f16.gguf", "tiny-a-f16", None),
                                    ("tiny-b-bf16.gguf", "tiny-b", None)]:
        llm = llama_open(out / gguf_file)
        worst, same_greedy = 0.0, True
        for pname, ids in prompts.items():
            ref = json.loads((out / "expected" / f"{variant}.{pname}.json").read_text())
            rows = np.load(out / "expected" / f"{variant}.{pname}.rows.npy")
            lo = llama_forward(llm, ids + ref["greedy"])[len(ids) - 1 :]
            worst = max(worst, float(np.abs(lo - rows).max()))
            same_greedy &= [int(np.argmax(r)) for r in lo[:-1]] == ref["greedy"]
        del llm
        if tol is not None:
            check(worst < tol and same_greedy, f"llama.cpp disagrees with transformers on {gguf_file}: {worst}")
        notes.append(f"`{gguf_file}` max |diff| {worst:.2e}{'' if same_greedy else ' (a greedy id differs)'}")
    verified.append(
        "- llama.cpp (CPU, F32 KV cache) loads the unquantized GGUFs and reproduces the transformers rows "
        "(prompt + greedy, one batch): " + ", ".join(notes) + " (F16/BF16: llama.cpp rounds activations to "
        "F16/BF16 inside those matmuls)."
    )


def llama_tokenizer_check(out: Path, verified: list[str]) -> None:
    """llama.cpp's tokenizer (pre-type lfm2 -> LLAMA3, ignore_merges) on the tokenizer cases."""
    cases = json.loads((out / "tokenizer_cases.json").read_text())
    llm = llama_open(out / "tiny-a-f32.gguf")
    bad = [c["text"] for c in cases if llm.tokenize(c["text"].encode(), add_bos=True, special=True) != c["ids"]]
    del llm
    if bad:
        log(f"NOTE: llama.cpp tokenizes {len(bad)}/{len(cases)} tokenizer cases differently: {bad}")
    verified.append(
        f"- llama.cpp's tokenizer on the GGUF agrees with `tokenizer_cases.json` (ids with BOS, special tokens "
        f"parsed) on {len(cases) - len(bad)}/{len(cases)} cases"
        + (f"; it differs on {', '.join(repr(b) for b in bad)}." if bad else ".")
    )


# ----------------------------------------------------------------------------------------------------------
# --check-lfm-bin: do the Rust tool's GGUF writers produce files that llama.cpp loads?
# ----------------------------------------------------------------------------------------------------------


def compare_gguf_tensors(a: Path, b: Path) -> dict:
    """Tensor-by-tensor comparison of two GGUFs: names, ggml types, raw bytes."""
    ta = {t.name: t for t in gguf.GGUFReader(str(a)).tensors}
    tb = {t.name: t for t in gguf.GGUFReader(str(b)).tensors}
    common = sorted(set(ta) & set(tb), key=_gguf_sort_key)
    same_type = [n for n in common if ta[n].tensor_type == tb[n].tensor_type]
    same_bytes = [n for n in same_type if np.array_equal(np.asarray(ta[n].data).view(np.uint8),
                                                          np.asarray(tb[n].data).view(np.uint8))]
    differ = []
    for n in same_type:
        if n in same_bytes:
            continue
        tt = ta[n].tensor_type
        block_bytes = gguf.GGML_QUANT_SIZES[tt][1]
        ba = np.asarray(ta[n].data).view(np.uint8).reshape(-1, block_bytes)
        bb = np.asarray(tb[n].data).view(np.uint8).reshape(-1, block_bytes)
        dw = np.abs(gguf.quants.dequantize(ta[n].data, tt).astype(np.float32)
                    - gguf.quants.dequantize(tb[n].data, tt).astype(np.float32)).max()
        differ.append(f"{n} ({tt.name}: {int((ba != bb).any(1).sum())}/{len(ba)} blocks, max |dw| {dw:.2g})")
    return {
        "only_in_lfm": sorted(set(ta) - set(tb)),
        "only_in_llama": sorted(set(tb) - set(ta)),
        "type_differs": [f"{n} ({ta[n].tensor_type.name} vs {tb[n].tensor_type.name})" for n in common
                         if n not in same_type],
        "bytes_differ": differ,
        "n_common": len(common),
        "n_same_bytes": len(same_bytes),
    }


def check_lfm_bin(lfm: Path, out: Path, work: Path, tiny_q_f16: Path) -> int:
    """Run `lfm synth` / `lfm quantize`, load each output with llama.cpp (tools/check_llama.py) and, for files
    quantized from tiny-q's F16 GGUF, compare them tensor by tensor with llama.cpp's own quantization.
    Prints a report; returns the number of failed checks."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from check_llama import check_file, format_result, ok

    jobs = []  # (label, command, output, llama.cpp-quantized reference or None)
    for q in ["f16", *TINY_Q_QUANTS]:
        dst = work / f"lfm-synth-tiny-{q}.gguf"
        cmd = [lfm, "synth", "--preset", "tiny", "--quant", q, "--seed", "1", "-o", dst]
        jobs.append((f"lfm synth --preset tiny --quant {q} --seed 1", cmd, dst, None))
    dst = work / "lfm-quantize-tiny-a-q8_0.gguf"
    cmd = [lfm, "quantize", "-m", out / "tiny-a-f32.gguf", "--type", "q8_0", "-o", dst]
    ref = work / "llama-tiny-a-q8_0.gguf"  # llama.cpp's own quantization of the same file, for comparison
    llama_quantize(out / "tiny-a-f32.gguf", ref, "q8_0")
    jobs.append(("lfm quantize -m tiny-a-f32.gguf --type q8_0", cmd, dst, ref))
    for q in ["f16", *TINY_Q_QUANTS]:
        dst = work / f"lfm-quantize-tiny-q-{q}.gguf"
        cmd = [lfm, "quantize", "-m", tiny_q_f16, "--type", q, "-o", dst]
        ref = tiny_q_f16 if q == "f16" else out / f"tiny-q-{q}.gguf"
        jobs.append((f"lfm quantize -m tiny-q-f16.gguf --type {q}", cmd, dst, ref))

    failures, summary = 0, []
    for label, cmd, dst, ref in jobs:
        log(f"\n=== {label}")
        try:
            r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=900)
            rc, err = r.returncode, (r.stderr or r.stdout).strip().splitlines()[:3]
        except OSError as e:
            rc, err = -1, [str(e)]
        if rc == 2 and "invalid value" in "\n".join(err):  # clap rejected the type: not supported by this lfm
            summary.append(f"SKIP  {label}: this lfm does not support it ({' | '.join(err)})")
            log(summary[-1])
            continue
        if rc != 0 or not dst.exists():
            failures += 1
            summary.append(f"FAIL  {label}: lfm exited {rc}: {' | '.join(err)}")
            log(summary[-1])
            continue
        res = check_file(dst, n=16)
        log(format_result(res))
        line = f"{'OK  ' if ok(res) else 'FAIL'}  {label}: loaded {'yes' if res.get('loaded') else 'no'}"
        if res.get("gguf", {}).get("tensor_types"):
            line += f", types {res['gguf']['tensor_types']}"
        if "greedy" in res:
            line += f", greedy {res['greedy'][:8]}..."
        if ref is not None and ref.exists():
            cmp = compare_gguf_tensors(dst, ref)
            ref_res = check_file(ref, n=16)
            same_greedy = res.get("greedy") == ref_res.get("greedy")
            line += (f"; vs llama.cpp's quantization: {cmp['n_same_bytes']}/{cmp['n_common']} tensors "
                     f"byte-identical, greedy ids {'equal' if same_greedy else 'differ'}")
            for key in ("only_in_lfm", "only_in_llama", "type_differs", "bytes_differ"):
                if cmp[key]:
                    line += f"; {key}: {', '.join(cmp[key])}"
            log(f"vs {ref.name}: {cmp}")
        if "error" in res:
            line += f"; error: {res['error']}"
        failures += 0 if ok(res) else 1
        summary.append(line)
    log("\n=== lfm output checks\n" + "\n".join(summary))
    return failures


# ----------------------------------------------------------------------------------------------------------
# Tokenizer and chat cases
# ----------------------------------------------------------------------------------------------------------


def tokenizer_cases(tok: Tokenizer, hf_tok) -> list[dict]:
    cases = []
    for text in TOKENIZER_CASES:
        with_special = tok.encode(text, add_special_tokens=True)
        no_special = tok.encode(text, add_special_tokens=False)
        check(hf_tok(text)["input_ids"] == with_special.ids, f"transformers disagrees on {text!r}")
        check(hf_tok(text, add_special_tokens=False)["input_ids"] == no_special.ids, f"transformers on {text!r}")
        decoded = tok.decode(no_special.ids, skip_special_tokens=False)
        check(decoded == text, f"decode round trip failed for {text!r}: {decoded!r}")
        cases.append(
            {
                "text": text,
                "ids": with_special.ids,
                "ids_no_special": no_special.ids,
                "tokens_no_special": no_special.tokens,
                "decoded": decoded,
                "decoded_skip_special": tok.decode(with_special.ids, skip_special_tokens=True),
            }
        )
    return cases


def chat_cases(tok: Tokenizer, hf_tok) -> list[dict]:
    cases = []
    for case in CHAT_CASES:
        tools = case.get("tools")
        rendered = hf_tok.apply_chat_template(
            case["messages"], tools=tools, add_generation_prompt=case["add_generation_prompt"], tokenize=False
        )
        check(rendered.startswith("<|startoftext|>"), "template must start with BOS")
        ids = tok.encode(rendered, add_special_tokens=False).ids
        check(ids[0] == BOS_ID and ids[1] != BOS_ID, "exactly one BOS")
        cases.append(
            {
                "name": case["name"],
                "messages": case["messages"],
                "tools": tools,
                "add_generation_prompt": case["add_generation_prompt"],
                "rendered": rendered,
                "ids": ids,
            }
        )
    # the tools case must keep the dicts' insertion order (transformers' tojson does not sort keys)
    tool_case = next(c for c in cases if c["name"] == "tools")
    check('{"type": "function", "function": {"name": "get_weather"' in tool_case["rendered"], "tool key order")
    return cases


# ----------------------------------------------------------------------------------------------------------
# README
# ----------------------------------------------------------------------------------------------------------

FILE_NOTES = {
    "README.md": "this file (written by tools/make_fixtures.py)",
    "tokenizer_cases.json": "tokenizer cases: text, ids with/without BOS, tokens, decoded strings",
    "chat_cases.json": "chat-template cases: messages, tools, add_generation_prompt, rendered string, ids",
    "tiny-a-f32.gguf": "tiny-a as GGUF, all tensors F32 (file_type 0)",
    "tiny-a-f16.gguf": "tiny-a as GGUF, matrices F16, norms + conv kernels F32 (file_type 1)",
    "tiny-b-bf16.gguf": "tiny-b as GGUF, matrices BF16, norms + conv kernels F32 (file_type 32)",
    "config.json": "HF config",
    "generation_config.json": "HF generation config (bos 1, eos 7, pad 0)",
    "model.safetensors": "weights, f32, single file",
    "model-00001-of-00002.safetensors": "weights, bf16, shard 1 (embedding, layers 0-2)",
    "model-00002-of-00002.safetensors": "weights, bf16, shard 2 (layers 3-4, final norm)",
    "model.safetensors.index.json": "shard index (weight_map, total_size)",
    "tokenizer.json": "HF tokenizers file (shared tokenizer)",
    "tokenizer_config.json": "add_bos_token, special tokens, chat template",
    "prompts.json": "prompt ids per model (p1, p2, p3) and the source texts",
    "quant_blocks.json": "quantization block cases (written by another tool, not by make_fixtures.py)",
}
for _q, (_ft, _base, _id) in TINY_Q_QUANTS.items():
    FILE_NOTES[f"tiny-q-{_q}.gguf"] = (
        f"tiny-q quantized to {_q.upper()} by llama.cpp's quantizer (file_type {_id}; type mix in the tiny-q section)"
    )


def file_note(rel: str) -> str:
    name = rel.split("/")[-1]
    if rel.startswith("expected/") and name != "prompts.json":
        variant, pname, *rest = name.split(".")
        n = N_GREEDY_Q if variant.startswith("tiny-q") else N_GREEDY
        kind = {
            "json": "tokens, greedy ids (+ top-2 margins), positions, backend, files",
            "npy": "f32 logits [len(positions), vocab] at the prompt positions",
            "rows.npy": f"f32 [{n + 1}, vocab]: row 0 after the prompt, row i after greedy[:i]",
            "llama.json": "llama.cpp: tokens, its own greedy ids (+ margins), positions, vs_oracle stats",
            "llama.npy": "llama.cpp: f32 logits [len(positions), vocab] at the prompt positions",
        }[".".join(rest)]
        return f"{variant} / {pname}: {kind}"
    return FILE_NOTES.get(name, "")


def tiny_q_readme(q: dict) -> str:
    cfg: Lfm2Config = q["cfg"]
    layers = ", ".join("attn" if t == "full_attention" else "conv" for t in cfg.layer_types)
    qnames = list(TINY_Q_QUANTS)
    names = list(q["types"][qnames[0]])
    type_rows = "\n".join(f"| `{n}` | " + " | ".join(q["types"][k][n] for k in qnames) + " |" for n in names)
    counts = " | ".join(
        ", ".join(f"{t} x{c}" for t, c in sorted(Counter(q["types"][k].values()).items())) for k in qnames
    )
    sizes = " | ".join(f"{(q['out'] / f'tiny-q-{k}.gguf').stat().st_size:,}" for k in qnames)
    errs = " | ".join(f"{q['quant_err'][k]:.4f}" for k in qnames)
    vs_f32 = " | ".join(f"{q['oracle_vs_f32'][k]:.3f}" for k in qnames)
    cmp_rows = []
    for k in qnames:
        for p, v in q["vs_oracle"][k].items():
            n = v["positions_compared"]
            cmp_rows.append(
                f"| `tiny-q-{k}` | {p} | {n} | {v['max_abs_diff_prompt']:.4f} | {v['max_abs_diff']:.4f} | "
                f"{v['mean_abs_diff']:.4f} | {v['top1_agree']}/{n} ({100 * v['top1_agree'] / n:.1f}%) | "
                f"{v['greedy_common_prefix']}/{N_GREEDY_Q} | {q['oracle'][k][p]['min_margin']:.4f} |"
            )
    cached = {f"tiny-q-{k}/{p}": v["llama_cached_vs_batch_max_abs_diff"] for k in qnames
              for p, v in q["vs_oracle"][k].items()}
    small = max([c for c in cached.values() if c < 1e-3], default=0.0)
    big = ", ".join(f"{name} {c:.3g}" for name, c in cached.items() if c >= 1e-3)
    cached_note = f"within {small:.1e}" + (f", except {big}" if big else "")
    return f"""## Quantized model `tiny-q` (llama.cpp's own quantizer)

| | tiny-q |
|---|---|
| hidden | {cfg.hidden_size} |
| layers | {layers} |
| heads / KV heads / head_dim | {cfg.num_attention_heads} / {cfg.num_key_value_heads} / {cfg.hidden_size // cfg.num_attention_heads} |
| FFN width (effective) | {q["ff"]} (`intermediate_size` {q["ff"]}, no auto-adjust) |
| vocab | {cfg.vocab_size} (the shared tokenizer) |
| seed | {TINY_Q_SEED} (`TINY_Q_SEED`; weights drawn as for tiny-a, from (seed, "tiny-q", tensor name)) |
| embedding scale | {q["scale"]:.6f} |

Every matrix row length (ggml ne0) is {cfg.hidden_size} or {q["ff"]}, a multiple of the 256-weight K-quant super-block, so
llama.cpp quantizes every matrix to the requested type with no fallback; `ffn_down` rows (ne0 {q["ff"]}) hold two
super-blocks, all other rows one. The layer count is kept at {len(cfg.layer_types)} to keep the files small; Q4_K_M's
`use_more_bits` still promotes tensors (the attention layer's `attn_v`, the last layer's `ffn_down`).

How the files are made: the f32 weights (embedding calibrated like tiny-a's on the f32 model) are written as
`tiny-q-f16.gguf` exactly like the other GGUFs (matrices F16, norms and conv kernels F32) in a temporary directory
(not kept; the script rebuilds it bit-identically), then quantized by llama.cpp through llama-cpp-python:
`llama_model_quantize(f16, out, params)` with `llama_model_quantize_default_params()`, `ftype` =
`LLAMA_FTYPE_MOSTLY_{{Q4_0, Q8_0, Q4_K_M, Q6_K}}`, `nthread` 2, no imatrix. Quantizing with 1 and with 2 threads gives
byte-identical files (checked), so the files depend only on the seed and the llama.cpp version.

ggml type of each tensor (checked against llama.cpp's rules, docs/lfm2-spec.md section 3.3):

| tensor | {" | ".join(f"`tiny-q-{k}.gguf`" for k in qnames)} |
|---|{"---|" * len(qnames)}
{type_rows}
| **count** | {counts} |
| **bytes** | {sizes} |
| relative RMS weight error (quantized matrices) | {errs} |
| oracle logits vs the f32 model, max abs diff | {vs_f32} |

`token_embd` is tied (no `output.weight`), so it gets the output tensor's type: Q6_K, or Q8_0 in a Q8_0 file.

References in `expected/` (prompt ids under `tiny-q` in `expected/prompts.json`: `p1` and `p3` as for tiny-a/b,
`p2` = BOS + the first {P2Q_LEN} tokens of the same text, crossing prefill chunks of 64 and 128):

- **Exact oracle**, `tiny-q-<type>.<p>.{{json,npy,rows.npy}}`: the quantized GGUF's weights dequantized to f32 with gguf-py
  (`gguf.quants.dequantize`; bit-identical to ggml's C `dequantize_row_*`, checked) and run through transformers
  `Lfm2ForCausalLM` in float32, exactly as for the other variants (one full forward per sequence). Same layout as
  above with {N_GREEDY_Q} greedy ids and `rows.npy` `[{N_GREEDY_Q + 1}, vocab]`. This is what an implementation that
  dequantizes the weights and computes in f32 must match (tight tolerance, exact greedy ids: the smallest greedy
  margin over all tiny-q oracle references is {q["min_margin"]:.4f}).
- **llama.cpp**, `tiny-q-<type>.<p>.llama.{{json,npy}}`: the same GGUF run by llama.cpp ({llama_backend()}).
  `.llama.npy` = its logits at `positions`; `.llama.json` has `tokens`, llama.cpp's own `greedy` ({N_GREEDY_Q} ids) and
  `greedy_margins`, `positions`, `backend`, `files`, and `vs_oracle` (the numbers below). No `rows.npy` for llama.cpp
  (to save space; its greedy path is reproducible with `tools/check_llama.py --prompt-ids ... -n {N_GREEDY_Q}`).
  llama.cpp's CPU matmuls quantize the activations too (to Q8_0 for Q4_0/Q8_0 weights, Q8_K for K-quants) before
  the integer dot products, so llama.cpp is NOT the f32-activation oracle: use these files as a loose check.

llama.cpp vs the exact oracle on the same sequence (prompt + the oracle's greedy ids, one batch in each backend, every
position compared); "greedy prefix" = how many of llama.cpp's own greedy ids (cached decode) equal the oracle's before
the first difference. llama.cpp's own greedy rows (cached one-token steps) agree with its batch evaluation of the
same sequence {cached_note} (`vs_oracle.llama_cached_vs_batch_max_abs_diff`).

| file | prompt | positions | max abs diff, prompt | max abs diff, all | mean abs diff | top-1 agreement | greedy prefix | oracle min margin |
|---|---|---|---|---|---|---|---|---|
""" + "\n".join(cmp_rows)


def write_readme(out: Path, info: dict) -> None:
    rows = []
    total = 0
    for p in sorted(out.rglob("*")):
        if p.is_file() and p.name != "README.md":
            rel = p.relative_to(out).as_posix()
            size = p.stat().st_size
            total += size
            rows.append(f"| `{rel}` | {size:,} | {file_note(rel)} |")
    a, b = info["tiny-a"], info["tiny-b"]
    text = f"""# Test fixtures: tiny random-weight LFM2 models + reference outputs

Generated by `python3 tools/make_fixtures.py` (optionally `--out DIR`); do not edit by hand, rerun the
script. It is deterministic (seed {SEED}): weights come from per-tensor numpy PCG64 streams seeded by
(seed, model, tensor name); the reference numbers come from transformers on CPU in float32.

Library versions used: Python {platform.python_version()}, torch {torch.__version__}, transformers
{transformers.__version__}, tokenizers {tokenizers.__version__}, gguf (gguf-py) {info["gguf_version"]},
safetensors {safetensors.__version__}, numpy {np.__version__}, jinja2 {jinja2.__version__}, llama-cpp-python
{llama_cpp_version()} (its bundled llama.cpp: quantizer for tiny-q, CPU inference for the `.llama.` references).

## Models

Random weights with the real LFM2 architecture (`Lfm2ForCausalLM`). Linear and conv weights ~ N(0, 1/fan_in),
RMSNorm weights (operator/ffn/q/k/final) 1 + N(0, 0.1), the tied embedding scaled so that the logits have
std ~{LOGIT_STD_TARGET:g}. No biases, conv_L_cache {CONV_L_CACHE}, norm_eps {NORM_EPS:g}, rope theta {ROPE_THETA:g},
max_position_embeddings {MAX_POS}, bos {BOS_ID} / eos {EOS_ID} / pad {PAD_ID}, tied embeddings (no `lm_head` /
`output.weight` stored).

| | tiny-a | tiny-b |
|---|---|---|
| hidden | {a["hidden"]} | {b["hidden"]} |
| layers | {a["layers"]} | {b["layers"]} |
| heads / KV heads / head_dim | {a["heads"]} / {a["kv_heads"]} / {a["head_dim"]} | {b["heads"]} / {b["kv_heads"]} / {b["head_dim"]} |
| FFN width (effective) | {a["ff"]} (`intermediate_size` {a["ff"]}, `block_auto_adjust_ff_dim` false) | {b["ff"]} (`block_ff_dim` {TINY_B["block_ff_dim"]}, auto-adjust, `block_multiple_of` {TINY_B["block_multiple_of"]}: int(2*{TINY_B["block_ff_dim"]}/3) = {int(2 * TINY_B["block_ff_dim"] / 3)} -> {b["ff"]}) |
| vocab | {a["vocab"]} | {b["vocab"]} |
| config.json keys | current (`intermediate_size`, `layer_types`, `rope_parameters`, `tie_word_embeddings`; written by transformers) | legacy (`block_ff_dim`, `full_attn_idxs`, `tie_embedding`, `theta`, `torch_dtype`, plus unused `block_dim`, `conv_dim`, `num_heads`, ...) |
| HF weights | f32, `model.safetensors` | bf16, 2 shards + `model.safetensors.index.json` |
| GGUF | `tiny-a-f32.gguf`, `tiny-a-f16.gguf` | `tiny-b-bf16.gguf` |
| embedding scale | {a["embed_scale"]:.6f} | {b["embed_scale"]:.6f} |

Note on `theta`: transformers {transformers.__version__} does not read the legacy `theta` key (it only reads
`rope_theta` / `rope_parameters`) and falls back to its default 1e6, so tiny-b uses theta = 1e6, the value on
which both readings agree. The legacy `block_ff_dim` / `full_attn_idxs` / `tie_embedding` keys are read by
transformers (checked: the loaded tiny-b has FFN width {b["ff"]}, layer types as above, tied embeddings).

GGUF files follow llama.cpp's LFM2 converter (docs/lfm2-spec.md section 3): arch `lfm2`; `block_count`,
`context_length`, `embedding_length`, `feed_forward_length` (post-adjust), `attention.head_count`,
`attention.head_count_kv` (per-layer i32 array, 0 = conv layer), `rope.freq_base`,
`attention.layer_norm_rms_epsilon`, `vocab_size`, `shortconv.l_cache`, `general.file_type`; the final norm is
`token_embd_norm.weight`; conv kernels are squeezed to [H, L] (ggml ne {{L, H}}); tokenizer keys
`tokenizer.ggml.model = gpt2`, `pre = lfm2`, tokens, token_type (3 = control for ids 0..13, else 1), merges,
bos/eos/padding ids, `add_bos_token` true, `add_eos_token` false, `add_sep_token` false (gguf-py's
SpecialVocab, as the converter), `tokenizer.chat_template`.

## Tokenizer

Byte-level BPE (vocab {VOCAB_SIZE} = 14 special + 256 bytes + {info["n_merges"]} merges) trained with `tokenizers`
on Python {platform.python_version()} stdlib files ({", ".join(CORPUS_FILES)}; corpus sha256
`{info["corpus_sha256"]}`). Pre-tokenizer: Split(Llama-3 regex, Isolated) then ByteLevel(add_prefix_space=false,
use_regex=false); `ignore_merges` true; ByteLevel decoder; TemplateProcessing adds `<|startoftext|>` (BOS).
One merge, `{" ".join(EXTRA_MERGE)}` -> id {VOCAB_SIZE - 1} `{"".join(EXTRA_MERGE)}`, is appended after training as the
lowest-ranked merge. Plain BPE never reaches it (" end" merges to `Ġ` `en` `d`), so " end" encodes to the
single id {VOCAB_SIZE - 1} only when `ignore_merges` is honoured (a pre-token that is a whole vocab entry is emitted
as is). " end" occurs in p2 and in `tokenizer_cases.json`.
Special tokens at LFM2's ids 0..13. `tokenizer_config.json` has `add_bos_token` true and LFM2's chat template
(verbatim from docs/lfm2-spec.md section 4, tab-indented multi-line form). Both models use the same tokenizer.

## Reference outputs (`expected/`)

Backend: {BACKEND}.
Variants: `tiny-a` (covers `tiny-a/` and `tiny-a-f32.gguf`, identical weights), `tiny-a-f16` (the F16 GGUF's
weights dequantized to f32 by gguf-py and loaded into transformers), `tiny-b` (bf16 weights upcast to f32;
covers `tiny-b/` and `tiny-b-bf16.gguf`).
Prompts (ids in `expected/prompts.json`, identical for both models since they share the tokenizer):
`p1` = BOS + first {P1_LEN} tokens of a Rust snippet; `p2` = BOS + first {P2_LEN} tokens of an English text with a
code block (crosses prefill chunks of 64/128/256); `p3` = BOS + {P3_LEN} seeded random non-special ids.

- `<variant>.<p>.json`: `tokens` (prompt ids as fed, BOS included), `greedy` ({N_GREEDY} argmax ids, no EOS stop),
  `greedy_margins` (top-1 minus top-2 logit at each greedy step; small values mean a near tie), `positions`
  (prompt positions whose logits are stored; p2 includes 63, 64, 127, 128, 255, 256), `backend`, `files`.
- `<variant>.<p>.npy`: f32 logits `[len(positions), vocab]`.
- `<variant>.<p>.rows.npy`: f32 `[{N_GREEDY + 1}, vocab]`: row 0 = logits after the prompt, row i = logits after
  feeding `greedy[:i]` (all rows from one forward over prompt + greedy).

Every logit comes from one full forward over the whole sequence (`use_cache=False`), never the cached 1-token path.
The seed was chosen so that no greedy step is a near tie: the smallest top-1/top-2 gap over all references is
{info["min_margin"]:.4f} (> {MIN_GREEDY_MARGIN}), so an f32 implementation can be required to reproduce `greedy` exactly.

{tiny_q_readme(info["tiny-q"])}

## Tokenizer and chat cases

- `tokenizer_cases.json`: list of `{{text, ids, ids_no_special, tokens_no_special, decoded, decoded_skip_special}}`;
  `ids` = `tokenizer.json` encoding with `add_special_tokens=True` (BOS prepended), `ids_no_special` without;
  `decoded` = decode(ids_no_special) keeping special tokens (always equals `text`), `decoded_skip_special` =
  decode(ids, skip_special_tokens=True). Special-token strings inside the text are matched as special tokens
  in both modes (as HF does); `add_special_tokens` only controls the BOS.
- `chat_cases.json`: list of `{{name, messages, tools, add_generation_prompt, rendered, ids}}`; `rendered` is
  transformers' `apply_chat_template(messages, tools=tools, add_generation_prompt=..., tokenize=False)` with the
  fixture's template; `ids` tokenizes `rendered` with `add_special_tokens=False` (the template already emits the
  BOS: no double BOS). Tool dicts and a dict-valued tool message go through transformers' `tojson`
  (`json.dumps` with `", "` / `": "` separators, non-ASCII kept, keys NOT sorted).

## Verified by the script

{info["verified"]}

## Files ({total:,} bytes in total, README excluded)

| file | bytes | what |
|---|---|---|
""" + "\n".join(rows) + "\n"
    (out / "README.md").write_text(text, encoding="utf-8")


# ----------------------------------------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------------------------------------

OWNED = [
    "tiny-a",
    "tiny-b",
    "expected",
    "tiny-a-f32.gguf",
    "tiny-a-f16.gguf",
    "tiny-b-bf16.gguf",
    "tokenizer_cases.json",
    "chat_cases.json",
    "README.md",
] + [f"tiny-q-{q}.gguf" for q in TINY_Q_QUANTS]
# Not owned (left alone, listed in the README's file table): quant_blocks.json (another tool writes it).


def make_prompts(tok: Tokenizer) -> dict[str, list[int]]:
    p1 = [BOS_ID] + tok.encode(P1_TEXT, add_special_tokens=False).ids[:P1_LEN]
    p2 = [BOS_ID] + tok.encode(P2_TEXT, add_special_tokens=False).ids[:P2_LEN]
    check(len(p1) == P1_LEN + 1 and len(p2) == P2_LEN + 1, "prompt texts too short")
    p3 = [BOS_ID] + [int(x) for x in rng_for("prompt-p3").integers(len(SPECIAL_TOKENS), VOCAB_SIZE, P3_LEN)]
    return {"p1": p1, "p2": p2, "p3": p3}


def make_tiny_a(out: Path, tok: Tokenizer, calib_ids: list[int], verified: list[str]):
    """tiny-a: current config keys, f32 safetensors, F32 + F16 GGUF. Returns (cfg, ff, weights, model, scale)."""
    hf_dir = out / "tiny-a"
    cfg = tiny_a_config()
    model = make_model(cfg)
    ff = swiglu_width(cfg.intermediate_size, cfg.block_auto_adjust_ff_dim, cfg.block_ffn_dim_multiplier,
                      cfg.block_multiple_of)
    check(model.model.layers[0].feed_forward.w1.out_features == ff == TINY_A["ff"], "tiny-a FFN width")
    weights = random_weights("tiny-a", hf_shapes(model))
    scale = calibrate_embedding(model, weights, calib_ids)

    cfg.save_pretrained(hf_dir)
    write_generation_config(hf_dir)
    tensors = {k: torch.from_numpy(v) for k, v in weights.items()}
    save_file(tensors, str(hf_dir / "model.safetensors"), metadata={"format": "pt"})
    model = load_hf(hf_dir)
    check(all(torch.equal(model.state_dict()[k], v) for k, v in tensors.items()), "tiny-a reload differs")
    verified.append("- `tiny-a/` reloads through `Lfm2ForCausalLM.from_pretrained` bit-exactly; lm_head is tied.")

    write_gguf(out / "tiny-a-f32.gguf", "tiny-a", cfg, ff, weights, hf_dir, tok, gguf.LlamaFileType.ALL_F32)
    write_gguf(out / "tiny-a-f16.gguf", "tiny-a", cfg, ff, weights, hf_dir, tok, gguf.LlamaFileType.MOSTLY_F16)
    return cfg, ff, weights, model, scale


def make_tiny_b(out: Path, tok: Tokenizer, calib_ids: list[int], verified: list[str]):
    """tiny-b: legacy config keys, bf16 2-shard checkpoint, BF16 GGUF. Returns (cfg, ff, weights, model, scale)."""
    hf_dir = out / "tiny-b"
    legacy = tiny_b_legacy_config()
    write_json(hf_dir / "config.json", legacy)
    write_generation_config(hf_dir)

    # How does transformers read the legacy keys?
    cfg = Lfm2Config.from_pretrained(hf_dir)
    ff = swiglu_width(legacy["block_ff_dim"], True, legacy["block_ffn_dim_multiplier"], legacy["block_multiple_of"])
    check(cfg.layer_types == TINY_B["layer_types"], f"tiny-b layer_types read as {cfg.layer_types}")
    check(cfg.intermediate_size == legacy["block_ff_dim"], "block_ff_dim not read as intermediate_size")
    check(cfg.tie_word_embeddings is True, "tie_embedding not honoured")
    check(cfg.rope_parameters["rope_theta"] == ROPE_THETA, f"tiny-b rope {cfg.rope_parameters}")
    model = make_model(cfg)
    check(model.model.layers[0].feed_forward.w1.out_features == ff, "tiny-b effective FFN width")

    weights = random_weights("tiny-b", hf_shapes(model))
    scale = calibrate_embedding(model, weights, calib_ids)
    bf16 = to_bf16(weights)
    weights = {k: v.float().numpy() for k, v in bf16.items()}  # the reference weights are the bf16 values
    write_sharded_bf16(hf_dir, bf16, split_layer=3)
    model = load_hf(hf_dir)
    check(model.model.layers[0].feed_forward.w1.out_features == ff, "tiny-b FFN width after reload")
    check(all(torch.equal(model.state_dict()[k], torch.from_numpy(v)) for k, v in weights.items()),
          "tiny-b reload differs")
    verified.append(
        f"- transformers reads tiny-b's legacy config as intended: `full_attn_idxs` -> layer_types "
        f"{cfg.layer_types}, `block_ff_dim` {legacy['block_ff_dim']} -> effective FFN width {ff} "
        f"(w1 out_features of the loaded model), `tie_embedding` -> tied; the bf16 shards reload bit-exactly."
    )

    write_gguf(out / "tiny-b-bf16.gguf", "tiny-b", cfg, ff, weights, hf_dir, tok, gguf.LlamaFileType.MOSTLY_BF16)
    return cfg, ff, weights, model, scale


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=REPO_ROOT / "tests" / "fixtures", help="output directory")
    ap.add_argument("--check-lfm-bin", type=Path, metavar="PATH",
                    help="after generating, check that `PATH synth` / `PATH quantize` outputs load in llama.cpp")
    ap.add_argument("--check-only", action="store_true",
                    help="with --check-lfm-bin: skip generation, check against the existing fixtures")
    ap.add_argument("--search-tiny-q-seed", type=int, nargs=2, metavar=("FIRST", "LAST"),
                    help="print the smallest tiny-q oracle greedy margin for each seed in [FIRST, LAST], then exit")
    args = ap.parse_args()
    out: Path = args.out.resolve()
    if args.search_tiny_q_seed:
        search_tiny_q_seed(out, range(args.search_tiny_q_seed[0], args.search_tiny_q_seed[1] + 1))
        return
    if args.check_only:
        check(args.check_lfm_bin is not None, "--check-only needs --check-lfm-bin")
        with tempfile.TemporaryDirectory() as work:
            tok = Tokenizer.from_file(str(out / "tiny-a" / "tokenizer.json"))
            built = build_tiny_q(tok, out / "tiny-a", make_prompts_q(tok)["p2"], TINY_Q_SEED, Path(work))
            failures = check_lfm_bin(args.check_lfm_bin.resolve(), out, Path(work), built["f16"])
        raise SystemExit(1 if failures else 0)
    out.mkdir(parents=True, exist_ok=True)
    old_sha = _committed_corpus_sha(out / "README.md")
    for name in OWNED:  # remove only what this script owns
        p = out / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
    for d in ("tiny-a", "tiny-b", "expected"):
        (out / d).mkdir()
    work_dir = tempfile.TemporaryDirectory()  # tiny-q's F16 GGUF and scratch files (not kept)
    work = Path(work_dir.name)
    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    verified: list[str] = []

    # --- tokenizer and prompts ---------------------------------------------------------------------------------
    tok, corpus_sha = build_tokenizer()
    n_merges = len(json.loads(tok.to_str())["model"]["merges"])
    log(f"tokenizer: vocab {tok.get_vocab_size()}, {n_merges} merges, corpus sha256 {corpus_sha[:16]}...")
    if old_sha and old_sha != corpus_sha:
        log(f"WARNING: tokenizer training corpus changed (sha256 {old_sha[:16]}... -> {corpus_sha[:16]}...): "
            "this Python's stdlib differs from the one used before, so the tokenizer and all ids change.")
    for d in ("tiny-a", "tiny-b"):
        write_tokenizer_files(tok, out / d)
    tok = Tokenizer.from_file(str(out / "tiny-a" / "tokenizer.json"))  # use the file as written from now on
    hf_tok = AutoTokenizer.from_pretrained(out / "tiny-a")
    prompts = make_prompts(tok)

    # --- models ---------------------------------------------------------------------------------------------------
    cfg_a, ff_a, weights_a, model_a, scale_a = make_tiny_a(out, tok, prompts["p2"], verified)
    cfg_b, ff_b, weights_b, model_b, scale_b = make_tiny_b(out, tok, prompts["p2"], verified)

    # --- GGUF re-read and logits equivalence ---------------------------------------------------------------------
    read_a32 = verify_gguf(out / "tiny-a-f32.gguf", cfg_a, ff_a, weights_a, tok, gguf.LlamaFileType.ALL_F32)
    read_a16 = verify_gguf(out / "tiny-a-f16.gguf", cfg_a, ff_a, weights_a, tok, gguf.LlamaFileType.MOSTLY_F16)
    read_b16 = verify_gguf(out / "tiny-b-bf16.gguf", cfg_b, ff_b, weights_b, tok, gguf.LlamaFileType.MOSTLY_BF16)
    verified.append(
        "- Each GGUF re-read with gguf-py's GGUFReader: all metadata keys/values above, token list/types/merges, "
        "tensor names, shapes and types (norms and conv kernels F32), and dequantized values (F32/BF16 exact, "
        "F16 = float16 rounding of the f32 weights)."
    )
    gguf_models = {}
    for key, cfg, read in [("a32", tiny_a_config(), read_a32), ("a16", tiny_a_config(), read_a16),
                           ("b16", Lfm2Config.from_pretrained(out / "tiny-b"), read_b16)]:
        gguf_models[key] = make_model(cfg)
        load_into(gguf_models[key], read)
    p2 = prompts["p2"]
    d_a32 = float(np.abs(full_logits(gguf_models["a32"], p2) - full_logits(model_a, p2)).max())
    d_b16 = float(np.abs(full_logits(gguf_models["b16"], p2) - full_logits(model_b, p2)).max())
    d_a16 = float(np.abs(full_logits(gguf_models["a16"], p2) - full_logits(model_a, p2)).max())
    check(d_a32 == 0.0 and d_b16 == 0.0, f"GGUF logits differ from HF: {d_a32} {d_b16}")
    verified.append(
        f"- Logits over p2 from the dequantized GGUF weights equal the HF-dir logits exactly for "
        f"`tiny-a-f32.gguf` and `tiny-b-bf16.gguf` (max |diff| {d_a32:g}, {d_b16:g}); `tiny-a-f16.gguf` "
        f"differs from f32 tiny-a by max |diff| {d_a16:.4f} (hence its own `tiny-a-f16` references)."
    )

    # --- independent NumPy forward -------------------------------------------------------------------------------
    np_diffs = [
        float(np.abs(numpy_forward(weights, cfg, ids) - full_logits(model, ids)).max())
        for cfg, weights, model in [(cfg_a, weights_a, model_a), (cfg_b, weights_b, model_b)]
        for ids in prompts.values()
    ]
    check(max(np_diffs) < 1e-3, f"NumPy forward disagrees with transformers: {np_diffs}")
    verified.append(
        f"- An independent float64 NumPy forward written from docs/lfm2-spec.md section 2 matches transformers "
        f"on all prompts of both models (max |diff| {max(np_diffs):.2e})."
    )

    # --- reference outputs -----------------------------------------------------------------------------------------
    exp_dir = out / "expected"
    prompts_q = make_prompts_q(tok)
    write_json(
        exp_dir / "prompts.json",
        {
            "tiny-a": prompts,
            "tiny-b": prompts,
            "tiny-q": prompts_q,
            "texts": {"p1": P1_TEXT, "p2": P2_TEXT},
            "notes": f"p1 = BOS + first {P1_LEN} tokens of texts.p1; p2 = BOS + first {P2_LEN} tokens of texts.p2 "
            f"(tiny-q: first {P2Q_LEN}); p3 = BOS + {P3_LEN} seeded random ids in [{len(SPECIAL_TOKENS)}, {VOCAB_SIZE})",
        },
    )
    summaries = {
        "tiny-a": write_expected(exp_dir, "tiny-a", ["tiny-a/", "tiny-a-f32.gguf"], model_a, prompts),
        "tiny-a-f16": write_expected(exp_dir, "tiny-a-f16", ["tiny-a-f16.gguf"], gguf_models["a16"], prompts),
        "tiny-b": write_expected(exp_dir, "tiny-b", ["tiny-b/", "tiny-b-bf16.gguf"], model_b, prompts),
    }
    for variant, summary in summaries.items():
        log(f"{variant}: " + ", ".join(f"{p}: len {v['len']} std {v['logit_std']:.2f} min margin "
                                         f"{v['min_margin']:.4f}" for p, v in summary.items()))
    min_margin = min(v["min_margin"] for s in summaries.values() for v in s.values())
    check(min_margin > MIN_GREEDY_MARGIN, f"a greedy step is a near tie (gap {min_margin:.4f}): pick another SEED")

    # --- tiny-q: llama.cpp-quantized GGUFs, exact-oracle and llama.cpp references --------------------------------
    q_info = make_tiny_q(out, tok, prompts_q, verified, work)
    for qname, summary in q_info["oracle"].items():
        log(f"tiny-q-{qname}: " + ", ".join(f"{p}: len {v['len']} std {v['logit_std']:.2f} min margin "
                                             f"{v['min_margin']:.4f}" for p, v in summary.items()))
    q_margin = min(v["min_margin"] for s in q_info["oracle"].values() for v in s.values())
    check(q_margin > MIN_GREEDY_MARGIN, f"tiny-q greedy near tie (gap {q_margin:.4f}): pick another TINY_Q_SEED")
    q_info["min_margin"] = q_margin
    stds = [v["logit_std"] for s in summaries.values() for v in s.values()]
    verified.append(
        f"- Greedy ids equal the argmax of the stored rows; row 0 equals the last prompt-position logits. "
        f"Logit std over the prompts is {min(stds):.2f}..{max(stds):.2f}; the smallest top-1/top-2 gap on any "
        f"greedy step is {min_margin:.4f} (see `greedy_margins`)."
    )

    # --- tokenizer and chat cases ----------------------------------------------------------------------------------
    write_json(out / "tokenizer_cases.json", tokenizer_cases(tok, hf_tok))
    write_json(out / "chat_cases.json", chat_cases(tok, hf_tok))
    verified.append(
        "- Tokenizer cases: `tokenizers` and transformers' AutoTokenizer give the same ids (with and without "
        "BOS) and decoding returns the input text. Chat cases are rendered by transformers' "
        "`apply_chat_template` (its `tojson` keeps dict key order) and start with exactly one BOS."
    )

    # --- llama.cpp on the unquantized files and the tokenizer ------------------------------------------------------
    llama_crosscheck_f32(out, prompts, verified)
    llama_tokenizer_check(out, verified)

    # --- README ------------------------------------------------------------------------------------------------------
    info = {
        "tiny-q": q_info,
        "gguf_version": _gguf_version(),
        "corpus_sha256": corpus_sha,
        "n_merges": n_merges,
        "min_margin": min_margin,
        "verified": "\n".join(verified),
    }
    models_info = [("tiny-a", TINY_A, cfg_a, ff_a, scale_a), ("tiny-b", TINY_B, cfg_b, ff_b, scale_b)]
    for name, spec, cfg, ff, scale in models_info:
        info[name] = {
            "hidden": spec["hidden"],
            "layers": ", ".join("attn" if t == "full_attention" else "conv" for t in spec["layer_types"]),
            "heads": spec["heads"],
            "kv_heads": spec["kv_heads"],
            "head_dim": spec["hidden"] // spec["heads"],
            "ff": ff,
            "vocab": cfg.vocab_size,
            "embed_scale": scale,
        }
    write_readme(out, info)

    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    log(f"wrote {out} ({total:,} bytes)")
    check(total < MAX_TOTAL_BYTES, f"fixtures too large: {total} bytes")

    failures = check_lfm_bin(args.check_lfm_bin.resolve(), out, work, q_info["work_f16"]) if args.check_lfm_bin else 0
    work_dir.cleanup()
    if failures:
        raise SystemExit(f"{failures} lfm output check(s) failed (fixtures were written)")


def _gguf_version() -> str:
    from importlib.metadata import version

    return version("gguf")


def _committed_corpus_sha(readme: Path) -> str | None:
    """The corpus sha256 recorded in an existing README, to warn when a rerun trains on different text."""
    if not readme.exists():
        return None
    m = re.search(r"corpus sha256\s+`([0-9a-f]{64})`", readme.read_text(encoding="utf-8"))
    return m.group(1) if m else None


if __name__ == "__main__":
    main()
