"""Where a result was made: code version, libraries, platform and device (shared by runs, bench and reports)."""
from __future__ import annotations

import importlib.metadata
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


def environment() -> dict[str, Any]:
    import datasets
    import torch
    import transformers

    return {"harness": __version__, "git_commit": git("rev-parse", "HEAD"), "python": platform.python_version(),
            "torch": torch.__version__, "transformers": transformers.__version__,
            "datasets": datasets.__version__, "platform": platform.platform(),
            "device": torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or "cpu"}


