"""Sequence-to-sequence with an encoder-decoder: the source is encoded, the target decoded.

Runs on encoder-decoders (T5, BART, Marian) and on a pretrained encoder warm-started into a
"bert2bert" encoder-decoder (Rothe et al. 2020), the offline default.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from kinds.base import (IGNORE, TINY, decode, matmul_parameters, mean_pool, pad, pretrained_with_head, register_kind,
                         with_new_parameters)
from kinds.sequences import SequenceKind

if TYPE_CHECKING:
    from tasks.base import Task


class Seq2Seq(SequenceKind):
    name = serves = "seq2seq"
    architectures = ("encoder-decoder", "encoder")
    columns = ("target",)

    def encode(self, task: "Task", rows: dict[str, list[Any]], tokenizer: Any, start: int | None) -> dict[str, list]:
        enc = tokenizer(rows["source"], truncation=True, max_length=task.max_source_length)
        targets = tokenizer(rows["target"], truncation=True, max_length=task.max_target_length + 1)["input_ids"]
        # BERT-style tokenizers put [CLS] first, which is the decoder's start token, not a target.
        labels = [ids[1:] if ids and ids[0] == start else ids for ids in targets]
        return {"input_ids": enc["input_ids"], "labels": [ids[: task.max_target_length] for ids in labels]}

    def collate(self, task: "Task", features: list[dict[str, Any]], pad_id: int, start: int | None) -> dict[str, Any]:
        labels = pad([f["labels"] for f in features], IGNORE)
        shifted = torch.cat([torch.full((labels.shape[0], 1), start, dtype=torch.long), labels[:, :-1]], dim=1)
        return {"input_ids": pad([f["input_ids"] for f in features], pad_id),
                "attention_mask": pad([[1] * len(f["input_ids"]) for f in features], 0),
                "index": torch.tensor([f["index"] for f in features]), "labels": labels,
                "target": [f["target"] for f in features],
                # position t reads shifted[t] and predicts labels[t]
                "decoder_attention_mask": (labels != IGNORE).long(),
                "decoder_input_ids": shifted.masked_fill(shifted == IGNORE, pad_id)}

    def length(self, row: dict[str, Any]) -> int:
        return len(row["input_ids"]) + len(row["labels"])

    @torch.no_grad()
    def predict(self, task: "Task", model: torch.nn.Module, batch: dict[str, Any], tokenizer: Any,
                generation: dict[str, Any]) -> list[Any]:
        return decode(tokenizer, self.generate(model, batch, do_sample=False, **generation))

    def generate(self, model: torch.nn.Module, batch: dict[str, Any], **settings: Any) -> torch.Tensor:
        source = ({"encoder_outputs": batch["encoder_outputs"]} if "encoder_outputs" in batch
                  else {"input_ids": batch["input_ids"]})
        out = model.generate(**source, attention_mask=batch["attention_mask"], **settings)
        return out[:, 1:]  # drop the decoder start token

    def repeat(self, model: torch.nn.Module, batch: dict[str, Any], times: int) -> dict[str, Any]:
        """The encoder runs once per input; its states are repeated, as `generate` does for sampling."""
        from transformers.modeling_outputs import BaseModelOutput

        encoded = self.encode_once(model, batch)["encoded"]
        return {"encoder_outputs": BaseModelOutput(last_hidden_state=encoded.repeat_interleave(times, 0)),
                "attention_mask": batch["attention_mask"].repeat_interleave(times, 0)}

    def teacher_forced(self, model: torch.nn.Module, batch: dict[str, Any], actions: torch.Tensor,
                       index: torch.Tensor, output_hidden_states: bool = False) -> tuple[torch.Tensor, Any]:
        """The decoder run on `actions`; the encoder runs once per input, not once per sample."""
        start = self.start_token(model)
        decoder_input_ids = torch.cat([torch.full_like(actions[:, :1], start), actions[:, :-1]], dim=1)
        encoded = batch["encoded"] if "encoded" in batch else self.encode_once(model, batch)["encoded"]
        out = model(encoder_outputs=(encoded[index],), attention_mask=batch["attention_mask"][index],
                    decoder_input_ids=decoder_input_ids, output_hidden_states=output_hidden_states)
        return out.logits, out

    def encode_once(self, model: torch.nn.Module, batch: dict[str, Any]) -> dict[str, Any]:
        encoded = model.get_encoder()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        return {**batch, "encoded": encoded.last_hidden_state}

    def pooled(self, out: Any, batch: dict[str, Any], index: torch.Tensor,
               mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return (mean_pool(out.encoder_last_hidden_state.float(), batch["attention_mask"][index]),
                mean_pool(out.decoder_hidden_states[-1].float(), mask))

    def start_token(self, model: torch.nn.Module) -> int | None:
        start = model.generation_config.decoder_start_token_id
        return model.config.decoder_start_token_id if start is None else start

    def load(self, source: str, task: "Task", tokenizer: Any) -> torch.nn.Module:
        from transformers import AutoConfig, AutoModelForSeq2SeqLM, EncoderDecoderModel

        if AutoConfig.from_pretrained(source).is_encoder_decoder:
            return pretrained_with_head(AutoModelForSeq2SeqLM, source)
        model = EncoderDecoderModel.from_encoder_decoder_pretrained(source, source, encoder_dtype=torch.float32,
                                                                    decoder_dtype=torch.float32)
        return _configure_bert2bert(model, tokenizer)

    def tiny(self, task: "Task", tokenizer: Any) -> torch.nn.Module:
        from transformers import BertConfig, EncoderDecoderConfig, EncoderDecoderModel

        encoder = BertConfig(vocab_size=len(tokenizer), **TINY)
        decoder = BertConfig(vocab_size=len(tokenizer), is_decoder=True, add_cross_attention=True, **TINY)
        model = EncoderDecoderModel(EncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder))
        return _configure_bert2bert(model, tokenizer)

    def trainer_collator(self, tokenizer: Any, model: torch.nn.Module) -> Any:
        from transformers import DataCollatorForSeq2Seq

        return DataCollatorForSeq2Seq(tokenizer, model=model)  # builds decoder_input_ids from the labels

    def work(self, model: torch.nn.Module, rows: Any) -> list[tuple[int, int]]:
        """Encoder parameters × source tokens + decoder parameters × target tokens (this charges the
        decoder's cross-attention key/value projections, which run over the source, at the target length)."""
        encoder = matmul_parameters(model.get_encoder())
        return [(encoder, sum(len(ids) for ids in rows["input_ids"])),
                (matmul_parameters(model) - encoder, sum(len(ids) for ids in rows["labels"]))]


def _configure_bert2bert(model: Any, tokenizer: Any) -> Any:
    """bert2bert needs [CLS] as decoder start and [SEP] as end, on both config and generation config."""
    ids = dict(decoder_start_token_id=tokenizer.cls_token_id, bos_token_id=tokenizer.cls_token_id,
               eos_token_id=tokenizer.sep_token_id, pad_token_id=tokenizer.pad_token_id)
    for cfg in (model.config, model.generation_config):
        for key, value in ids.items():
            setattr(cfg, key, value)
    model.config.vocab_size = model.config.decoder.vocab_size
    return with_new_parameters(model, _uncopied(model))


def _uncopied(model: Any) -> list[str]:
    """The decoder parameters the warm start could not copy from the encoder checkpoint: each layer's
    cross-attention and the LM head's transform and bias (3.7 M of bert2bert-MiniLM's parameters)."""
    encoder = {name.removeprefix("encoder.") for name, _ in model.named_parameters() if name.startswith("encoder.")}
    return [name for name, _ in model.named_parameters()
            if name.startswith("decoder.") and name.removeprefix("decoder.").removeprefix("bert.") not in encoder]


SEQ2SEQ = register_kind(Seq2Seq())
