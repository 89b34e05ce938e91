"""Configuration from the command line: dotted `--set` overrides, reward specs and sweeps.

`--set train.patience=3`, `--set rewards.focal.gamma=1.0`, `--set train.per_task.translation.batch_size=16`
edit the grid file's YAML before it is checked (`harness.config.load_grid`), so a value given on the
command line is checked exactly as the same value in the file; a key that is not a setting, task,
strategy or parameter is refused with the valid ones. Values are YAML scalars (`3`, `1e-4`, `true`,
`null`, `[0.5, 1]`).

A sweep: a strategy's parameter given as a list (`focal: {gamma: [0.5, 1, 2]}` in a grid, or
`--reward focal:gamma=[0.5,1,2]`) expands into one cell per value (per combination, for several
lists), named `focal[gamma=0.5]`, ...: each its own run hash and its own strategy in the report.
Imports neither torch nor the registries: `harness list` and `--help` stay fast.
"""
from __future__ import annotations

import dataclasses
import itertools
import re
from typing import Any

import yaml

from harness.config import ConfigError, TrainSettings

SETTINGS = tuple(f.name for f in dataclasses.fields(TrainSettings))
_SPEC = re.compile(r"^(?P<name>[A-Za-z_][\w.-]*(?:\[[^\]]*\])?)(?::(?P<params>.*))?$")


def parse_value(text: str) -> Any:
    """A command-line value as YAML reads it: 3 -> int, 1e-4 -> float, true -> bool, [1, 2] -> list."""
    try:
        return yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError as err:
        raise ConfigError(f"cannot read the value {text!r}: {err}") from None


def format_value(value: Any) -> str:
    """A parameter value in a cell name: floats without a needless `.0` (`gamma=1`, `lr=0.0001`)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def cell_name(strategy: str, params: dict[str, Any]) -> str:
    """The name of a strategy's cell with these parameters: `focal[gamma=1]`; the bare name without."""
    if not params:
        return strategy
    return f"{strategy}[{','.join(f'{k}={format_value(params[k])}' for k in sorted(params))}]"


def strategy_of(cell: str) -> str:
    """The strategy of a cell name: `focal[gamma=1]` -> `focal`."""
    return cell.split("[", 1)[0]


def expand_sweep(strategy: str, params: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Cell name -> parameters: one cell per combination of the list-valued parameters, or the
    strategy's own single cell (under its bare name) when none is a list."""
    lists = {k: v for k, v in params.items() if isinstance(v, list)}
    if not lists:
        return {strategy: params}
    empty = [k for k, v in lists.items() if not v]
    if empty:
        raise ConfigError(f"rewards.{strategy}.{empty[0]}: a sweep needs at least one value")
    cells = {}
    for values in itertools.product(*lists.values()):
        chosen = {**params, **dict(zip(lists, values))}
        cells[cell_name(strategy, chosen)] = chosen
    return cells


def parse_reward_spec(text: str) -> tuple[str, dict[str, Any]]:
    """`focal:gamma=1,alpha=0.5` -> ("focal", {"gamma": 1, "alpha": 0.5}); a bare name has no parameters.
    A value may be a YAML list (`gamma=[0.5,1]`): a sweep."""
    match = _SPEC.match(text.strip())
    if not match:
        raise ConfigError(f"--reward {text!r}: expected NAME or NAME:param=value,param=value")
    params: dict[str, Any] = {}
    for item in _split_top_level(match["params"] or ""):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--reward {text!r}: {item!r} is not param=value")
        params[key.strip()] = parse_value(value)
    return match["name"], params


def split_reward_options(values: list[str] | None) -> list[str] | None:
    """`--reward` values, repeated or comma-separated: `ce,focal:gamma=1,alpha=2` -> [ce, focal:gamma=1,alpha=2]
    (a `k=v` item after a spec with parameters belongs to it; commas inside [..] are a list's)."""
    if not values:
        return None
    specs: list[str] = []
    for value in values:
        for item in _split_top_level(value):
            if "=" in item and ":" not in item and specs and ":" in specs[-1]:
                specs[-1] += "," + item
            else:
                specs.append(item)
    return specs or None


def _split_top_level(text: str) -> list[str]:
    """Splits on commas outside brackets."""
    parts, depth, current = [], 0, ""
    for char in text:
        depth += char in "[{"
        depth -= char in "]}"
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [p.strip() for p in parts if p.strip()]


def apply_sets(raw: dict[str, Any], sets: list[str], strategies: dict[str, list[str]]) -> dict[str, Any]:
    """The grid file's YAML mapping with each `key.path=value` of `sets` applied; unknown keys refused.

    `strategies`: strategy name -> its parameter names (every registered strategy), for the checks."""
    raw = {**raw, "train": dict(raw.get("train") or {})}
    rewards = raw.get("rewards")
    raw["rewards"] = {r: {} for r in rewards} if isinstance(rewards, list) else dict(rewards or {})
    for item in sets:
        key, sep, text = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r}: expected key.path=value, e.g. train.patience=3")
        path, value = key.strip().split("."), parse_value(text)
        _set(raw, path, value, strategies, f"--set {item}")
    return raw


