"""RESULTS.md: the machine, the versions, and one section of tables per benchmark."""
import datetime
import os
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence

import pyro
import torch

from benchmarks import numpyro_peer


@dataclass
class Target:
    """One numbered target of the benchmark: what was measured against what was asked."""

    name: str
    measured: str
    goal: str
    met: Optional[bool]          # None where there is nothing to compare yet


@dataclass
class Section:
    title: str
    body: str
    targets: Sequence[Target] = ()


def paragraphs(doc: str, count: int = 0) -> str:
    """A benchmark module's docstring without its title line: how it measures, in its own words
    (the first ``count`` paragraphs of it, or all)."""
    body = doc.strip().split("\n\n")[1:]
    return "\n\n".join(body[:count] if count else body)


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def machine() -> List[str]:
    """What the numbers depend on: processor, cores, threads, load, versions, commit."""
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return [
        f"- processor: {_cpu_name()}; {os.cpu_count()} cores visible, torch uses "
        f"{torch.get_num_threads()} threads; load average at the end (1, 5, 15 min): {load}",
        f"- {platform.system()} {platform.release()}, Python {platform.python_version()}, "
        f"torch {torch.__version__}, pyro-ppl {pyro.__version__}, {numpyro_peer.version()}",
        f"- ELBO Lab commit {_commit()}, {datetime.datetime.now():%Y-%m-%d %H:%M}",
    ]


def write(path: Path, command: str, sections: Sequence[Section]) -> None:
    targets = [t for s in sections for t in s.targets]
    verdict = {True: "met", False: "**not met**", None: "—"}
    parts = [
        "# ELBO Lab benchmarks",
        f"Produced by `{command}`; the code is in `benchmarks/`. Ratios are ELBO Lab's time over "
        "the plain-PyTorch reference's, measured in the same run with the two taking turns, in an "
        "order drawn at random each round (seeded; benchmarks/timing.py) (medians over the "
        "rounds; quartiles of the per-round ratios in brackets).",
        "\n".join(machine()),
        "## Targets\n\n" + table(["target", "measured", "goal", ""],
                                 [(t.name, t.measured, t.goal, verdict[t.met]) for t in targets]),
        *[f"## {s.title}\n\n{s.body}" for s in sections],
    ]
    Path(path).write_text("\n\n".join(parts) + "\n")


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, cwd=Path(__file__).parent, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True,
                               cwd=Path(__file__).parent).stdout.strip()
        return out + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
