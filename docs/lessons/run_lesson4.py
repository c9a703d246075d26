"""
Lesson 4, run it: gradients
===========================

Three unbiased estimators of one gradient, ∂/∂μ E_{z~N(μ,σ²)}[f(z)]: the score function, the
score function with a baseline, and the reparameterization trick, drawn many times. Then the
same contest inside training: ``score-function`` against ``trace`` on the VAE, and ``trace``,
``tracegraph`` (a learned baseline) and ``enum`` (no sampling) on the mixture, with the
variance of each estimator's gradient. The lesson's text: :doc:`/lessons/lesson4-gradients`.
"""
# %%
# Settings: change them here
# --------------------------
# Each comparison is (the run's settings, the estimators compared, as ``--elbos`` takes them).
# Keep the estimators the lesson measures; add others (``stl``, ``iwae``) freely. The lesson's
# text trains 30 epochs with two seeds.
COMPARISONS = {
    "compare-vae": (dict(model="vae", guide="normal", data="digits", epochs=6),
                    "trace,score-function"),
    "compare-gmm": (dict(model="gmm", guide="categorical", init="kmeans", data="gmm-1d",
                         epochs=6), "trace,tracegraph,enum/enum"),
}

# %%
# Train and measure
# -----------------
# ``toy_sd_*`` are the spreads of the three estimators of the toy gradient (all of mean
# ``toy_true_gradient``); ``vae_variance_ratio_init`` is how many times the score function's
# guide-gradient variance exceeds the reparameterization trick's at the shared start.
from experiments.lessons.live import run_lesson, show

numbers = run_lesson(4, {}, COMPARISONS)

# %%
# The toy's draws, then each comparison's gradient variance and training curves:
show("lesson4-toy-gradients", "lesson4-compare-vae-gradient-variance",
     "lesson4-compare-vae-curves", "lesson4-compare-gmm-gradient-variance")
