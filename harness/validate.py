"""Checks made before any run trains: every training setting in its valid range, and every model
resolvable (an alias, a local folder, or a Hub id that exists or is cached). A bad value fails in
seconds with a message naming the setting (or model), where it came from and what is valid, instead
of minutes into a grid or, worse, as a run that trains on nonsense."""
from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Iterable

from harness.config import ConfigError


def _at_least(low: float) -> tuple[str, Callable[[Any], bool]]:
    return f"at least {low:g}", lambda v: v >= low


def _positive() -> tuple[str, Callable[[Any], bool]]:
    return "greater than 0", lambda v: v > 0


# Setting -> (its valid range in words, the check). A setting that may be unset (None) is checked only when set.
RANGES: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "epochs": _at_least(1), "batch_size": _at_least(1), "eval_batch_size": _at_least(1), "lr": _positive(),
    "new_lr_scale": _positive(),
    "warmup_ratio": ("in [0, 1)", lambda v: 0 <= v < 1), "weight_decay": _at_least(0),
    "max_grad_norm": _positive(), "patience": _at_least(1), "max_train": _at_least(1), "max_eval": _at_least(1),
    "num_beams": _at_least(1), "max_new_tokens": _at_least(1), "no_repeat_ngram_size": _at_least(0),
    "length_penalty": ("a finite number", lambda v: abs(v) != float("inf") and v == v),
    "max_source_length": _at_least(1), "max_target_length": _at_least(1), "sample_length_factor": _positive(),
    "log_every": _at_least(1), "max_validation": _at_least(1), "continued_epochs": _at_least(1),
    "continued_max_train": _at_least(1), "precision": ("bf16 or fp32", lambda v: v in ("bf16", "fp32")),
}


COMMAND_LINE = "command line"  # the `where` of settings given as options (`harness.grid.plan.expand`)


def check_settings(where: str, settings: Any) -> None:
    """Every field of a `TrainSettings` within its range; `where` names the grid file and key, or
    the command line."""
    for key, value in asdict(settings).items():
        if value is None or key not in RANGES:
            continue
        valid, ok = RANGES[key]
        if not ok(value):
            name = f"--{key.replace('_', '-')}" if where == COMMAND_LINE else key
            raise ConfigError(f"{where}: {name} must be {valid}, got {value!r}")


def check_models(names: Iterable[str]) -> None:
    """Each model name resolves: an alias, a local folder with a `config.json`, or a Hub id that
    exists (asked with a short timeout) or is in the local cache. When the Hub cannot be reached,
    HF_HUB_OFFLINE is set for this process and its workers, so later loads read the cache at once
    instead of retrying for about a minute."""
    from harness.run.models import ALIASES

    for name in dict.fromkeys(names):
        if name in ALIASES:
            continue
        path = Path(name).expanduser()
        if path.exists() or name.startswith((".", "/", "~")):
            if not (path / "config.json").is_file():
                raise ConfigError(f"model {name!r}: {path} is not a model folder (no config.json); give a folder "
                                  "saved with `save_pretrained`, a Hub id or an alias (`harness list`)")
            continue
        _check_hub_model(name)


def _check_hub_model(name: str) -> None:
    import huggingface_hub
    from huggingface_hub.errors import GatedRepoError, HFValidationError, RepositoryNotFoundError

    if not huggingface_hub.constants.HF_HUB_OFFLINE:
        try:
            huggingface_hub.model_info(name, timeout=5)
            return
        except GatedRepoError:
            return  # it exists; loading it says what access it needs
        except (RepositoryNotFoundError, HFValidationError):
            raise ConfigError(f"model {name!r}: no such model on the Hugging Face Hub, and not an alias or a "
                              "local folder; `harness list` shows the aliases") from None
        except Exception:  # noqa: BLE001 - unreachable, timed out, rate-limited: fall back on the cache
            go_offline()
    if huggingface_hub.try_to_load_from_cache(name, "config.json") is None:
        raise ConfigError(f"model {name!r}: the Hugging Face Hub is not reachable (or HF_HUB_OFFLINE is set) "
                          "and the model is not in the local cache; download it where the Hub is reachable, "
                          "or use a local folder or an alias (`harness list`)")


def go_offline() -> None:
    """Hub reads from the cache only, in this process and in the workers it starts."""
    import huggingface_hub

    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    huggingface_hub.constants.HF_HUB_OFFLINE = True
