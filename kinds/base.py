"""The kind protocol: what every model kind implements, the types strategies share, and the registry.

A *model kind* is how a family of models meets a family of tasks: how canonical rows become token
ids (`encode`), how a batch is padded (`collate`), how logits are obtained (`forward`), how
predictions and references are read back into the task's canonical form (`predict`,
`references`), which model head is built (`load`, `tiny`), what the Hugging Face Trainer needs for
`harness bench` (`trainer_collator`, `trainer_rows`, `work`), and the sampling `Policy` that the
policy-gradient strategies use. One module per kind implements it; nothing outside them branches on
a kind's name.

Which kind runs a cell is decided by the task's data form (`Task.kind`) and the model's
architecture (`resolve`): a text-to-text task runs as `seq2seq` on an encoder-decoder (or a
warm-started encoder) and as `causal_lm` on a decoder-only model.

Imports nothing from harness or rewards; from tasks only `tasks.base` (types) and `tasks.metrics`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import torch

if TYPE_CHECKING:
    from tasks.base import Task

IGNORE = -100  # the label of positions that are not scored (PyTorch's cross-entropy ignore_index)
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids", "decoder_input_ids", "decoder_attention_mask")
ARCHITECTURES = ("encoder", "encoder-decoder", "decoder")


@dataclass
class Samples:
    """Outputs sampled from the policy, `num_samples` per input row, flattened to N rows.

    actions: [N] label ids, or [N, L] tag ids / generated token ids.
    mask:    same shape as actions; True where an action was taken (not padding).
    logprob: [N] summed log-probability of each sample under the model, with gradient.
    token_logprob: [N] or [N, L] per-action log-probabilities, with gradient.
    index:   [N] the batch row each sample belongs to.
    """

    actions: torch.Tensor
    mask: torch.Tensor
    logprob: torch.Tensor
    token_logprob: torch.Tensor
    index: torch.Tensor

    @property
    def lengths(self) -> torch.Tensor:
        return self.mask.reshape(self.mask.shape[0], -1).sum(-1)


class Policy(Protocol):
    """Sampling and scoring, implemented once per model kind."""

    def sample(self, model: torch.nn.Module, batch: dict[str, Any], logits: torch.Tensor | None,
               num_samples: int = 1, greedy: bool = False) -> Samples: ...

    def log_prob(self, model: torch.nn.Module, batch: dict[str, Any], samples: Samples,
                 logits: torch.Tensor | None = None) -> Samples:
        """Re-scores `samples` under `model` (e.g. the reference model), returning new log-probs.
        `logits`: the model's logits on the batch when the step has them (labels and tags are read
        off them without another forward pass; generated samples need their own teacher-forced pass)."""
        ...

    def score(self, samples: Samples, batch: dict[str, Any]) -> torch.Tensor:
        """[N] the task's sentence-level metric in [0, 1] of each sample against its reference."""
        ...

    def token_correct(self, samples: Samples, batch: dict[str, Any]) -> torch.Tensor:
        """Per-action correctness against the reference: 1.0 / 0.0, shaped like `samples.actions`."""
        ...

    def features(self, model: torch.nn.Module, batch: dict[str, Any],
                 samples: Samples) -> tuple[Samples, torch.Tensor]:
        """`samples` re-scored under `model`, and [N, D] features of each (input, output) pair."""
        ...


