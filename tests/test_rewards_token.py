"""Token- and metric-level reward strategies: CE equivalence, gradient direction, edge cases,
parameter validation and the documented formulas, on CPU with hand-made logits."""
from __future__ import annotations

import itertools
import math
from types import SimpleNamespace
from typing import Any, Callable

import pytest
import torch
import torch.nn.functional as F

from kinds import get_kind
from rewards.base import IGNORE, LossOutput, build_reward
from tests.helpers import check_declared_params

TAGS = ("O", "B-PER", "I-PER", "B-LOC", "I-LOC")
TASKS = {
    "classification": SimpleNamespace(name="sst2", kind="classification", labels=("negative", "positive")),
    "tagging": SimpleNamespace(name="ner", kind="tagging", labels=TAGS),
    "seq2seq": SimpleNamespace(name="translation", kind="seq2seq", labels=()),
}
KINDS = tuple(TASKS)
# Labels per kind: classes C = 5 (classification, tags) and a vocabulary of V = 7 for seq2seq.
LABELS = {
    "classification": torch.tensor([1, 0, IGNORE, 3, 4]),
    "tagging": torch.tensor([[0, 1, 2, 0, IGNORE], [3, 4, 0, IGNORE, IGNORE]]),
    "seq2seq": torch.tensor([[2, 5, 5, 1, IGNORE], [6, 3, 1, IGNORE, IGNORE]]),
}
CLASSES = {"classification": 5, "tagging": 5, "seq2seq": 7}

# Strategy -> parameters that reduce it to CE, and typical active parameters.
ZERO: dict[str, dict[str, Any]] = {
    "wrong_penalty": {"lam": 0.0},
    "confidence": {"lam": 0.0},
    "entropy": {"lam": 0.0},
    "confidence_penalty": {"beta": 0.0},
    "label_smoothing": {"eps": 0.0},
    "kl_reference": {"beta": 0.0},
    "focal": {"gamma": 0.0},
    "soft_f1": {"alpha": 0.0},
    "dice": {"weight": 0.0},
    "expected_accuracy": {"alpha": 0.0},
}
ACTIVE: dict[str, dict[str, Any]] = {
    "wrong_penalty": {"lam": 1.0},
    "confidence": {"lam": 1.0},
    "entropy": {"lam": 0.5, "target": 0.5},
    "confidence_penalty": {"beta": 0.5},
    "label_smoothing": {"eps": 0.2},
    "kl_reference": {"beta": 0.5},
    "focal": {"gamma": 2.0},
    "soft_f1": {"alpha": 1.0},
    "dice": {"alpha": 0.5, "gamma": 1.0, "weight": 1.0},
    "expected_accuracy": {"alpha": 1.0},
}
STRATEGIES = tuple(ZERO)


def make_logits(kind: str, seed: int = 0, classes: int | None = None,
                gold_margin: float = 0.0) -> torch.Tensor:
    """Random logits shaped like the kind's model output, with `gold_margin` added at the gold class."""
    labels = LABELS[kind]
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(*labels.shape, classes or CLASSES[kind], generator=generator)
    return logits + gold_margin * F.one_hot(labels.clamp_min(0), CLASSES[kind]) if gold_margin else logits


