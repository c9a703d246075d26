"""
Pyro's RenyiELBO puts the minibatch scale inside its log-mean-exp
=================================================================

A minimal reproduction, torch and pyro-ppl only (checked with pyro-ppl 1.9.1 and 1.9.2): under
``pyro.plate(subsample=...)`` the IWAE bound of a minibatch should be (N/B) Σ_i log (1/K)
Σ_k w_ik, the scale outside the log; Pyro's ``RenyiELBO(alpha=0)`` computes
Σ_i log (1/K) Σ_k w_ik^(N/B), the scale inside, which is another objective whenever B < N.
The printout shows Pyro's loss equal to the scale-inside sum, far from the bound. See the design
note "Pyro's RenyiELBO under minibatch subsampling" for why it matters and what ELBO Lab does.

    python examples/pyro_renyi_subsampling.py
"""
import math

import pyro
import pyro.distributions as dist
import torch
from pyro.infer import RenyiELBO

N, B, K = 1797, 128, 10


def model(x, index):
    with pyro.plate("data", N, subsample=index):
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        pyro.sample("x", dist.Normal(z, 1.0), obs=x)


def guide(x, index, draws):
    with pyro.plate("data", N, subsample=index):
        draws.append(pyro.sample("z", dist.Normal(0.3 * x, 1.0)))  # p(z|x) is N(x/2, 1/2)


def by_hand(x, z):
    """log w_ik = log p(x_i, z_ik) − log q(z_ik|x_i) for the draws z (K, B), and three sums."""
    log_w = (dist.Normal(0.0, 1.0).log_prob(z) + dist.Normal(z, 1.0).log_prob(x)
             - dist.Normal(0.3 * x, 1.0).log_prob(z))
    scale = N / B
    lme = lambda t: t.logsumexp(0) - math.log(K)
    return {"IWAE bound, N/B outside": -(scale * lme(log_w)).sum().item(),
            "N/B inside the log-mean-exp": -lme(scale * log_w).sum().item()}


def main():
    pyro.set_rng_seed(0)
    x = torch.randn(N) * math.sqrt(2.0)                  # p(x) = N(0, 2)
    index = torch.randperm(N)[:B]
    elbo = RenyiELBO(alpha=0.0, num_particles=K, vectorize_particles=True, max_plate_nesting=1)
    draws = []
    loss = elbo.loss(lambda *args: model(*args[:2]), guide, x[index], index, draws)
    (z,) = draws                                         # (K, B): the K draws of each x_i
    results = {"pyro RenyiELBO(alpha=0).loss": loss, **by_hand(x[index], z)}
    for name, value in results.items():
        print(f"{name:<32} {value:12.2f}")
    return results


if __name__ == "__main__":
    main()
