"""The amortized categorical guide of a model with one discrete latent site."""
import pyro
import pyro.distributions as dist
import torch

from guides.base import AmortizedGuide
from models.plates import data_plate


class CategoricalGuide(AmortizedGuide):
    """q_φ(z|x) = Categorical(softmax(net_φ(x))), net_φ: D → reversed(hidden_dims) → K; for a
    model with L one-hot variables of C values each (the discrete-vae), L independent
    OneHotCategorical(softmax(net_φ(x)_l)).

    z is not reparameterizable, so its gradient is the score function
    ∇_φ log q_φ(z|x) · (log p(x, z) − log q_φ(z|x)) under ``trace``. Under ``tracegraph`` that
    term is Rao-Blackwellized and centred by a learned, input-dependent baseline b_ψ(x) (an MLP
    of the same widths, fitted by least squares to the downstream cost; Mnih & Gregor 2014);
    ``trace`` ignores the baseline.

    :param model: the model whose one discrete latent site this guide covers.
    :param hidden_dims: widths of the hidden layers of net_φ and b_ψ.
    """

    covers = "discrete"
    reparameterized = False
    closed_form_kl = True

    def __init__(self, model, hidden_dims=(400,)):
        super().__init__(model, hidden_dims)
        self.baseline = self.read_x(model, hidden_dims, 1)

    def variational_parameters(self):
        return self.encoder.parameters()

    def encoder_outputs(self) -> int:
        return self.site.size * self.site.num_categories if self.site.one_hot \
            else self.site.num_categories

    def posterior(self, x: torch.Tensor) -> dist.TorchDistribution:
        """q_φ(z|x) as a distribution with batch shape (batch,)."""
        logits = self.encoder(x)                            # (batch, K) or (batch, L·C)
        if self.site.one_hot:
            logits = logits.unflatten(-1, (self.site.size, self.site.num_categories))
            return dist.OneHotCategorical(logits=logits).to_event(1)
        return dist.Categorical(logits=logits)

    def forward(self, x: torch.Tensor, index=None, num_data=None) -> None:
        baseline = {"baseline_value": self.baseline(x).squeeze(-1)}          # (batch,)
        with data_plate(x, index, num_data):
            pyro.sample(self.site.name, self.posterior(x), infer={"baseline": baseline})
