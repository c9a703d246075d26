"""The joint optimizer: Pyro's Adam steps, saved and restored per parameter name, grads released."""
import pyro
import pytest
import torch
from pyro.infer import SVI

from experiments.parts.build import build
from experiments.training.optim import JointOptim, adam, fused_adam_step

X = torch.rand(32, 10).bernoulli()


def _train(optim, steps, start=None):
    """Take ``steps`` SVI steps with ``optim`` on a small VAE, fresh (seed 1) or continuing from
    ``start``; returns everything a checkpoint holds, and the parts."""
    pyro.clear_param_store()
    pyro.set_rng_seed(1)
    parts = build("vae", "normal", "trace", data_dim=10, latent_dim=2, hidden_dims=(8,))
    if start is not None:
        parts.model.load_state_dict(start["model"])
        parts.guide.load_state_dict(start["guide"])
        optim.set_state(start["optim"])
        torch.set_rng_state(start["rng"])
    svi = SVI(parts.model, parts.guide, optim, parts.elbo)
    for _ in range(steps):
        svi.step(X)
    return {"model": parts.model.state_dict(), "guide": parts.guide.state_dict(),
            "optim": optim.get_state(), "rng": torch.get_rng_state()}, parts


def _same_params(a, b, exact=True):
    same = torch.equal if exact else (lambda u, v: torch.allclose(u, v, rtol=1e-5, atol=1e-6))
    return all(same(a[part][k], b[part][k]) for part in ("model", "guide") for k in a[part])


def pyro_adam():
    return pyro.optim.Adam({"lr": 0.01})


def unfused_joint_adam():
    return JointOptim(torch.optim.Adam, {"lr": 0.01})


def test_the_same_steps_as_pyro_adam():
    """One optimizer over all parameters is the same algorithm as one per parameter; the fused
    kernel differs from it only by rounding."""
    per_parameter, _ = _train(pyro_adam(), 5)
    assert _same_params(per_parameter, _train(unfused_joint_adam(), 5)[0])
    assert _same_params(per_parameter, _train(adam(0.01), 5)[0], exact=False)
    assert not _same_params(per_parameter, _train(adam(0.01), 6)[0], exact=False)


@pytest.mark.parametrize("first, then", [(lambda: adam(0.01), lambda: adam(0.01)),
                                         (pyro_adam, unfused_joint_adam)],
                         ids=["joint", "from-pyro.optim"])
def test_saved_state_resumes_exactly(first, then):
    """3 steps, save, restore into a fresh optimizer, 3 more steps = 6 steps in one go. The
    state is keyed by parameter name in ``pyro.optim``'s format, so a state saved by
    ``pyro.optim.Adam`` (the checkpoints of earlier versions) resumes too."""
    half, _ = _train(first(), 3)
    assert set(half["optim"]) == set(pyro.get_param_store().keys())
    resumed, _ = _train(then(), 3, start=half)
    straight, _ = _train(first(), 6)
    assert _same_params(resumed, straight)


def test_gradients_are_released_after_each_step():
    _, parts = _train(adam(0.01), 2)
    assert all(p.grad is None for p in [*parts.model.parameters(), *parts.guide.parameters()])


def _twin_adams():
    """Two fused Adams over equal parameters: two groups, float32 and float64, weight decay."""
    def make():
        torch.manual_seed(0)
        first = [torch.randn(5, 3, requires_grad=True), torch.randn(4, dtype=torch.float64,
                                                                    requires_grad=True)]
        second = [torch.randn(7, requires_grad=True)]
        optimizer = torch.optim.Adam(first, lr=0.01, fused=True)
        optimizer.add_param_group({"params": second, "lr": 0.003, "weight_decay": 0.1,
                                   "betas": (0.8, 0.99)})
        return optimizer, first + second
    return make(), make()


def test_the_direct_fused_step_is_torchs_fused_adam_step_to_the_bit():
    """``fused_adam_step`` against ``Adam.step``, both fused, on the same gradients: the first
    step (no state yet) is left to torch, later ones give the same parameters, moments and step
    counts to the bit, a parameter without a gradient included (left as it is)."""
    (torchs, params), (direct, twins) = _twin_adams()
    for step in range(4):
        grads = [torch.randn_like(p) for p in params]
        for p, q, g in zip(params, twins, grads):
            p.grad, q.grad = g, g.clone()
        if step == 2:
            params[0].grad = twins[0].grad = None
        torchs.step()
        assert fused_adam_step(direct) == (step > 0)
        if step == 0:
            direct.step()
        for p, q in zip(params, twins):
            assert torch.equal(p, q)
            assert torchs.state[p].keys() == direct.state[q].keys()
            assert all(torch.equal(torchs.state[p][k], direct.state[q][k])
                       for k in torchs.state[p])


def test_the_direct_fused_step_leaves_to_torch_what_torch_does_more():
    """Hooks, a scheduler's wrapper, amsgrad: nothing done, False."""
    for change in (lambda o: o.register_step_pre_hook(lambda *a: None),
                   lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=1),
                   lambda o: o.param_groups[0].update(amsgrad=True)):
        (_, _), (optimizer, params) = _twin_adams()
        for p in params:
            p.grad = torch.ones_like(p)
        optimizer.step()
        change(optimizer)
        before = [p.clone() for p in params]
        assert not fused_adam_step(optimizer)
        assert all(torch.equal(p, b) for p, b in zip(params, before))

