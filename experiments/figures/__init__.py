"""Figures, each written atomically as a PNG: those of a finished run (``run_figures``, choosing
from what the model declares), of a comparison (``comparison``), of the lessons (``bounds``,
``gap_bars``, ``gradients``), and what they share (``common``). Drawing never chooses matplotlib's
backend: the commands do (``experiments.common.command``)."""
