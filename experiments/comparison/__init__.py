"""Estimators compared on equal footing: the ``jobs`` of a comparison (planned, trained in
worker processes) and its ``report`` (aggregated over seeds, gradient SNR against K, tables)."""
