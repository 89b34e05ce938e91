"""How busy the GPU was while a grid ran: `nvidia-smi` sampled from a background thread.

Issue 4 asks that the GPU be busy for most of a grid's wall time; a small model run by run leaves
it idle between kernels and between runs, and only sampling over the whole session shows that.
`nvidia-smi` (not `torch.cuda.utilization`) because it needs no extra package (pynvml) and sees
every worker process of the pool, not just this one. "Utilisation" is NVIDIA's: the share of the
sample period in which at least one kernel ran; a busy-but-tiny kernel counts as busy, so read it
with the runs' samples/s. Without `nvidia-smi` (CPU machines) the summary carries wall time only.
"""
from __future__ import annotations

import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Any

QUERY = ["--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits"]


@dataclass
class Sample:
    seconds: float  # since the monitor started
    utilization: float  # % of the period with a kernel running (mean over visible GPUs)
    memory_mib: float  # used on all visible GPUs


def parse(output: str) -> tuple[float, float] | None:
    """(mean utilisation %, total MiB used) from one `nvidia-smi` query, a line per GPU; None if unreadable."""
    rows = []
    for line in output.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        try:
            rows.append((float(parts[0]), float(parts[1])))
        except (IndexError, ValueError):  # "[N/A]" or an error text
            return None
    if not rows:
        return None
    return sum(u for u, _ in rows) / len(rows), sum(m for _, m in rows)


@dataclass
class DeviceMonitor:
    """Context manager: samples every `interval` seconds while the block runs; `summary()` after."""

    interval: float = 1.0
    samples: list[Sample] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.tool = shutil.which("nvidia-smi")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.started = self.ended = 0.0

    def __enter__(self) -> "DeviceMonitor":
        self.started = time.time()
        if self.tool:
            self._thread = threading.Thread(target=self._poll, name="device-monitor", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.ended = time.time()

    def _poll(self) -> None:
        while not self._stop.is_set():
            try:
                out = subprocess.run([self.tool, *QUERY], capture_output=True, text=True, timeout=10).stdout
            except (OSError, subprocess.SubprocessError):
                out = ""
            reading = parse(out)
            if reading is not None:
                self.samples.append(Sample(time.time() - self.started, *reading))
            self._stop.wait(self.interval)

    def summary(self) -> dict[str, Any]:
        """Wall time, and over the samples: mean utilisation, the share of samples at least 80% busy
        (issue 4's target), peak memory used. Utilisation fields are None without samples."""
        wall = (self.ended or time.time()) - self.started
        util = [s.utilization for s in self.samples]
        return {"wall_seconds": wall, "gpu_samples": len(util), "sample_interval_seconds": self.interval,
                "gpu_utilization_mean": sum(util) / len(util) if util else None,
                "gpu_busy_share_80": sum(u >= 80 for u in util) / len(util) if util else None,
                "gpu_memory_peak_mib": max(s.memory_mib for s in self.samples) if util else None}


def summary_line(summary: dict[str, Any], runs: int) -> str:
    """One line for the end of `harness run`."""
    line = f"{runs} run(s) in {summary['wall_seconds']:.0f} s"
    if summary["gpu_utilization_mean"] is None:
        return line + " (no nvidia-smi: GPU utilisation not sampled)"
    return (line + f"; GPU utilisation mean {summary['gpu_utilization_mean']:.0f}% over {summary['gpu_samples']} "
            f"samples, ≥80% busy in {100 * summary['gpu_busy_share_80']:.0f}% of them; "
            f"peak GPU memory in use {summary['gpu_memory_peak_mib'] / 1024:.1f} GiB")


def failure_summary(failures: list[dict[str, str]], limit: int = 15) -> str:
    """One screen for the end of a `harness run` whose runs did not all complete: each failed cell
    (task, strategy, seed) with its first error line, and how to go on."""
    lines = [f"error: {len(failures)} run(s) failed:"]
    lines += [f"  {f['cell']}: {f['error'][:160]}" for f in failures[:limit]]
    if len(failures) > limit:
        lines.append(f"  ... and {len(failures) - limit} more (the session summary under <store>/sessions/ lists all)")
    lines.append("Records of failed runs hold their tracebacks; fix the cause and rerun with --retry-failed "
                 "(runs whose worker died were not stored: the same command reruns them).")
    return "\n".join(lines)
