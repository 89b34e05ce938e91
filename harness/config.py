"""Run configurations and grid files.

A grid is a YAML file: the tasks, reward strategies (with parameters), seeds, and training
settings shared by all tasks or set per task, and optionally code to import first (`include`).
`harness.grid.plan` expands a grid into its runs. Presets are grids shipped in `harness/presets/`.
Every key is checked: a typo or a wrong type fails with the file, the key and the valid keys.
"""
from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness import __version__

PRESETS_DIR = Path(__file__).parent / "presets"


class ConfigError(ValueError):
    """A grid or command-line setting that cannot be used; the message says where and how to fix it."""


@dataclass(frozen=True)
class TrainSettings:
    """Everything about one run except what identifies the cell (task, reward, seed)."""

    model: str | None = None  # None: the task's default model
    epochs: int = 3
    lr: float = 5e-5
    # Learning-rate multiplier for the parameters the pretrained checkpoint lacks (`kinds.base.new_parameters`:
    # a warm-started bert2bert's cross-attention and LM-head transform, a classifier head), which start
    # from random values while the rest is already trained; a run from another run's checkpoint has
    # none. None: the same rate for every parameter.
    new_lr_scale: float | None = None
    batch_size: int = 32
    eval_batch_size: int = 128
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    patience: int = 2  # epochs without validation improvement before stopping
    max_train: int | None = None  # first N training rows (None: all)
    max_eval: int | None = None  # first N validation and test rows (None: all)
    # first N validation rows when fewer than max_eval's (None: max_eval): model selection on a
    # subset, testing on the full test set, where evaluation is a large share of a run's cost
    max_validation: int | None = None
    # Runs that start from another run's checkpoint (`init_from`: the sampling strategies, kl_reference
    # and ce_continued start from ce) train this many epochs on the first this-many training rows
    # (None: epochs, max_train): a shorter second phase, as RL fine-tuning after supervised training
    # usually is, where a sampling epoch costs several supervised ones. Part of every run's identity,
    # so parent and child name the same settings.
    continued_epochs: int | None = None
    continued_max_train: int | None = None
    num_beams: int | None = None  # generation settings; None: the task's own
    max_new_tokens: int | None = None
    length_penalty: float | None = None
    no_repeat_ngram_size: int | None = None
    max_source_length: int | None = None  # truncation in tokens; None: the task's own
    max_target_length: int | None = None
    # Sampling strategies on seq2seq tasks stop each batch's samples at this many times its longest
    # reference (and at max_new_tokens): an early policy that rarely ends a sentence would
    # otherwise generate, and backpropagate through, several times the references' length.
    # None: max_new_tokens only.
    sample_length_factor: float | None = 2.0
    log_every: int = 50  # steps between logged training diagnostics
    # Dropout in the model being trained. None: the strategy decides (`RewardStrategy.policy_dropout`:
    # off for the sampling strategies, whose samples, old and new log-probabilities and reference
    # must come from one deterministic network, as in TRL's PPO/GRPO/DPO trainers; on otherwise).
    # The value used is written into the run's record under "policy_dropout".
    policy_dropout: bool | None = None
    # torch.compile the training forward pass (dynamic shapes): a speed option for GPUs, measured
    # in BENCHMARKS.md; compiled kernels round differently, so it is part of the run's identity.
    compile: bool = False
    # Mixed precision: "bf16" (bf16 autocast for training, evaluation and sampling; weights and
    # optimiser stay fp32) or "fp32". None: bf16 on a GPU, fp32 on a CPU (`recipe.uses_bf16`); bf16 on
    # a CPU is worth it only where it has bf16 instructions (avx512_bf16, amx_bf16; BENCHMARKS.md).
    precision: str | None = None


@dataclass(frozen=True)
class RunConfig:
    task: str
    reward: str
    seed: int
    settings: TrainSettings
    reward_params: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)  # DataSource.describe(): checksums or Hub id
    # The run hash of the run whose checkpoint the strategy starts from (`init_from`; set by
    # `with_parent`), None for strategies that start from the pretrained model.
    parent: str | None = None

    def identity(self) -> dict[str, Any]:
        """The full resolved configuration that names this run (see `run_hash`). The parent's hash is
        part of it only when there is one, so runs from the pretrained model keep their older hashes."""
        # Unset settings (None: "the task's own", "off") are left out, so a setting added later with
        # None as its default leaves the hashes of stored runs, and a grid's resume, as they were.
        settings = {k: v for k, v in dataclasses.asdict(self.settings).items() if v is not None}
        identity = {"task": self.task, "reward": self.reward, "reward_params": self.reward_params,
                    "seed": self.seed, "settings": settings, "data": self.data,
                    "harness_version": __version__}
        return {**identity, "parent": self.parent} if self.parent is not None else identity

    def run_hash(self) -> str:
        return identity_hash(self.identity())


