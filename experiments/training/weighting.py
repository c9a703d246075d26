"""β-weighting and KL warm-up (``--beta``, ``--kl-warmup``): the latent terms of the objective
scaled by β, through Pyro's ``poutine.scale`` restricted to the latent sites (pyro issue #1777).

Scaling the log-densities of the latent sites of both model and guide by β, and leaving the
observed site x alone, turns each particle's log p(x, z) − log q(z|x) into

    log p(x|z) + β (log p(z) − log q(z|x)),    with mean  E_q[log p(x|z)] − β KL(q(z|x) ‖ p(z)),

the β-VAE objective (Higgins et al. 2017); β = 1 is the ELBO. Under warm-up (Bowman et al.
2016; Sønderby et al. 2016) epoch e trains at β·min(1, (e − 1)/E): 0 in the first epoch, β from
epoch E + 1 on. Only training is weighted: every test number is the bound at β = 1.

The objective and its gradient are the β-weighted ones only where q's draws are reparameterized
and each particle is averaged on its own, so ``experiments.parts.compatibility.weighting_error``
refuses the K-sample bounds (one scale on every site), enumeration and score-function draws.
"""
from pyro.poutine.scale_messenger import ScaleMessenger

from experiments.config.config import Config


def beta_at(config: Config, epoch: int) -> float:
    """β of ``epoch`` (counted from 1): ``config.beta``, or during a warm-up of E epochs
    β·(e − 1)/E."""
    if config.kl_warmup and epoch <= config.kl_warmup:
        return config.beta * (epoch - 1) / config.kl_warmup
    return config.beta


class LatentScale(ScaleMessenger):
    """``poutine.scale`` on the latent sample sites alone: every sample site that is not
    observed has its log-density multiplied by ``scale`` (set it between steps to change β);
    observed sites keep theirs. As a context around SVI steps (``with LatentScale(β):
    svi.step(…)``) it reaches the sites of model and guide alike; as a handler, ``LatentScale(β)
    (fn)``, those of ``fn``. β = 0, the start of a warm-up, is allowed here (Pyro's
    ``poutine.scale`` refuses it); β = 1 leaves every site untouched."""

    def __init__(self, scale: float = 1.0):
        super().__init__(1.0)
        self.scale = scale

    def _process_message(self, msg) -> None:
        if msg["type"] == "sample" and not msg["is_observed"] and self.scale != 1:
            super()._process_message(msg)
