"""Text-to-text with a decoder-only model (GPT-2, Qwen, Llama): prompt → completion.

A row becomes `prompt + completion`: the prompt is the task's template (`Task.prompt`) around the
source text (only the source is truncated, so the instruction survives), preceded by the beginning
token where the tokenizer has one; the completion is the target followed by the end token. The
loss is on the completion only: `labels[t]` is the token that logits[t] must predict, IGNORE over
the prompt, so every strategy reads logits and labels exactly as for the other kinds. Training
batches are right-padded; generation reads left-padded prompts (`prompt_ids`, `prompt_mask`) with
position ids counted from each prompt's first real token, and so does the teacher-forced re-scoring
of samples, so a sample's log-probability does not depend on its batch's padding.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from kinds.base import IGNORE, decode, matmul_parameters, mean_pool, pad, register_kind
from kinds.sequences import SequenceKind

if TYPE_CHECKING:
    from tasks.base import Task

TINY_GPT = dict(n_embd=32, n_layer=2, n_head=2, n_inner=64, n_positions=1024)


def end_token(tokenizer: Any) -> int:
    """The id that ends a completion: the tokenizer's end-of-sequence, else its separator ([SEP])."""
    eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
    if eos is None:
        raise ValueError(f"tokenizer {tokenizer.name_or_path!r} has neither an end-of-sequence nor a separator token")
    return eos


def begin_token(tokenizer: Any) -> int | None:
    return tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.cls_token_id


class CausalLM(SequenceKind):
    name = "causal_lm"
    serves = "seq2seq"
    architectures = ("decoder",)
    columns = ("prompt_length", "target")

    def encode(self, task: "Task", rows: dict[str, list[Any]], tokenizer: Any, start: int | None) -> dict[str, list]:
        if not task.prompt or "{source}" not in task.prompt:
            raise ValueError(f"task {task.name!r} declares no prompt template with '{{source}}' (Task.prompt), which a "
                             "decoder-only model needs")
        before, after = task.prompt.split("{source}", 1)
        prefix, suffix = (tokenizer(text, add_special_tokens=False)["input_ids"] if text else [] for text in (before, after))
        begin = begin_token(tokenizer)
        sources = tokenizer(rows["source"], add_special_tokens=False, truncation=True,
                            max_length=task.max_source_length)["input_ids"]
        targets = tokenizer([" " + t for t in rows["target"]], add_special_tokens=False, truncation=True,
                            max_length=task.max_target_length)["input_ids"]
        prompts = [([] if begin is None else [begin]) + prefix + ids + suffix for ids in sources]
        completions = [(ids + [end_token(tokenizer)])[: task.max_target_length] for ids in targets]
        return {"input_ids": [p + c for p, c in zip(prompts, completions)],
                "prompt_length": [len(p) for p in prompts], "labels": completions}

    def collate(self, task: "Task", features: list[dict[str, Any]], pad_id: int, start: int | None) -> dict[str, Any]:
        input_ids = pad([f["input_ids"] for f in features], pad_id)
        labels = torch.full_like(input_ids, IGNORE)
        for row, f in enumerate(features):  # logits at position t predict token t + 1
            first = f["prompt_length"] - 1
            labels[row, first: first + len(f["labels"])] = torch.tensor(f["labels"], dtype=torch.long)
        prompts = [f["input_ids"][: f["prompt_length"]] for f in features]
        return {"input_ids": input_ids, "attention_mask": pad([[1] * len(f["input_ids"]) for f in features], 0),
                "index": torch.tensor([f["index"] for f in features]), "labels": labels,
                "completion": pad([f["labels"] for f in features], IGNORE), "target": [f["target"] for f in features],
                "prompt_ids": pad(prompts, pad_id, left=True), "prompt_mask": pad([[1] * len(p) for p in prompts], 0, left=True)}

    def gold(self, batch: dict[str, Any]) -> torch.Tensor:
        return batch["completion"]

    @torch.no_grad()
    def predict(self, task: "Task", model: torch.nn.Module, batch: dict[str, Any], tokenizer: Any,
                generation: dict[str, Any]) -> list[Any]:
        return decode(tokenizer, self.generate(model, batch, do_sample=False, **generation))

    def generate(self, model: torch.nn.Module, batch: dict[str, Any], **settings: Any) -> torch.Tensor:
        prompts = batch["prompt_ids"]
        out = model.generate(input_ids=prompts, attention_mask=batch["prompt_mask"], **settings)
        return out[:, prompts.shape[1]:]

    def repeat(self, model: torch.nn.Module, batch: dict[str, Any], times: int) -> dict[str, Any]:
        return {"prompt_ids": batch["prompt_ids"].repeat_interleave(times, 0),
                "prompt_mask": batch["prompt_mask"].repeat_interleave(times, 0)}

    def teacher_forced(self, model: torch.nn.Module, batch: dict[str, Any], actions: torch.Tensor,
                       index: torch.Tensor, output_hidden_states: bool = False) -> tuple[torch.Tensor, Any]:
        prompts = batch["prompt_ids"][index]
        mask = torch.cat([batch["prompt_mask"][index], torch.ones_like(actions)], dim=1)
        positions = (mask.cumsum(-1) - 1).clamp_min(0)
        out = model(input_ids=torch.cat([prompts, actions], dim=1), attention_mask=mask, position_ids=positions,
                    output_hidden_states=output_hidden_states)
        first = prompts.shape[1] - 1  # the prompt's last token predicts the first action
        return out.logits[:, first: first + actions.shape[1]], out

    def pooled(self, out: Any, batch: dict[str, Any], index: torch.Tensor,
               mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = out.hidden_states[-1].float()
        width = batch["prompt_ids"].shape[1]
        return mean_pool(hidden[:, :width], batch["prompt_mask"][index]), mean_pool(hidden[:, width:], mask)

    def load(self, source: str, task: "Task", tokenizer: Any) -> torch.nn.Module:
        from transformers import AutoModelForCausalLM

        return _configure(AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32), tokenizer)

    def tiny(self, task: "Task", tokenizer: Any) -> torch.nn.Module:
        from transformers import GPT2Config, GPT2LMHeadModel

        return _configure(GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), **TINY_GPT)), tokenizer)

    def trainer_collator(self, tokenizer: Any, model: torch.nn.Module) -> Any:
        from transformers import DataCollatorForSeq2Seq

        return DataCollatorForSeq2Seq(tokenizer)  # pads labels with -100; the model shifts them itself

    def trainer_rows(self, rows: Any) -> Any:
        """Hugging Face's causal-LM labels: the input ids over the completion, -100 over the prompt."""
        return rows.map(lambda r: {"labels": [IGNORE] * r["prompt_length"] + r["labels"]}).select_columns(
            ["input_ids", "labels"])

    def work(self, model: torch.nn.Module, rows: Any) -> list[tuple[int, int]]:
        return [(matmul_parameters(model), sum(len(ids) for ids in rows["input_ids"]))]


def _configure(model: Any, tokenizer: Any) -> Any:
    """The tokenizer's end, beginning and padding ids on the model's config and generation config."""
    ids = dict(eos_token_id=end_token(tokenizer), bos_token_id=begin_token(tokenizer), pad_token_id=tokenizer.pad_token_id)
    for cfg in (model.config, model.generation_config):
        for key, value in ids.items():
            setattr(cfg, key, value)
    return model


CAUSAL_LM = register_kind(CausalLM())
