"""Timing by alternation, for a machine that others use too.

Every candidate runs once per round, in an order drawn at random for each round (a seeded
shuffle), and each call is timed with a wall clock. A fixed or rotated order is not fair: a
candidate that always follows the same other one finds the caches as that one leaves them, and
the reference timed against itself (another seed, the same code) read 0.85–0.90 under rotation;
in random order each candidate follows each other one equally often on average. A round takes a
fraction of a second, so the candidates of one round meet the same load from other processes,
and the ratio of two candidates is taken round by round: its median over the rounds (with its
quartiles, to say how far it can be trusted) is fair even when single timings are not, and load
that comes and goes cancels out. The first rounds warm caches, allocators and compiled graphs
and are not timed.
"""
import random
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Tuple


@dataclass
class Timings:
    """Seconds per call of every candidate, one entry per timed round."""

    seconds: Dict[str, List[float]] = field(default_factory=dict)

    def median(self, name: str) -> float:
        return statistics.median(self.seconds[name])

    def ratio(self, name: str, reference: str) -> Tuple[float, float, float]:
        """Median and quartiles over the rounds of time(name) / time(reference): above 1 means
        ``name`` is slower."""
        per_round = [a / b for a, b in zip(self.seconds[name], self.seconds[reference])]
        if len(per_round) < 2:
            return per_round[0], per_round[0], per_round[0]
        q1, median, q3 = statistics.quantiles(per_round, n=4, method="inclusive")
        return median, q1, q3


def format_ratio(ratio: Tuple[float, float, float]) -> str:
    median, q1, q3 = ratio
    return f"{median:.2f} [{q1:.2f}–{q3:.2f}]"


def alternate(candidates: Dict[str, Callable[[], object]], rounds: int,
              warmup: int = 1, seed: int = 0) -> Timings:
    """Call each candidate once per round, in a random order (``seed``), for ``warmup`` +
    ``rounds`` rounds; time the last ``rounds``."""
    names, order = list(candidates), random.Random(seed)
    timings = Timings({name: [] for name in names})
    for round_ in range(warmup + rounds):
        for name in order.sample(names, len(names)):
            start = time.perf_counter()
            candidates[name]()
            if round_ >= warmup:
                timings.seconds[name].append(time.perf_counter() - start)
    return timings
