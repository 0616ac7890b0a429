"""Shared helpers of the speed benchmarks: the machine, child processes with their own peak RSS, round statistics.

Every benchmark is meant to run alone on the machine: ``flock /tmp/symcere-heavy.lock python benchmarks/X.py``.
A side of a comparison runs in a child process, so that its peak resident memory is its own (``os.wait4``).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def machine() -> dict[str, Any]:
    """CPU model, cores, memory, load average and library versions, for the results files."""
    info: dict[str, Any] = {"platform": platform.platform(), "python": sys.version.split()[0]}
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        keep = ("Model name", "CPU(s)", "Thread(s) per core", "Core(s) per socket", "L2 cache", "L3 cache")
        for line in out.splitlines():
            key, _, value = line.partition(":")
            if key.strip() in keep:
                info[key.strip()] = value.strip()
        info["bf16 (avx512_bf16 / amx)"] = "avx512_bf16" in out or "amx_bf16" in out
    except (OSError, subprocess.CalledProcessError):
        info["cpus"] = os.cpu_count()
    try:
        info["memory GiB"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError):
        pass
    info["load average (1, 5, 15 min) at start"] = [round(x, 2) for x in os.getloadavg()]
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch threads (default)"] = torch.get_num_threads()
    except ImportError:
        pass
    info["OMP_WAIT_POLICY"] = os.environ.get("OMP_WAIT_POLICY", "")
    return info


def run_child(cmd: Sequence[str], env: dict[str, str] | None = None, cwd: str | None = None) -> dict[str, Any]:
    """Run ``cmd``; returns its JSON result (last stdout line starting with "{"), its wall seconds and its own
    peak RSS in MB (``os.wait4``: the kernel's count for that child alone)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(list(cmd), stdout=out, stderr=err, env=env, cwd=cwd, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{stderr[-4000:]}")
    lines = [ln for ln in stdout.strip().splitlines() if ln.startswith("{")]
    if not lines:
        raise RuntimeError(f"{' '.join(cmd)} printed no JSON result:\n{stdout[-2000:]}\n{stderr[-2000:]}")
    result = json.loads(lines[-1])
    result["process_seconds"] = round(wall, 3)
    result["peak_rss_mb"] = round(usage.ru_maxrss / 1024.0, 1)
    return result


def peak_rss_mb() -> float:
    """This process's peak resident set size in MB (Linux ru_maxrss is in KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def stats(values: Sequence[float], digits: int = 4) -> str:
    """``median (min-max)`` of the rounds."""
    vals = [float(v) for v in values]
    if not vals:
        return "n/a"
    return f"{round(statistics.median(vals), digits)} ({round(min(vals), digits)}-{round(max(vals), digits)})"


def median(values: Sequence[float]) -> float:
    return float(statistics.median([float(v) for v in values]))


def write_results(path: Path, title: str, sections: Sequence[tuple[str, str]], data: dict[str, Any]) -> None:
    """``path`` (.md) with the machine, and ``path`` with .json holding every raw number."""
    path.parent.mkdir(parents=True, exist_ok=True)
    info = data.setdefault("machine", machine())
    lines = [f"# {title}", "", "Machine: " + "; ".join(f"{k}: {v}" for k, v in info.items()), ""]
    for heading, body in sections:
        lines += [f"## {heading}", "", body.rstrip(), ""]
    path.write_text("\n".join(lines), encoding="utf-8")
    path.with_suffix(".json").write_text(json.dumps(data, indent=1, default=str) + "\n", encoding="utf-8")
    print(f"wrote {path} and {path.with_suffix('.json')}")
