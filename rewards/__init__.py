"""Reward-strategy registry: importing this package registers every built-in strategy.

One module per strategy, each registered by name with `@register_reward` (see `rewards.base`).
"""
import importlib
import pkgutil

from rewards.base import REWARDS, RewardStrategy, build_reward, register_reward

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["REWARDS", "RewardStrategy", "build_reward", "register_reward"]