def parent_of(cfg: RunConfig, chain: tuple[str, ...] = ()) -> RunConfig | None:
    """The run whose checkpoint `cfg`'s strategy starts from (same task, seed, settings and data;
    the parent strategy's default parameters), itself with its own parent named; None if none.
    `chain`: the strategies below it, to refuse strategies that start from each other."""
    from rewards.base import REWARDS

    name = REWARDS[cfg.reward].init_from
    if not name:
        return None
    if name in (*chain, cfg.reward):
        raise ConfigError(f"strategies start from each other's checkpoints ({' -> '.join((*chain, cfg.reward, name))}); "
                          "fix their `init_from`")
    return with_parent(dataclasses.replace(cfg, reward=name, reward_params={}, parent=None), (*chain, cfg.reward))


def with_parent(cfg: RunConfig, chain: tuple[str, ...] = ()) -> RunConfig:
    """`cfg` with `parent` set to its parent run's hash: a child's identity names the exact run it was
    trained from, so a record of a child never stands for one trained from another parent."""
    parent = parent_of(cfg, chain)
    return dataclasses.replace(cfg, parent=parent.run_hash() if parent is not None else None)


def identity_hash(identity: dict[str, Any]) -> str:
    """The run hash of an identity (`RunConfig.identity()`); a function so a bare identity, e.g. a
    record's config, hashes exactly as the RunConfig it came from."""
    blob = json.dumps(identity, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Grid:
    name: str
    tasks: tuple[str, ...]
    rewards: dict[str, dict[str, Any]]  # cell name (`focal`, or `focal[gamma=1]` in a sweep) -> parameters
    seeds: tuple[int, ...]
    settings: dict[str, TrainSettings]  # per task
    source: str  # the file it came from
    includes: tuple[str, ...] = ()  # code it imports (`include:`), resolved paths (harness.include)


_SETTING_TYPES = {f.name: f.type for f in dataclasses.fields(TrainSettings)}
_GRID_KEYS = {"name", "description", "include", "tasks", "rewards", "seeds", "train"}


def _check_keys(where: str, given: dict[str, Any], allowed: set[str]) -> None:
    for key in given:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), sorted(allowed), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{where}: unknown key {key!r}{hint}; valid keys: {', '.join(sorted(allowed))}")


def _coerce(where: str, key: str, value: Any) -> Any:
    """Checks a setting's type against TrainSettings (YAML gives ints, floats, bools, null)."""
    kind = str(_SETTING_TYPES[key])
    if value is None:
        if "None" in kind:
            return None
        raise ConfigError(f"{where}: {key} must not be empty")
    if "bool" in kind:
        if isinstance(value, bool):
            return value
    elif "int" in kind:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif "float" in kind:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML reads 5e-5 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif "str" in kind and isinstance(value, str):
        return value
    raise ConfigError(f"{where}: {key} must be {kind.replace(' | None', '')}, got {value!r}")


def settings_from(where: str, values: dict[str, Any], base: TrainSettings | None = None) -> TrainSettings:
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a mapping of settings, got {values!r}")
    _check_keys(where, values, set(_SETTING_TYPES))
    from harness.validate import check_settings

    checked = {k: _coerce(where, k, v) for k, v in values.items()}
    settings = dataclasses.replace(base or TrainSettings(), **checked)
    check_settings(where, settings)
    return settings


def check_reward_params(where: str, name: str, params: Any) -> dict[str, Any]:
    """A strategy's parameters as a dict, numbers checked and made floats where the strategy declares
    float (YAML reads 1e-3, without a dot, as a string); range checks are the strategy's own."""
    import rewards  # noqa: F401  (registers the built-in strategies)
    from rewards.base import REWARDS

    if params is None:
        return {}
    if not isinstance(params, dict):
        raise ConfigError(f"{where}: parameters must be a mapping name -> value, got {params!r}")
    if name not in REWARDS:
        return dict(params)  # build_reward names the unknown strategy
    types = {f.name: str(f.type) for f in dataclasses.fields(REWARDS[name])}
    checked = {}
    for key, value in params.items():
        kind = types.get(key, "")
        if isinstance(value, list):  # a sweep (harness.overrides.expand_sweep): each value checked
            checked[key] = [_number(where, key, kind, v) for v in value]
        else:
            checked[key] = _number(where, key, kind, value)
    return checked


