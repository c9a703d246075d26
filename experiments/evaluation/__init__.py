"""Measurements of trained parts: the test-set ``metrics`` of every epoch, estimates of
log p(x) (``likelihood``), per-point ``bounds``, exact ``diagnostics`` and ground truth,
``gradients`` (variance, SNR), per-point refinement (``refine``) and the ``inference_gaps``."""
