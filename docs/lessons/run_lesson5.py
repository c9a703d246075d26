"""
Lesson 5, run it: the VAE
=========================

Amortized inference on the bundled 8×8 digits: an encoder gives q(z|x) for every x at once, a
decoder gives p(x|z). A Bernoulli decoder on binarized pixels and a Gaussian one on grey
levels; reconstructions, samples from the prior, and the two-dimensional latent space. The
lesson's text: :doc:`/lessons/lesson5-the-vae`.
"""
# %%
# Settings: change them here
# --------------------------
# Try ``latent_dim=10`` (no manifold figure then: it needs d = 2), ``guide="flow"``, or
# ``elbo="iwae", num_particles=5, vectorize_particles=True``. The lesson's text trains 50 epochs.
RUNS = {
    "vae-bernoulli": dict(model="vae", guide="normal", data="digits", epochs=10),
    "vae-gaussian": dict(model="vae", guide="normal", likelihood="gaussian", binarize="none",
                         data="digits", epochs=10),
}

# %%
# Train and measure
# -----------------
# ``bernoulli_expected_log_likelihood`` − ``bernoulli_kl_prior`` is ``bernoulli_elbo``;
# ``gaussian_sigma`` is the Gaussian decoder's learned noise.
from experiments.lessons.live import run_lesson, show

numbers = run_lesson(5, RUNS)

# %%
# Reconstructions, samples, the latent space by digit, and the decoded manifold:
show("lesson5-reconstructions", "lesson5-samples", "lesson5-latent", "lesson5-manifold")
