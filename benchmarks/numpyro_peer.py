"""The peer: the same VAE in NumPyro (JAX), trained by NumPyro's own ``SVI`` and ``Trace_ELBO``.

Optional (``pip install -e .[bench]``): without NumPyro the benchmark says so in one line and
leaves the rows out. The model, guide and data are ``benchmarks.reference``'s — encoder
D → 400 → 2d, decoder d → 400 → D with PyTorch's default initialization, q(z|x) = N(μ, σ²),
σ = softplus(ρ) + 1e-6, p(x|z) Bernoulli, minibatches of B of the N images scaled by N / B and
binarized afresh — and the optimizer NumPyro's Adam at the same learning rate. Two ways to run it:

- ``jax.jit`` per update: one compiled call per minibatch, what NumPyro's examples do;
- the whole epoch in one ``jax.jit``: ``lax.fori_loop`` over ⌊N/B⌋ equal minibatches, no Python
  between steps at all (the remainder of the shuffled data is left out of such an epoch).

JAX dispatches asynchronously, so every timed call waits for its result.
"""
from typing import Callable, Sequence, Tuple

import numpy as np
import torch

try:
    import jax
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as ndist
    from numpyro.infer import SVI, Trace_ELBO
    from numpyro.optim import Adam
except ImportError:                                  # the optional extra is not installed
    numpyro = None

MISSING = "NumPyro rows left out: NumPyro is not installed (pip install -e .[bench])"


def available() -> bool:
    return numpyro is not None


def version() -> str:
    return (f"numpyro {numpyro.__version__}, jax {jax.__version__}" if available()
            else "NumPyro not installed")


def _initial_params(widths_enc: Sequence[int], widths_dec: Sequence[int], seed: int) -> dict:
    """Weights drawn as ``torch.nn.Linear`` draws them (uniform ±1/√fan_in), as arrays."""
    torch.manual_seed(seed)
    params = {}
    for name, widths in (("enc", widths_enc), ("dec", widths_dec)):
        for i, (d_in, d_out) in enumerate(zip(widths[:-1], widths[1:])):
            layer = torch.nn.Linear(d_in, d_out)
            params[f"{name}_w{i}"] = jnp.asarray(layer.weight.detach().numpy().T)
            params[f"{name}_b{i}"] = jnp.asarray(layer.bias.detach().numpy())
    return params


def _mlp(name: str, layers: int, h, initial: dict):
    for i in range(layers):
        h = h @ numpyro.param(f"{name}_w{i}", initial[f"{name}_w{i}"]) + \
            numpyro.param(f"{name}_b{i}", initial[f"{name}_b{i}"])
        if i < layers - 1:
            h = jax.nn.relu(h)
    return h


def trainer(data_dim: int, latent_dim: int, hidden: Sequence[int], lr: float,
            x_train: torch.Tensor, batch_size: int, seed: int,
            whole_epoch: bool
            ) -> Tuple[Callable[[int], None], Callable[[torch.Tensor], float], int]:
    """(take(n): n updates — or, with ``whole_epoch``, n epochs —; test_elbo(x): the ELBO per
    image of x, one sample of z each; the updates one call of ``take`` makes per unit)."""
    enc = [data_dim, *reversed(hidden), 2 * latent_dim]
    dec = [latent_dim, *hidden, data_dim]
    initial = _initial_params(enc, dec, seed)

    def model(x, scale):
        with numpyro.handlers.scale(scale=scale), numpyro.plate("data", x.shape[0]):
            z = numpyro.sample("z", ndist.Normal(0.0, 1.0).expand([latent_dim]).to_event(1))
            numpyro.sample("x", ndist.Bernoulli(logits=_mlp("dec", len(dec) - 1, z, initial))
                           .to_event(1), obs=x)

    def guide(x, scale):
        loc, raw = jnp.split(_mlp("enc", len(enc) - 1, x, initial), 2, axis=-1)
        with numpyro.handlers.scale(scale=scale), numpyro.plate("data", x.shape[0]):
            numpyro.sample("z", ndist.Normal(loc, jax.nn.softplus(raw) + 1e-6).to_event(1))

    x_all = jnp.asarray(x_train.numpy())
    n = x_all.shape[0]
    svi = SVI(model, guide, Adam(lr), Trace_ELBO())
    key = jax.random.PRNGKey(seed)
    state = svi.init(key, x_all[:batch_size], n / batch_size)

    def update(state, key, index):
        x = jax.random.bernoulli(key, x_all[index]).astype(x_all.dtype)
        return svi.update(state, x, n / index.shape[0])

    steps = n // batch_size
    if whole_epoch:
        @jax.jit
        def epoch(state, key):
            key, shuffle = jax.random.split(key)
            order = jax.random.permutation(shuffle, n)[:steps * batch_size]
            batches = order.reshape(steps, batch_size)

            def body(i, carry):
                state, key = carry
                key, draw = jax.random.split(key)
                state, _ = update(state, draw, batches[i])
                return state, key

            return jax.lax.fori_loop(0, steps, body, (state, key))
    else:
        jitted = jax.jit(update)

    carry = {"state": state, "key": key, "order": [], "rng": np.random.default_rng(seed)}

    def take(count: int) -> None:
        for _ in range(count):
            if whole_epoch:
                carry["state"], carry["key"] = epoch(carry["state"], carry["key"])
                continue
            if not carry["order"]:
                perm = carry["rng"].permutation(n)
                carry["order"] = [perm[i:i + batch_size] for i in range(0, n, batch_size)]
            carry["key"], draw = jax.random.split(carry["key"])
            carry["state"], _ = jitted(carry["state"], draw, jnp.asarray(carry["order"].pop(0)))
        jax.block_until_ready(carry["state"])

    def test_elbo(x_test: torch.Tensor) -> float:
        x = jnp.asarray(x_test.numpy())
        loss = Trace_ELBO().loss(jax.random.PRNGKey(seed + 7), svi.get_params(carry["state"]),
                                 model, guide, x, 1.0)
        return -float(loss) / x.shape[0]

    return take, test_elbo, steps if whole_epoch else 1

