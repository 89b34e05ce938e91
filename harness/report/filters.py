"""`harness report --filter KEY=VALUES`: a report of some of the store's runs.

Keys: `task` and `strategy` (comma-separated names; a strategy name also selects its sweep cells,
`focal` selects `focal[gamma=1]`), `grid` (the runs a `harness run` of that grid ran: the session
summaries under `sessions/` list their hashes) and `since` (an ISO date or time, UTC: records
written then or later). Every filter given must hold.
"""
from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Sequence

from harness.config import ConfigError
from harness.overrides import cell_name, split_reward_options
from harness.store import RunRecord, Store

KEYS = ("task", "strategy", "grid", "since")


@dataclass(frozen=True)
class Filters:
    tasks: tuple[str, ...] = ()
    strategies: tuple[str, ...] = ()
    grid: str | None = None
    since: datetime.datetime | None = None

    def select(self, store: Store, strict: bool = False) -> list[RunRecord]:
        """The store's records that pass every filter (`strict`: see `Store.records`)."""
        in_grid = None
        if self.grid is not None:
            in_grid = {h for s in store.sessions() if s.get("grid") == self.grid for h in s.get("hashes", [])}
        return [r for r in store.records(strict=strict) if self._keeps(r, store, in_grid)]

    def _keeps(self, record: RunRecord, store: Store, in_grid: set[str] | None) -> bool:
        if self.tasks and record.task not in self.tasks:
            return False
        if self.strategies and not {record.reward, cell_name(record.reward, record.reward_params)} & set(self.strategies):
            return False
        if in_grid is not None and record.hash not in in_grid:
            return False
        if self.since is not None:
            written = store.record_path(record.task, record.reward, record.hash).stat().st_mtime
            return datetime.datetime.fromtimestamp(written, datetime.timezone.utc) >= self.since
        return True


def parse_filters(items: Sequence[str]) -> Filters:
    """`["task=ner", "strategy=ce,focal", "since=2026-11-01"]` -> Filters; unknown keys refused."""
    values: dict[str, list[str]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in KEYS:
            raise ConfigError(f"--filter {item!r}: expected KEY=VALUES with KEY one of {', '.join(KEYS)}")
        values.setdefault(key, []).extend(v.strip() for v in _split(value) if v.strip())
    since = None
    if values.get("since"):
        try:
            since = datetime.datetime.fromisoformat(values["since"][-1])
        except ValueError:
            raise ConfigError(f"--filter since={values['since'][-1]}: expected a date such as 2026-11-01") from None
        since = since if since.tzinfo else since.replace(tzinfo=datetime.timezone.utc)
    return Filters(tasks=tuple(values.get("task", ())), strategies=tuple(values.get("strategy", ())),
                   grid=values["grid"][-1] if values.get("grid") else None, since=since)


def _split(value: str) -> list[str]:
    """Commas separate names, except inside a sweep cell's brackets (`focal[gamma=1,alpha=2]`)."""
    return split_reward_options([value]) or []
