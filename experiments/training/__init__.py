"""Training runs (configured by ``experiments.config``): one run ``end_to_end``, its data and
device (``prepare``), its epoch ``loop`` over the ``batches``, ``restarts``, the run ``folder``
and its checkpoints, a finished run loaded (``trained``), TensorBoard (``board``), the optimizer
(``optim``), where training starts (``initialize``), ``workers`` for runs in other processes,
and one run on several processes under torchrun (``distributed``)."""
