"""The machine a benchmark ran on, for the lines its results are recorded with (benchmarks/README.md).
Imported by the benchmark scripts run from this folder (`python benchmarks/NAME.py`)."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo (else what platform knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "?"


def load_average() -> tuple[float, float, float]:
    return os.getloadavg()


def describe(torch=None) -> str:
    """One line: CPU, core count, torch and its threads (when given the module), Python, load."""
    load = ", ".join(f"{v:.2f}" for v in load_average())
    threads = f"torch {torch.__version__} ({torch.get_num_threads()} threads), " if torch is not None else ""
    return (f"{cpu_name()}, {os.cpu_count()} CPUs, {threads}Python {platform.python_version()}; "
            f"load average (1, 5, 15 min): {load}")
