"""Recording a training step once and replaying it: the default path of every run.

A step of SVI runs guide and model under Pyro's effect handlers, collects their log-densities in
traces, and lets autograd differentiate the estimator's loss: most of its time goes into that
Python, not into the arithmetic. For a model and guide of static structure the arithmetic is
the same at every step, so ``record`` writes it down once, forward and backward pass together,
as a program of PyTorch operations (``torch.fx``, via ``make_fx``); ``functional`` rewrites it
without in-place operations (PyTorch's functionalization); ``simplify`` drops the operations
that compute nothing; ``svi.RecordedSVI`` replays the program at later steps, with
the same random draws, while ``guard`` watches what the program depends on beyond its inputs,
and falls back to Pyro's step, with one logged line, for anything whose structure a recording
cannot vouch for. ``adapter`` holds every private PyTorch and Pyro API this uses.
"""
