"""
Lesson 3, run it: the gap is the KL
===================================

log p(x) − ELBO = KL(q(z|x) ‖ p(z|x)), for any q. Measured two ways per test point, the gap by
Monte Carlo and the KL exactly (the mixture) or by quadrature (the nonlinear model), the points
fall on one line; and the ELBO splits into E_q[log p(x|z)] − KL(q(z|x) ‖ p(z)). The lesson's
text: :doc:`/lessons/lesson3-the-elbo`.
"""
# %%
# Settings: change them here
# --------------------------
# The mixture is fitted with a categorical q(z|x) and ``tracegraph``; the nonlinear model with a
# Gaussian q. Try ``guide="mvn"`` on the second and watch its gap shrink.
RUNS = {
    "gmm-categorical": dict(model="gmm", guide="categorical", elbo="tracegraph", init="kmeans",
                            data="gmm-1d", epochs=10),
    "lvm-normal": dict(model="lvm", guide="normal", data="ring", epochs=20, lr=3e-3),
}

# %%
# Train and measure
# -----------------
# ``lvm_gap`` and ``lvm_kl`` are the two sides of the identity (their difference within a few
# ``lvm_gap_stderr``); ``lvm_expected_log_likelihood`` − ``lvm_kl_prior`` is ``lvm_elbo``.
from experiments.lessons.live import run_lesson, show

numbers = run_lesson(3, RUNS)

# %%
# Gap against KL, one dot per test point, and each model's bounds per epoch:
show("lesson3-gap-is-kl", "lesson3-gmm-bounds", "lesson3-lvm-bounds")