def _refuse(where: str, key: str, valid: list[str]) -> ConfigError:
    return ConfigError(f"{where}: unknown key {key!r}; valid keys here: {', '.join(valid)}")


def _set(raw: dict[str, Any], path: list[str], value: Any, strategies: dict[str, list[str]], where: str) -> None:
    head, *rest = path
    if head in ("name", "seeds", "tasks") and not rest:
        raw[head] = value
    elif head == "train" and len(rest) == 1 and rest[0] in SETTINGS:
        raw["train"][rest[0]] = value
    elif head == "train" and rest[:1] == ["per_task"] and len(rest) == 3:
        task, setting = rest[1], rest[2]
        if task not in (raw.get("tasks") or []):
            raise _refuse(where, task, list(raw.get("tasks") or []))
        if setting not in SETTINGS:
            raise _refuse(where, setting, list(SETTINGS))
        per_task = dict(raw["train"].get("per_task") or {})
        per_task[task] = {**(per_task.get(task) or {}), setting: value}
        raw["train"]["per_task"] = per_task
    elif head == "train":
        raise _refuse(where, ".".join(path), [f"train.{s}" for s in SETTINGS] + ["train.per_task.TASK.SETTING"])
    elif head == "rewards" and len(rest) == 2:
        name, param = rest
        if name not in raw["rewards"]:
            raise _refuse(where, name, list(raw["rewards"]))
        known = strategies.get(strategy_of(name), [])
        if param not in known:
            raise _refuse(where, param, known or ["(the strategy has no parameters)"])
        raw["rewards"][name] = {**(raw["rewards"][name] or {}), param: value}
    else:
        raise _refuse(where, ".".join(path), ["name", "tasks", "seeds", "train.SETTING",
                                              "train.per_task.TASK.SETTING", "rewards.STRATEGY.PARAM"])


def resolved_config(grid_name: str, configs: list[tuple[str, Any]]) -> dict[str, Any]:
    """The configuration a plan's runs resolve to, as a grid file would give it: settings every task
    shares under `train`, the rest under `train.per_task`; reward cells with their parameters.
    `configs`: (cell name, `RunConfig`) of every run."""
    tasks = list(dict.fromkeys(cfg.task for _, cfg in configs))
    settings = {cfg.task: dataclasses.asdict(cfg.settings) for _, cfg in configs}
    shared = {k: v for k, v in settings[tasks[0]].items() if all(settings[t][k] == v for t in tasks)} if tasks else {}
    per_task = {t: {k: v for k, v in settings[t].items() if k not in shared} for t in tasks}
    return {"name": grid_name, "tasks": tasks,
            "rewards": {name: dict(cfg.reward_params) for name, cfg in configs},
            "seeds": sorted({cfg.seed for _, cfg in configs}),
            "train": {**shared, **({"per_task": {t: s for t, s in per_task.items() if s}}
                                   if any(per_task.values()) else {})}}


def compact_yaml(config: dict[str, Any]) -> str:
    """YAML with the innermost mappings and lists on one line each."""
    return yaml.safe_dump(config, default_flow_style=None, sort_keys=False, width=110)