def make_ctx(kind: str, reference_logits: torch.Tensor | None = None, task: Any = None) -> SimpleNamespace:
    reference = torch.nn.Linear(1, 1)
    fixed = make_logits(kind, seed=99) if reference_logits is None else reference_logits
    grad_enabled: list[bool] = []

    def forward(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        assert model is reference
        grad_enabled.append(torch.is_grad_enabled())
        return fixed

    return SimpleNamespace(task=task or TASKS[kind], model=None, tokenizer=None, step=0, total_steps=1,
                           forward=forward, policy=None, reference=reference, grad_enabled=grad_enabled,
                           kind=get_kind(kind))


def run(name: str, params: dict[str, Any], logits: torch.Tensor, labels: torch.Tensor,
        ctx: SimpleNamespace) -> LossOutput:
    return build_reward(name, params).loss(logits, {"labels": labels}, ctx)


def scored_probs(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    keep = labels != IGNORE
    return logits[keep].softmax(-1), labels[keep]


def p_gold(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    probs, gold = scored_probs(logits, labels)
    return probs.gather(-1, gold[:, None]).squeeze(-1)


def entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    probs, _ = scored_probs(logits, labels)
    return -(probs * probs.log()).sum(-1)


def descend(loss_fn: Callable[[torch.Tensor], torch.Tensor], logits: torch.Tensor, labels: torch.Tensor,
            lr: float = 0.1) -> torch.Tensor:
    """One gradient-descent step on the logits; unscored positions must get no gradient."""
    leaf = logits.clone().requires_grad_(True)
    loss_fn(leaf).backward()
    assert leaf.grad is not None and torch.isfinite(leaf.grad).all()
    assert torch.count_nonzero(leaf.grad[labels == IGNORE]) == 0
    return (leaf - lr * leaf.grad).detach()


# ---- (1) zero weight is CE -----------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", STRATEGIES)
def test_zero_weight_equals_ce(name: str, kind: str) -> None:
    logits, labels, ctx = make_logits(kind, seed=1) * 3, LABELS[kind], make_ctx(kind)
    expected = run("ce", {}, logits, labels, ctx).loss
    out = run(name, ZERO[name], logits, labels, ctx)
    torch.testing.assert_close(out.loss, expected)
    torch.testing.assert_close(out.terms["ce"], expected)


# ---- (2) gradient direction ----------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", STRATEGIES)
def test_descent_step_raises_gold_probability(name: str, kind: str) -> None:
    """Gold ahead by 1 logit (argmax = y, p_y well below 1): the full loss must raise every p_y.

    The reference model is the starting point itself, as on the first training step.
    """
    labels = LABELS[kind]
    logits = make_logits(kind, seed=2) * 0.1 + F.one_hot(labels.clamp_min(0), CLASSES[kind])
    ctx = make_ctx(kind, reference_logits=logits)
    stepped = descend(lambda leaf: run(name, ACTIVE[name], leaf, labels, ctx).loss, logits, labels)
    assert (p_gold(stepped, labels) > p_gold(logits, labels)).all()


def _kl_to_reference(ctx: SimpleNamespace) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    def probe(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        log_p = logits[labels != IGNORE].log_softmax(-1)
        log_ref = ctx.forward(ctx.reference, {}).detach()[labels != IGNORE].log_softmax(-1)
        return -(log_p.exp() * (log_p - log_ref)).sum(-1).mean()
    return probe


# name, active params, and (given ctx) a probe the added term must increase: per scored position
# (every position must move) or one batch-level number.
TERM_CASES: list[tuple[str, dict[str, Any], Callable[[SimpleNamespace], Callable[..., torch.Tensor]]]] = [
    ("wrong_penalty", {"lam": 1.0, "form": "squared"}, lambda ctx: p_gold),
    ("wrong_penalty", {"lam": 1.0, "form": "max"}, lambda ctx: p_gold),
    ("confidence", ACTIVE["confidence"], lambda ctx: p_gold),
    ("entropy", {"lam": 1.0, "target": 0.2}, lambda ctx: lambda lg, lb: -(entropy(lg, lb) - 0.2).abs()),
    ("entropy", {"lam": 1.0, "target": 1.9}, lambda ctx: lambda lg, lb: -(entropy(lg, lb) - 1.9).abs()),
    ("confidence_penalty", ACTIVE["confidence_penalty"], lambda ctx: entropy),
    ("label_smoothing", {"eps": 0.5}, lambda ctx: entropy),  # the ε part pulls p towards uniform
    ("kl_reference", ACTIVE["kl_reference"], _kl_to_reference),
    ("soft_f1", ACTIVE["soft_f1"], lambda ctx: lambda lg, lb: p_gold(lg, lb).mean()),
    ("dice", ACTIVE["dice"], lambda ctx: p_gold),
    ("expected_accuracy", ACTIVE["expected_accuracy"], lambda ctx: p_gold),
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("name", "params", "make_probe"), TERM_CASES,
                         ids=[f"{n}-{'-'.join(map(str, p.values()))}" for n, p, _ in TERM_CASES])
def test_added_term_moves_in_documented_direction(name: str, params: dict[str, Any],
                                                  make_probe: Callable[..., Any], kind: str) -> None:
    """The strategy's loss minus its CE part (what the extra term alone does)."""
    logits, labels, ctx = make_logits(kind, seed=3) * 0.5, LABELS[kind], make_ctx(kind)
    logits = logits + 1.5 * F.one_hot(labels.clamp_min(0), logits.shape[-1])  # argmax = y, p_y about ½
    probe = make_probe(ctx)
    ce_share = 1.0 - params["eps"] if name == "label_smoothing" else 1.0  # label smoothing has (1 − ε)·CE

    def term_only(leaf: torch.Tensor) -> torch.Tensor:
        return run(name, params, leaf, labels, ctx).loss - ce_share * run("ce", {}, leaf, labels, ctx).loss

    stepped = descend(term_only, logits, labels)
    assert (probe(stepped, labels) > probe(logits, labels)).all()


def test_focal_down_weights_easy_positions() -> None:
    """Focal's gradient on an easy position shrinks relative to CE's more than on a hard one."""
    labels = torch.tensor([0, 0])
    logits = torch.tensor([[3.0, 0.0, 0.0], [-1.0, 0.0, 0.0]], requires_grad=True)
    ctx = make_ctx("classification")
    run("focal", {"gamma": 2.0}, logits, labels, ctx).loss.backward()
    focal_grad = logits.grad[:, 0].clone()
    logits.grad = None
    run("ce", {}, logits, labels, ctx).loss.backward()
    ratio = focal_grad / logits.grad[:, 0]
    assert 0 < ratio[0] < ratio[1]


def _dice_term_step(p_y: float, classes: int, params: dict[str, Any]) -> float:
    """The change of p_y after one descent step on the dice term alone (loss − CE), from a position whose
    gold class 0 has probability p_y and the other classes share the rest equally."""
    probs = torch.tensor([p_y] + [(1 - p_y) / (classes - 1)] * (classes - 1))
    labels = torch.tensor([0])
    ctx = make_ctx("classification")

    def term(leaf: torch.Tensor) -> torch.Tensor:
        return run("dice", params, leaf, labels, ctx).loss - run("ce", {}, leaf, labels, ctx).loss

    stepped = descend(term, probs.log().unsqueeze(0), labels, lr=0.1)
    return float(stepped.softmax(-1)[0, 0]) - p_y


def _gold_only_dice_step(p_y: float, classes: int, alpha: float, gamma: float) -> float:
    """The same step for the gold-class term alone (what `dice` computed before: the paper's formula
    with y = 1 only)."""
    logits = torch.tensor([[math.log(p_y)] + [math.log((1 - p_y) / (classes - 1))] * (classes - 1)],
                          requires_grad=True)
    p = logits.softmax(-1)[0, 0]
    x = (1 - p) ** alpha * p
    (1 - (2 * x + gamma) / (x + 1 + gamma)).backward()
    return float((logits.detach() - 0.1 * logits.grad).softmax(-1)[0, 0]) - p_y


@pytest.mark.parametrize("classes", [5, 9, 1000])
def test_dice_pushes_easy_and_hard_positions_up_easy_ones_less(classes: int) -> None:
    """α = 1, γ = 1 (the defaults): with both terms the dice loss raises p_y on hard and on easy
    positions, much less on easy ones; its gold-class term alone pulls easy positions back towards
    p = 1/(1 + α) = ½."""
    params = {"alpha": 1.0, "gamma": 1.0, "weight": 1.0}
    hard, easy, easier = (_dice_term_step(p, classes, params) for p in (0.1, 0.9, 0.99))
    assert hard > 0 and easy > 0 and easier > 0
    assert easier < easy < hard
    assert _gold_only_dice_step(0.9, classes, 1.0, 1.0) < 0 and _gold_only_dice_step(0.99, classes, 1.0, 1.0) < 0
    assert _gold_only_dice_step(0.1, classes, 1.0, 1.0) > 0


def test_dice_on_two_classes_with_alpha_one_only_sharpens() -> None:
    """The documented limit: with C = 2 and α = 1 both terms depend on p(1 − p) only, so the dice term
    is the same whichever class is gold and moves p_y away from ½ on either side."""
    logits, ctx = torch.tensor([[0.3, -0.4], [2.0, 0.5]]), make_ctx("classification")
    params = {"alpha": 1.0, "gamma": 1.0, "weight": 1.0}
    dice = [run("dice", params, logits, torch.tensor(y), ctx).terms["dice"] for y in ([0, 0], [1, 1])]
    torch.testing.assert_close(dice[0], dice[1])
    assert _dice_term_step(0.8, 2, params) > 0 > _dice_term_step(0.3, 2, params)


# ---- (3) edge cases ------------------------------------------------------------------------

def _edge_cases(kind: str) -> dict[str, tuple[torch.Tensor, torch.Tensor, SimpleNamespace]]:
    labels = LABELS[kind]
    single = make_logits(kind, classes=1)
    single_labels = labels.clamp_max(0).masked_fill(labels == IGNORE, IGNORE)
    single_task = SimpleNamespace(**{**vars(TASKS[kind]), "labels": ("O",) if kind == "tagging" else ()})
    return {
        "all_masked": (make_logits(kind), torch.full_like(labels, IGNORE), make_ctx(kind)),
        "single_class": (single, single_labels, make_ctx(kind, single * 2, task=single_task)),
        "p_gold_one": (make_logits(kind, gold_margin=1e4), labels, make_ctx(kind)),
        "p_gold_zero": (make_logits(kind, gold_margin=-1e4), labels, make_ctx(kind)),
        "reference_certain": (make_logits(kind), labels,
                              make_ctx(kind, make_logits(kind, 5, gold_margin=1e4))),
    }


# Extra parameter settings whose edge cases differ: fractional exponents, the max form, no smoothing.
EDGE_EXTRA: dict[str, dict[str, Any]] = {
    "focal": {"gamma": 0.5},
    "dice": {"alpha": 0.3, "gamma": 0.0},
    "wrong_penalty": {"form": "max"},
    "soft_f1": {"smooth": 0.0},
}


@pytest.mark.parametrize("case", ["all_masked", "single_class", "p_gold_one", "p_gold_zero",
                                  "reference_certain"])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", STRATEGIES)
def test_edge_cases_are_finite(name: str, kind: str, case: str) -> None:
    logits, labels, ctx = _edge_cases(kind)[case]
    settings = [ACTIVE[name]] + ([{**ACTIVE[name], **EDGE_EXTRA[name]}] if name in EDGE_EXTRA else [])
    for params in settings:
        leaf = logits.clone().requires_grad_(True)
        out = run(name, params, leaf, labels, ctx)
        assert out.loss.requires_grad and out.loss.dim() == 0
        assert torch.isfinite(out.loss)
        assert all(torch.isfinite(v) and not v.requires_grad for v in out.terms.values())
        out.loss.backward()
        assert torch.isfinite(leaf.grad).all()
        if case == "all_masked":
            assert out.loss.item() == 0.0
            assert torch.count_nonzero(leaf.grad) == 0


@pytest.mark.parametrize("name", STRATEGIES)
def test_low_precision_logits_are_computed_in_float32(name: str) -> None:
    logits, labels, ctx = make_logits("seq2seq", seed=8), LABELS["seq2seq"], make_ctx("seq2seq")
    low = logits.to(torch.bfloat16)
    out = run(name, ACTIVE[name], low, labels, ctx)
    assert out.loss.dtype == torch.float32
    torch.testing.assert_close(out.loss, run(name, ACTIVE[name], low.float(), labels, ctx).loss)


def test_soft_f1_is_one_for_perfect_predictions() -> None:
    for kind in KINDS:
        out = run("soft_f1", {"alpha": 1.0}, make_logits(kind, gold_margin=1e4), LABELS[kind], make_ctx(kind))
        torch.testing.assert_close(out.terms["soft_f1"], torch.tensor(1.0))


def test_soft_f1_rejects_tag_count_mismatch() -> None:
    ctx = make_ctx("tagging", task=SimpleNamespace(name="ner", kind="tagging", labels=TAGS[:3]))
    with pytest.raises(ValueError, match="tags"):
        run("soft_f1", {}, make_logits("tagging"), LABELS["tagging"], ctx)


def test_kl_reference_runs_the_reference_without_grad() -> None:
    ctx = make_ctx("tagging", reference_logits=make_logits("tagging", 7).requires_grad_(True))
    strategy = build_reward("kl_reference")
    assert strategy.needs_reference
    strategy.loss(make_logits("tagging"), {"labels": LABELS["tagging"]}, ctx)
    assert ctx.grad_enabled == [False]


# ---- the documented formulas, against independent implementations --------------------------

def _reference_value(name: str, params: dict[str, Any], logits: torch.Tensor, labels: torch.Tensor,
                     ctx: SimpleNamespace) -> torch.Tensor:
    probs, gold = scored_probs(logits, labels)
    p_y = probs.gather(-1, gold[:, None]).squeeze(-1)
    ce = -p_y.log().mean()
    h = -(probs * probs.log()).sum(-1)
    wrong = probs * (1 - F.one_hot(gold, probs.shape[-1]))
    if name == "wrong_penalty":
        term = (wrong ** 2).sum(-1) if params.get("form", "squared") == "squared" else wrong.max(-1).values
        return ce + params["lam"] * term.mean()
    if name == "confidence":
        return ce - params["lam"] * (p_y * (probs.argmax(-1) == gold)).mean()
    if name == "entropy":
        return ce + params["lam"] * ((h - params["target"]) ** 2).mean()
    if name == "confidence_penalty":
        return ce - params["beta"] * h.mean()
    if name == "label_smoothing":
        eps, classes = params["eps"], probs.shape[-1]
        q = (1 - eps) * F.one_hot(gold, classes) + eps / classes
        return (q * (q.log() - probs.log())).sum(-1).mean()
    if name == "kl_reference":
        ref = ctx.forward(ctx.reference, {})[labels != IGNORE].softmax(-1)
        return ce + params["beta"] * (probs * (probs.log() - ref.log())).sum(-1).mean()
    if name == "focal":
        return (-(1 - p_y) ** params["gamma"] * p_y.log()).mean()
    if name == "dice":  # Li et al. 2020: DSC = (2(1 − p)^α p·y + γ) / ((1 − p)^α p + y + γ), every class
        x, y, gamma = (1 - probs) ** params["alpha"] * probs, F.one_hot(gold, probs.shape[-1]), params["gamma"]
        dsc = (2 * x * y + gamma) / (x + y + gamma)
        return ce + params["weight"] * (1 - dsc).sum(-1).mean()
    if name == "expected_accuracy":
        rows = labels.reshape(labels.shape[0], -1)
        per_row = zip(logits.reshape(*rows.shape, -1), rows)
        rows = [p_gold(row_logits, row).mean() for row_logits, row in per_row if (row != IGNORE).any()]
        return ce - params["alpha"] * torch.stack(rows).mean()
    raise AssertionError(name)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", [n for n in STRATEGIES if n != "soft_f1"])
def test_formula_matches_independent_implementation(name: str, kind: str) -> None:
    logits, labels, ctx = make_logits(kind, seed=4) * 2, LABELS[kind], make_ctx(kind)
    torch.testing.assert_close(run(name, ACTIVE[name], logits, labels, ctx).loss,
                               _reference_value(name, ACTIVE[name], logits, labels, ctx))


def test_label_smoothing_is_smoothed_ce_minus_target_entropy() -> None:
    logits, labels = make_logits("tagging", seed=5), LABELS["tagging"]
    eps, classes = 0.3, CLASSES["tagging"]
    out = run("label_smoothing", {"eps": eps}, logits, labels, make_ctx("tagging"))
    hi, lo = 1 - eps + eps / classes, eps / classes
    target_entropy = -(hi * math.log(hi) + (classes - 1) * lo * math.log(lo))
    smoothed = F.cross_entropy(logits.reshape(-1, classes), labels.reshape(-1), label_smoothing=eps)
    torch.testing.assert_close(out.loss, smoothed - target_entropy)
    assert out.loss > 0


def test_soft_f1_formulas() -> None:
    # classification, C = 2: the positive class only.
    logits, labels = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.0, 0.0]]), torch.tensor([1, 0, 1])
    ctx = make_ctx("classification")
    p1 = logits.softmax(-1)[:, 1]
    tp, fp, fn = (p1 * (labels == 1)).sum(), (p1 * (labels == 0)).sum(), ((1 - p1) * (labels == 1)).sum()
    f1 = (2 * tp + 1) / (2 * tp + fp + fn + 1)
    out = run("soft_f1", {"alpha": 2.0}, logits, labels, ctx)
    torch.testing.assert_close(out.terms["soft_f1"], f1)
    torch.testing.assert_close(out.loss, out.terms["ce"] + 2.0 * (1 - f1))
    # tagging: B-X and I-X merged per type, macro over PER and LOC, O not a class.
    logits, labels = make_logits("tagging", seed=6), LABELS["tagging"]
    probs, gold = scored_probs(logits, labels)
    f1s = []
    for tags in ((1, 2), (3, 4)):
        p = probs[:, list(tags)].sum(-1)
        y = torch.isin(gold, torch.tensor(tags)).float()
        tp, fp, fn = (p * y).sum(), (p * (1 - y)).sum(), ((1 - p) * y).sum()
        f1s.append((2 * tp + 0.5) / (2 * tp + fp + fn + 0.5))
    out = run("soft_f1", {"smooth": 0.5}, logits, labels, make_ctx("tagging"))
    torch.testing.assert_close(out.terms["soft_f1"], torch.stack(f1s).mean())
    # seq2seq: per-sequence soft bag-of-tokens overlap, s = 0 gives overlap / length.
    logits, labels = make_logits("seq2seq", seed=7), LABELS["seq2seq"]
    f1s = []
    for b in range(labels.shape[0]):
        keep = labels[b] != IGNORE
        expected = logits[b][keep].softmax(-1).sum(0)
        reference = torch.bincount(labels[b][keep], minlength=CLASSES["seq2seq"]).float()
        f1s.append(torch.minimum(expected, reference).sum() / keep.sum())
    out = run("soft_f1", {"smooth": 0.0}, logits, labels, make_ctx("seq2seq"))
    torch.testing.assert_close(out.terms["soft_f1"], torch.stack(f1s).mean())


# ---- (4) parameters ------------------------------------------------------------------------

@pytest.mark.parametrize("name", STRATEGIES)
def test_parameters_are_declared_and_validated(name: str) -> None:
    strategy = check_declared_params(name)
    assert strategy.family == ("metric" if name in ("soft_f1", "dice", "expected_accuracy") else "token")
    with pytest.raises(KeyError, match="no_such_param"):
        build_reward(name, {"no_such_param": 1})


@pytest.mark.parametrize(("name", "params", "field"), [
    ("focal", {"gamma": -1}, "gamma"),
    ("label_smoothing", {"eps": 1.0}, "eps"),
    ("wrong_penalty", {"form": "cubed"}, "form"),
    ("confidence", {"threshold": 1.5}, "threshold"),
])
def test_invalid_values_raise_naming_the_parameter(name: str, params: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        build_reward(name, params)


@pytest.mark.parametrize("kind", KINDS)
def test_no_two_strategies_are_the_same_method(kind: str) -> None:
    """Every non-sampling strategy (at its defaults) gives a loss gradient of its own on every kind, two
    classes included (where CE − λ·p_y, the former ml_reward, was expected_accuracy). ce_continued is CE
    by design (it differs in where it starts); raml is drawn with τ = 1 and a fixed seed, so that this
    one batch has replaced targets."""
    from rewards.base import CONTINUED_CONTROL, REWARDS

    names = sorted(n for n, cls in REWARDS.items() if cls.family != "sampling" and n != CONTINUED_CONTROL)
    assert {"ce", "raml", "dice", "expected_accuracy"} <= set(names)
    rows = {"classification": torch.tensor([1, 0, 1, 1]), "tagging": LABELS["tagging"], "seq2seq": LABELS["seq2seq"]}
    classes = {"classification": 2, "tagging": 5, "seq2seq": 7}[kind]
    task = SimpleNamespace(**{**vars(TASKS[kind]), "labels": TASKS[kind].labels if kind == "tagging" else ("n", "p")})
    logits = torch.randn(*rows[kind].shape, classes, generator=torch.Generator().manual_seed(3))
    ctx = make_ctx(kind, reference_logits=torch.randn(*logits.shape), task=task)
    gradients = {}
    for name in names:
        leaf = logits.clone().requires_grad_(True)
        torch.manual_seed(0)
        strategy = build_reward(name, {"tau": 1.0, "token_tau": 1.0} if name == "raml" else {})
        if kind == "seq2seq" and name == "raml":
            continue  # scores its targets with the model (a policy), tested in test_raml.py
        strategy.loss(leaf, {"labels": rows[kind]}, ctx).loss.backward()
        gradients[name] = leaf.grad
    for a, b in itertools.combinations(gradients, 2):
        assert not torch.allclose(gradients[a], gradients[b]), (a, b)


def test_every_non_sampling_strategy_documents_its_method() -> None:
    """Objective, estimator, baseline, normalisation and source are stated in every docstring; the first
    line (what `harness list` prints) says what the strategy is."""
    from rewards.base import REWARDS

    for name, cls in REWARDS.items():
        if cls.family == "sampling" or not cls.__module__.startswith("rewards."):  # built-in strategies only
            continue
        doc = cls.__doc__ or ""
        for part in ("Objective", "Estimator", "Baseline", "Normalisation", "Source"):
            assert f"{part}:" in doc, (name, part)
        assert doc.strip().splitlines()[0].strip()
    assert "token-level" in REWARDS["soft_f1"].__doc__.splitlines()[0]
    assert "bag of tokens" in REWARDS["soft_f1"].__doc__.splitlines()[0]