def _number(where: str, key: str, kind: str, value: Any) -> Any:
    """A parameter value, made a float where the strategy declares float; numbers checked."""
    if "float" in kind and not isinstance(value, bool):
        if isinstance(value, (int, float)):
            value = float(value)
        elif isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                pass
    if ("float" in kind or "int" in kind) and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise ConfigError(f"{where}: parameter {key} must be a number, got {value!r}")
    return value


def preset_path(name: str) -> Path:
    path = PRESETS_DIR / f"{name}.yaml"
    if not path.exists():
        raise ConfigError(f"unknown preset {name!r}; presets: {', '.join(list_presets())}")
    return path


def list_presets() -> list[str]:
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


def read_grid_file(path: Path) -> dict[str, Any]:
    """A grid file's YAML mapping, unchecked (`load_grid` checks it)."""
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise ConfigError(f"{path}: cannot read the grid: {err}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a grid is a YAML mapping with keys {', '.join(sorted(_GRID_KEYS))}")
    return raw


def load_grid(path: Path, sets: list[str] | tuple[str, ...] = ()) -> Grid:
    """Parses and checks a grid file, with the dotted `--set` overrides applied first
    (`harness.overrides.apply_sets`); every error names the file and the offending key. A reward
    parameter given as a list is a sweep: one cell per value (`harness.overrides.expand_sweep`)."""
    from harness.overrides import apply_sets, expand_sweep, strategy_of
    from rewards.base import build_reward
    from tasks.base import get_task

    raw = read_grid_file(path)
    _check_keys(str(path), raw, _GRID_KEYS)
    includes = _load_includes(path, raw.get("include"))  # before the names: it may register some
    if sets:
        raw = apply_sets(raw, list(sets), _strategy_parameters())
    train = raw.get("train") or {}
    if not isinstance(train, dict):
        raise ConfigError(f"{path}: 'train' must be a mapping")
    _check_keys(f"{path}: train", train, set(_SETTING_TYPES) | {"per_task"})
    shared = settings_from(f"{path}: train", {k: v for k, v in train.items() if k != "per_task"})
    per_task = train.get("per_task") or {}
    if not isinstance(per_task, dict):
        raise ConfigError(f"{path}: train.per_task must be a mapping task -> settings, got {per_task!r}")
    tasks = raw.get("tasks")
    if not isinstance(tasks, list) or not tasks or not all(isinstance(t, str) for t in tasks):
        raise ConfigError(f"{path}: 'tasks' must be a non-empty list of task names")
    settings = {}
    for name in tasks:
        try:
            get_task(name)
        except KeyError as err:
            raise ConfigError(f"{path}: tasks: {err.args[0]}") from None
        settings[name] = settings_from(f"{path}: train.per_task.{name}", per_task.get(name) or {}, shared)
    _check_keys(f"{path}: train.per_task", per_task, set(tasks))
    rewards = raw.get("rewards")
    if isinstance(rewards, list):
        rewards = {r: {} for r in rewards}
    if not isinstance(rewards, dict) or not rewards:
        raise ConfigError(f"{path}: 'rewards' must be a list of strategy names or a mapping name -> parameters")
    cells: dict[str, dict[str, Any]] = {}
    for name, params in rewards.items():
        cells.update(expand_sweep(name, check_reward_params(f"{path}: rewards.{name}", name, params)))
    for name, params in cells.items():
        try:
            build_reward(strategy_of(name), params)
        except (KeyError, ValueError, TypeError) as err:
            raise ConfigError(f"{path}: rewards.{name}: {err.args[0] if err.args else err}") from None
    seeds = raw.get("seeds", [1])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise ConfigError(f"{path}: 'seeds' must be a non-empty list of integers, got {seeds!r}")
    return Grid(name=str(raw.get("name", Path(path).stem)), tasks=tuple(tasks), rewards=cells,
                seeds=tuple(seeds), settings=settings, source=str(path), includes=tuple(includes))


def _strategy_parameters() -> dict[str, list[str]]:
    """Every registered strategy's parameter names (what `--set rewards.NAME.PARAM` may name)."""
    import rewards  # noqa: F401  (registers the built-in strategies)
    from rewards.base import REWARDS

    return {name: [f.name for f in dataclasses.fields(cls)] for name, cls in REWARDS.items()}


def _load_includes(path: Path, given: Any) -> list[str]:
    """The grid's `include:` (a path or a list of paths, relative to the grid file), imported."""
    from harness import include

    if given is None:
        return []
    paths = [given] if isinstance(given, str) else given
    if not isinstance(paths, list) or not all(isinstance(p, str) and p for p in paths):
        raise ConfigError(f"{path}: 'include' must be a path or a list of paths (.py files or folders, "
                          f"relative to the grid file), got {given!r}")
    return include.load([Path(path).parent / Path(p).expanduser() for p in paths], where=f"{path}: include")
