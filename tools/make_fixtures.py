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
  expected/     Reference logits and greedy continuations from transformers `Lfm2ForCausalLM` (CPU, float32,
                eager attention, every logit from ONE full forward over the whole sequence, no KV cache).
  tokenizer_cases.json, chat_cases.json
                Tokenizer and chat-template cases rendered/encoded by `tokenizers` / transformers.

Weights are random but deterministic: every tensor gets its own numpy PCG64 stream seeded from
(SEED, model name, tensor name). Linear and conv weights ~ N(0, 1/fan_in), RMSNorm weights 1 + N(0, 0.1),
and the tied embedding is scaled so that the final logits have std ~3 (so every op visibly moves the output).

The script checks what it writes: transformers reads both configs as intended (incl. the legacy SwiGLU
width rule), HF dirs reload bit-exactly, GGUF files re-read with gguf-py's GGUFReader carry the expected
metadata/types and reproduce the HF logits, greedy ids equal the argmax of the stored rows, and an
independent NumPy forward pass written from docs/lfm2-spec.md section 2 matches transformers.

Requires: python3 with torch (CPU), transformers, tokenizers, gguf (gguf-py), numpy, jinja2, safetensors.
The tokenizer depends on the training text, i.e. on the Python 3.11 stdlib sources found via `sysconfig`;
the README records the corpus sha256, and the script warns when it differs from the committed one.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import re
import shutil
import sysconfig
import zlib
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


def rng_for(*parts: str | int) -> np.random.Generator:
    """A numpy stream that depends only on SEED and the given names (stable across runs and machines)."""
    return np.random.default_rng([SEED] + [zlib.crc32(str(p).encode()) for p in parts])


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
    s = TINY_A
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


def random_weights(model_name: str, shapes: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    """Deterministic random weights (f32) for every HF tensor name except the tied lm_head."""
    out = {}
    for name, shape in shapes.items():
        rng = rng_for(model_name, name)
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
    arch = "lfm2"
    expect = {
        "general.architecture": arch,
        "general.file_type": int(ftype),
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


def greedy_and_rows(model: Lfm2ForCausalLM, prompt: list[int]) -> tuple[list[int], np.ndarray, list[float]]:
    """Greedy ids (each step a full forward, no cache, no EOS stop) and the 41 rows from one forward."""
    seq, greedy, margins = list(prompt), [], []
    for _ in range(N_GREEDY):
        last = full_logits(model, seq)[-1]
        nxt = int(np.argmax(last))
        top2 = np.sort(last)[-2:]
        greedy.append(nxt)
        margins.append(float(top2[1] - top2[0]))
        seq.append(nxt)
    rows = full_logits(model, prompt + greedy)[len(prompt) - 1 :]
    check(rows.shape[0] == N_GREEDY + 1, "rows count")
    check([int(np.argmax(r)) for r in rows[:N_GREEDY]] == greedy, "greedy ids != argmax(rows)")
    return greedy, rows, margins


def write_expected(
    exp_dir: Path, variant: str, files: list[str], model: Lfm2ForCausalLM, prompts: dict[str, list[int]]
) -> dict:
    summary = {}
    for pname, ids in prompts.items():
        logits = full_logits(model, ids)
        positions = prompt_positions(len(ids), pname)
        greedy, rows, margins = greedy_and_rows(model, ids)
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
        }
    return summary


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
}


def file_note(rel: str) -> str:
    name = rel.split("/")[-1]
    if rel.startswith("expected/") and name != "prompts.json":
        variant, pname, *rest = name.split(".")
        kind = {
            "json": "tokens, greedy ids (+ top-2 margins), positions, backend, files",
            "npy": "f32 logits [len(positions), vocab] at the prompt positions",
            "rows.npy": f"f32 [{N_GREEDY + 1}, vocab]: row 0 after the prompt, row i after greedy[:i]",
        }[".".join(rest)]
        return f"{variant} / {pname}: {kind}"
    return FILE_NOTES.get(name, "")


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
safetensors {safetensors.__version__}, numpy {np.__version__}, jinja2 {jinja2.__version__}.

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
]


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
    out: Path = ap.parse_args().out.resolve()
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
    write_json(
        exp_dir / "prompts.json",
        {
            "tiny-a": prompts,
            "tiny-b": prompts,
            "texts": {"p1": P1_TEXT, "p2": P2_TEXT},
            "notes": f"p1 = BOS + first {P1_LEN} tokens of texts.p1; p2 = BOS + first {P2_LEN} tokens of texts.p2; "
            f"p3 = BOS + {P3_LEN} seeded random ids in [{len(SPECIAL_TOKENS)}, {VOCAB_SIZE})",
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

    # --- README ------------------------------------------------------------------------------------------------------
    info = {
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
    check(total < 3_500_000, f"fixtures too large: {total} bytes")


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
