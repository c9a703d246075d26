"""
Lesson 1, run it: the Gaussian mixture
======================================

Three Gaussians weighted by p(z) make a three-humped p(x). SVI fits them with z summed out
exactly (``--guide enum --elbo enum``), so the ELBO *is* log p(x), and the fit is compared with
the truth that generated the data. The lesson's text: :doc:`/lessons/lesson1-gaussian-mixture`.
"""
# %%
# Settings: change them here
# --------------------------
# The lesson fits with ``guide="enum", elbo="enum"``; try ``guide="categorical",
# elbo="tracegraph", init="kmeans"``, and the gap between the ELBO and the exact
# log-likelihood opens. More ``epochs`` fit closer (the lesson's text uses 50).
RUNS = {
    "gmm-enum": dict(model="gmm", guide="enum", elbo="enum", data="gmm-1d", epochs=20),
}

# %%
# Train and measure
# -----------------
# ``test_exact_log_likelihood`` is log p(x) under the fitted mixture, ``true_log_likelihood``
# under the one that drew the data; the ``recovery_*`` errors compare the fitted weights, means
# and scales with the true ones.
from experiments.lessons.live import run_lesson, show

numbers = run_lesson(1, RUNS)

# %%
# The fitted density against the data, the posterior p(z|x) over x, and the bounds per epoch:
show("lesson1-density", "lesson1-posterior", "lesson1-bounds")