class ModelKind:
    """The protocol every kind implements (defaults shared by most kinds are written here once).

    `serves` is the task data form (`Task.kind`) the kind reads; `architectures` the model
    architectures it runs. `start` below is the id `encode` and `collate` need from the model
    (`start_token`): the decoder's start token for encoder-decoders, None elsewhere.
    """

    name: ClassVar[str] = ""
    serves: ClassVar[str] = ""
    architectures: ClassVar[tuple[str, ...]] = ARCHITECTURES
    generates: ClassVar[bool] = False  # outputs are generated sequences (not labels or tags)
    columns: ClassVar[tuple[str, ...]] = ()  # encoded columns besides input_ids, labels and index

    def encode(self, task: "Task", rows: dict[str, list[Any]], tokenizer: Any, start: int | None) -> dict[str, list]:
        """Tokenises a batch of canonical rows (a `datasets.map(batched=True)` function)."""
        raise NotImplementedError

    def collate(self, task: "Task", features: list[dict[str, Any]], pad_id: int, start: int | None) -> dict[str, Any]:
        """Pads a list of encoded rows to the longest in the batch (dynamic padding)."""
        raise NotImplementedError

    def length(self, row: dict[str, Any]) -> int:
        """A row's cost in tokens, for grouping rows of similar length into batches."""
        return len(row["input_ids"])

    def forward(self, model: torch.nn.Module, batch: dict[str, Any]) -> torch.Tensor:
        """Logits aligned with `batch["labels"]` (seq2seq: teacher-forced on the gold prefix)."""
        return forward(model, batch)

    def predict(self, task: "Task", model: torch.nn.Module, batch: dict[str, Any], tokenizer: Any,
                generation: dict[str, Any]) -> list[Any]:
        """Predictions in the task's canonical form: tag lists per word, label ids, or strings."""
        raise NotImplementedError

    def references(self, task: "Task", batch: dict[str, Any], tokenizer: Any, scored_only: bool = False) -> list[Any]:
        """The gold answers as the metric sees them (`scored_only`: aligned with sampled actions)."""
        raise NotImplementedError

    def evaluate_batch(self, task: "Task", model: torch.nn.Module, batch: dict[str, Any], tokenizer: Any,
                       generation: dict[str, Any]) -> tuple[list[Any], list[dict[str, Any]] | None]:
        """Predictions and, for kinds that predict classes, each example's calibration statistics
        (`tasks.metrics.calibration_stats`) from the same forward pass; None where there are none."""
        return self.predict(task, model, batch, tokenizer, generation), None

    def policy(self, task: "Task", tokenizer: Any, max_new_tokens: int, length_factor: float | None = None) -> Policy:
        raise NotImplementedError

    def start_token(self, model: torch.nn.Module) -> int | None:
        return None

    def load(self, source: str, task: "Task", tokenizer: Any) -> torch.nn.Module:
        """The pretrained model with this kind's head, in float32 (train under autocast)."""
        raise NotImplementedError

    def tiny(self, task: "Task", tokenizer: Any) -> torch.nn.Module:
        """A randomly initialised 2-layer model of this kind with `tokenizer`'s vocabulary, for tests."""
        raise NotImplementedError

    def trainer_collator(self, tokenizer: Any, model: torch.nn.Module) -> Any:
        """The Hugging Face collator the Trainer uses for this kind (`harness bench`)."""
        raise NotImplementedError

    def trainer_rows(self, rows: Any) -> Any:
        """Encoded rows as the Trainer reads them (a `datasets.Dataset`)."""
        return rows.select_columns(["input_ids", "labels"])

    def work(self, model: torch.nn.Module, rows: Any) -> list[tuple[int, int]]:
        """(matmul parameters, tokens they multiply) pairs of one pass over `rows`, for the 6·N·T floor."""
        return [(matmul_parameters(model), sum(len(ids) for ids in rows["input_ids"]))]

    def class_groups(self, task: "Task", classes: int, device: torch.device) -> torch.Tensor | None:
        """[C, K] 0/1 map from output classes to the K classes an F1 is macro-averaged over
        (soft F1); None where outputs are token sequences (the bag-of-tokens F1 applies)."""
        return None


KINDS: dict[str, ModelKind] = {}


def register_kind(kind: ModelKind) -> ModelKind:
    if kind.name in KINDS:
        raise ValueError(f"model kind {kind.name!r} is registered twice")
    KINDS[kind.name] = kind
    return kind


def get_kind(name: str) -> ModelKind:
    if name not in KINDS:
        raise KeyError(f"unknown model kind {name!r}; known kinds: {', '.join(sorted(KINDS))}")
    return KINDS[name]


