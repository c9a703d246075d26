"""
Lesson 2, run it: the nonlinear latent variable model
=====================================================

An infinite mixture: z ~ N(0, 1), x | z ~ N(f(z), σ² I) with f an MLP, fitted to points on a
ring. Its log p(x) = log ∫ p(x|z) p(z) dz has no closed form, but with a one-dimensional z a
quadrature computes it, so the ELBO and the IWAE estimate can be checked against it, and the
true p(z|x) drawn beside the Gaussian q(z|x). The lesson's text:
:doc:`/lessons/lesson2-nonlinear-lvm`.
"""
# %%
# Settings: change them here
# --------------------------
# Try ``guide="mvn"`` or ``guide="flow"`` (richer q), ``elbo="iwae", num_particles=10,
# vectorize_particles=True`` (a tighter bound), or ``data="spiral"``. The lesson's text trains
# 200 epochs.
RUNS = {
    "lvm-normal": dict(model="lvm", guide="normal", data="ring", epochs=20, lr=3e-3),
}

# %%
# Train and measure
# -----------------
# ``test_gap`` is the exact log p(x) minus the ELBO, averaged over the test points: the KL
# between q(z|x) and the true posterior (lesson 3).
from experiments.lessons.live import run_lesson, show

numbers = run_lesson(2, RUNS)

# %%
# The learned curve f(z) with ancestral samples, and p(z|x) against q(z|x) for a few points:
show("lesson2-curve", "lesson2-posterior")
