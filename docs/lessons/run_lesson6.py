"""
Lesson 6, run it: tighter bounds and richer guides
==================================================

On the nonlinear model, whose log p(x) is exact: the IWAE bound L_K rises with K and the Rényi
bound L_α falls with α, both under log p(x); full-covariance and flow guides against the
diagonal Gaussian; and the gap split into approximation (the family) and amortization (the
encoder). The lesson's text: :doc:`/lessons/lesson6-tighter-bounds`.
"""
# %%
# Settings: change them here
# --------------------------
# Four runs of the same model: the Gaussian guide (the reference), a full-covariance one, a
# flow, and the Gaussian trained with the IWAE bound. Try ``num_particles=50`` on the last, or
# ``flow_layers=4``. The lesson's text trains 200 epochs.
common = dict(model="lvm", data="ring", epochs=20, lr=3e-3)
RUNS = {
    "lvm-normal": dict(common, guide="normal"),
    "lvm-mvn": dict(common, guide="mvn"),
    "lvm-flow": dict(common, guide="flow"),
    "lvm-iwae": dict(common, guide="normal", elbo="iwae", num_particles=10,
                     vectorize_particles=True),
}

# %%
# Train and measure
# -----------------
# ``iwae_K`` and ``renyi_α`` are the bounds on the test set at one trained guide, ``exact`` the
# exact log p(x); ``approximation_gap`` + ``amortization_gap`` make the whole gap.
from experiments.lessons.live import run_lesson, show

numbers = run_lesson(6, RUNS)

# %%
# The bounds against K and α, the two gaps, and the richer guides' posteriors:
show("lesson6-bounds", "lesson6-gaps", "lesson6-mvn-posterior", "lesson6-flow-posterior")