def resolve(task: "Task", architecture: str) -> ModelKind:
    """The kind that runs `task` on a model of `architecture`: the task's own kind when it takes that
    architecture, else another kind serving the same data form that does (e.g. causal_lm)."""
    own = get_kind(task.kind)
    if architecture in own.architectures:
        return own
    for kind in KINDS.values():
        if kind.serves == own.serves and architecture in kind.architectures:
            return kind
    raise ValueError(f"task {task.name!r} ({task.kind}) cannot run on a {architecture} model; kinds for it: "
                     + ", ".join(f"{k.name} ({'/'.join(k.architectures)})" for k in KINDS.values() if k.serves == own.serves))


# ---- helpers shared by the kind modules -----------------------------------------------------

def forward(model: torch.nn.Module, batch: dict[str, Any]) -> torch.Tensor:
    """The model's logits on a batch's model inputs: every built-in kind collates its batches so
    that these are aligned with `batch["labels"]` (the default `ModelKind.forward`)."""
    return forward_output(model, batch).logits


def forward_output(model: torch.nn.Module, batch: dict[str, Any], **options: Any) -> Any:
    """The model's whole output on a batch's model inputs (`options` such as output_hidden_states)."""
    return model(**{k: batch[k] for k in MODEL_INPUTS if k in batch}, **options)


def pad(seqs: list[list[int]], value: int, left: bool = False) -> torch.Tensor:
    width = max((len(s) for s in seqs), default=0)
    if left:
        return torch.tensor([[value] * (width - len(s)) + list(s) for s in seqs], dtype=torch.long)
    return torch.tensor([list(s) + [value] * (width - len(s)) for s in seqs], dtype=torch.long)


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


def decode(tokenizer: Any, ids: torch.Tensor) -> list[str]:
    return [t.strip() for t in tokenizer.batch_decode(ids, skip_special_tokens=True,
                                                      clean_up_tokenization_spaces=True)]


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[N, L, H] → [N, H]: the mean over positions where `mask` is set (0 where none is)."""
    weights = mask.reshape(*hidden.shape[:2], 1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp_min(1)


def with_logprobs(logits: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor, index: torch.Tensor) -> Samples:
    """`Samples` with per-action and summed log-probabilities of `actions` under `logits`."""
    token_logprob = torch.log_softmax(logits.float(), -1).gather(-1, actions.unsqueeze(-1)).squeeze(-1)
    token_logprob = torch.where(mask, token_logprob, 0.0)  # not `* mask`: −inf · 0 would be NaN
    logprob = token_logprob.reshape(token_logprob.shape[0], -1).sum(-1)
    return Samples(actions=actions, mask=mask, logprob=logprob, token_logprob=token_logprob, index=index)


def matmul_parameters(module: torch.nn.Module) -> int:
    """Parameters that multiply every token: linear layers' weights and biases, a tied output
    projection included (it is its own Linear module); embedding tables are only looked up."""
    return sum(p.numel() for m in module.modules()
               if isinstance(m, torch.nn.Linear) or type(m).__name__ == "Conv1D"  # GPT-2's transposed Linear
               for p in m.parameters(recurse=False))


def new_parameters(model: torch.nn.Module) -> frozenset[str]:
    """Names of the parameters the pretrained checkpoint lacked, recorded by `with_new_parameters`
    (empty for a model loaded whole or built at random): they get `new_lr_scale` times the rate."""
    return getattr(model, "harness_new_parameters", frozenset())


def with_new_parameters(model: torch.nn.Module, names: Any) -> torch.nn.Module:
    """`model`, recording `names` (e.g. `from_pretrained(output_loading_info=True)`'s missing keys) as new."""
    model.harness_new_parameters = frozenset(names)
    return model


def pretrained_with_head(auto: Any, source: str, **options: Any) -> torch.nn.Module:
    """`auto.from_pretrained(source)` in float32, recording the head it had to initialise as new."""
    model, info = auto.from_pretrained(source, dtype=torch.float32, output_loading_info=True, **options)
    return with_new_parameters(model, info["missing_keys"])


def label_maps(task: "Task") -> dict[str, Any]:
    """The `from_pretrained` / config keyword arguments naming a classifier head's labels."""
    return dict(num_labels=len(task.labels), id2label=dict(enumerate(task.labels)),
                label2id={label: i for i, label in enumerate(task.labels)})


TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
            max_position_embeddings=512)
