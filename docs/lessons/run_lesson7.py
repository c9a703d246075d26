"""
Lesson 7, run it: labels and conditions
=======================================

The semi-supervised VAE (M2) with the labels of 100 training digits: y summed out on the
unlabeled ones, the labels also training the classifier q(y|x) directly (Kingma's auxiliary
term), against the same classifier trained on the 100 labeled digits alone. Then the
conditional VAE, which predicts the hidden quadrants of a digit from the visible one, against a
deterministic baseline. The lesson's text: :doc:`/lessons/lesson7-labels`; M2 at full length,
over seeds, in the results pages.
"""
# %%
# Settings: change them here
# --------------------------
# Try ``aux_weight=0`` (no auxiliary term), ``labels=300``, or for the cvae ``visible=2``. M2
# needs more epochs than its classifier alone to pull ahead: if it trails, raise ``epochs``
# towards the lesson's 30 (its runs also average several seeds).
M2 = dict(model="ssvae", guide="m2-enum", elbo="enum", aux_weight=46, labels=100,
          likelihood="continuous-bernoulli", hidden_dims=(128,), latent_dim=8, batch_size=64,
          lr=0.002, epochs=8, iwae_samples=10)
CVAE = dict(model="cvae", guide="normal", elbo="trace", visible=1, hidden_dims=(128,),
            latent_dim=2, batch_size=64, lr=0.001, epochs=8, iwae_samples=100)

# %%
# M2 against its classifier alone
# -------------------------------
# ``test_accuracy`` is that of argmax q(y|x) on the test digits, ``baseline_accuracy`` that of
# the same network trained on the labeled digits alone, in the same run.
from experiments import Config
from experiments.training.end_to_end import run

m2 = run(Config(**M2, data="digits", out="runs/lessons-live/m2", progress=False),
         force=True).summary
gain = m2["test_accuracy"] - m2["baseline_accuracy"]
print(f"M2 test accuracy {m2['test_accuracy']:.3f}, the classifier alone "
      f"{m2['baseline_accuracy']:.3f}: a gain of {gain:+.3f}")

# %%
# The conditional VAE against its baseline
# ----------------------------------------
# Both numbers are −log p(x_hidden | x_visible) per test digit, in nats (lower is better).
cvae = run(Config(**CVAE, data="digits", out="runs/lessons-live/cvae", progress=False),
           force=True).summary
print(f"cvae conditional NLL {cvae['test_conditional_nll']:.2f}, "
      f"the baseline's {cvae['baseline_conditional_nll']:.2f}")

# %%
# M2's style: each test digit's z decoded with every y; the cvae's completions.
from experiments.lessons.live import show_file

show_file("runs/lessons-live/m2/style.png", "runs/lessons-live/cvae/completions.png")
