"""Estimators compared on equal footing: the ``jobs`` of a comparison (planned, trained in
worker processes), its ``report`` (aggregated over seeds, gradient SNR against K, tables), and
its ``sweep`` on any scheduler (one command line per run; finished run folders collected)."""
