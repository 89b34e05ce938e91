"""GPU utilisation sampling (harness/monitor.py) against a fake `nvidia-smi`, and without one."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from harness.grid.monitor import DeviceMonitor, parse, summary_line
from harness.store import Store


def test_parse_averages_utilisation_and_adds_memory_over_gpus() -> None:
    assert parse("90, 1000\n70, 3000\n") == (80.0, 4000.0)
    assert parse("0, 0") == (0.0, 0.0)
    assert parse("[N/A], 1000") is None  # MIG or an unsupported query: no reading, not a zero
    assert parse("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.") is None
    assert parse("") is None


def _fake_nvidia_smi(bin_dir: Path, readings: list[str]) -> None:
    """An `nvidia-smi` that prints the next reading on each call (the last one from then on)."""
    state = bin_dir / "calls"
    state.write_text("0")
    lines = "\n".join(f'[ "$n" = {i} ] && echo "{r}"' for i, r in enumerate(readings))
    script = bin_dir / "nvidia-smi"
    script.write_text(f"""#!/bin/sh
n=$(cat {state}); echo $((n + 1)) > {state}
[ "$n" -ge {len(readings)} ] && n={len(readings) - 1}
{lines}
exit 0
""")
    script.chmod(0o755)


def test_monitor_samples_a_fake_nvidia_smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_nvidia_smi(tmp_path, ["100, 2048", "[N/A], 0", "50, 6144"])
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    with DeviceMonitor(interval=0.02) as monitor:
        deadline = time.time() + 20
        while len(monitor.samples) < 4 and time.time() < deadline:
            time.sleep(0.02)
    summary = monitor.summary()
    assert monitor.samples[0].utilization == 100 and monitor.samples[1].utilization == 50  # N/A skipped
    assert all(s.utilization == 50 for s in monitor.samples[1:])
    n = summary["gpu_samples"]
    assert n == len(monitor.samples) >= 4
    assert summary["gpu_utilization_mean"] == pytest.approx((100 + 50 * (n - 1)) / n)
    assert summary["gpu_busy_share_80"] == pytest.approx(1 / n)
    assert summary["gpu_memory_peak_mib"] == 6144
    assert summary["wall_seconds"] >= monitor.samples[-1].seconds
    line = summary_line(summary, 3)
    assert line.startswith("3 run(s) in ") and "peak GPU memory in use 6.0 GiB" in line
    sampled = len(monitor.samples)
    time.sleep(0.1)
    assert len(monitor.samples) == sampled, "the thread stops with the block"


def test_without_nvidia_smi_only_wall_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no nvidia-smi
    with DeviceMonitor(interval=0.01) as monitor:
        time.sleep(0.05)
    summary = monitor.summary()
    assert summary["gpu_samples"] == 0 and summary["gpu_utilization_mean"] is None
    assert summary["gpu_busy_share_80"] is None and summary["gpu_memory_peak_mib"] is None
    assert summary["wall_seconds"] >= 0.05
    assert "not sampled" in summary_line(summary, 1)


def test_sessions_are_stored_atomically_and_read_back_in_order(tmp_path: Path) -> None:
    store = Store(tmp_path)
    first = store.save_session({"started": "2026-11-22T10:00:00+00:00", "runs": 2, "wall_seconds": 5.0})
    store.save_session({"started": "2026-11-22T11:00:00+00:00", "runs": 1, "wall_seconds": 1.0})
    assert [s["runs"] for s in store.sessions()] == [2, 1]
    assert not list(first.parent.glob(".*.tmp"))
    assert Store(tmp_path / "empty").sessions() == []
