"""Where a result was made: code version, libraries, platform and device (shared by runs, bench and reports)."""
from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from harness import __version__


def git(*args: str) -> str | None:
    """`git ARGS` in the harness's checkout, its output; None outside a checkout or without git."""
    try:
        done = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10,
                              cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def package_version(package: str) -> str | None:
    """The installed version of `package`, or None."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def cpu_flags() -> set[str]:
    """The processor's instruction-set flags (Linux /proc/cpuinfo; empty elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_has_bf16() -> bool:
    """Whether the CPU computes bf16 natively (AVX512-BF16 or AMX), where bf16 autocast can be faster
    than fp32 instead of emulated and slower."""
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


def load_warning(load: float | None = None, cores: int | None = None) -> str | None:
    """A warning when other processes already keep half the cores busy (1-minute load average):
    OpenMP threads of two processes spin-wait on each other, so runs slow down many times and
    their timings say nothing about the harness."""
    load = os.getloadavg()[0] if load is None else load
    cores = cores or os.cpu_count() or 1
    if load < 0.5 * cores:
        return None
    return (f"load average {load:.1f} on {cores} cores before starting: other processes are using the "
            "CPU, so runs will be slower and their timings not comparable; wait for them, or lower --jobs")


def environment() -> dict[str, Any]:
    import datasets
    import torch
    import transformers

    return {"harness": __version__, "git_commit": git("rev-parse", "HEAD"), "python": platform.python_version(),
            "torch": torch.__version__, "transformers": transformers.__version__,
            "datasets": datasets.__version__, "platform": platform.platform(),
            "device": torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or "cpu",
            "cpu_bf16": cpu_has_bf16(), "threads": torch.get_num_threads()}


