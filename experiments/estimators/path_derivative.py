"""Path-derivative gradients of the ELBO and of the IWAE bound: ``stl`` and ``dreg``.

Both estimators differentiate q_φ(z|x) only through the path of its reparameterized samples
z = T_φ(ε), ε ~ p(ε). The total derivative of log q splits in two,

    d/dφ log q_φ(T_φ(ε)|x) = ∂ log q_φ(z|x)/∂z · ∂T_φ(ε)/∂φ  +  ∂ log q_φ(z|x)/∂φ |_z ,
                             (path)                              (score: E_q[score] = 0)

and the score term, zero in expectation but not in any one draw, is dropped. It is the gradient
of log q_φ(z̄|x) at z̄ = stop_gradient(z), which the guide computes when it is run once more with
its sample sites fixed to z̄; so log q_φ(z|x) − [log q_φ(z̄|x) − stop_gradient(log q_φ(z̄|x))]
has the value of log q and its path gradient alone. That costs one more run of the guide per
step and asks nothing of it beyond reparameterized sites: no access to its parameters (module
weights or ``pyro.param``), and a flow is scored at z̄ by inversion, whereas log q at z itself
with φ detached would read ε = T⁻¹(z) back from the transform's cache and lose the path.
"""
import contextlib
import math

import torch
from pyro import poutine
from pyro.distributions.score_parts import ScoreParts
from pyro.poutine import Trace
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import site_is_subsample

from experiments.estimators.importance_weighted import IWAE_ELBO
from experiments.estimators.surrogate import TensorTrace_ELBO
from experiments.estimators.traits import EstimatorTraits
from experiments.estimators.weights import (
    DATA_PLATE,
    PARTICLE_PLATE,
    check_reparameterized,
    point_log_weights,
    stack_particles,
)


class PathDerivativeMixin:
    """Listed before a Pyro ELBO among a class's bases, wraps that ELBO's ``_get_trace``: it
    refuses latent sites that are not reparameterized, then drops the score term of each guide
    site's log q(z|x). Everything downstream (loss values, surrogates) is the ELBO's own."""

    def _get_trace(self, model, guide, args, kwargs):
        model_trace, guide_trace, _ = self._path_derivative_traces(model, guide, args, kwargs)
        return model_trace, guide_trace

    def _path_derivative_traces(self, model, guide, args, kwargs, around=None):
        """The ELBO's (model trace, guide trace) with q's score dropped, and the guide's own
        trace detached: z̄ = stop_gradient(z), with the subsample indices Pyro prunes. The
        traces are made inside the handler ``around``, if given."""
        guide = poutine.trace(guide)
        with around or contextlib.nullcontext():
            model_trace, guide_trace = super()._get_trace(model, guide, args, kwargs)
        check_reparameterized(model_trace, guide_trace, type(self).__name__)
        fixed = guide.trace                 # its own site dicts: detaching leaves guide_trace's
        fixed.detach_()
        drop_score(guide.fn, fixed, guide_trace, args, kwargs)
        return model_trace, guide_trace, fixed


def drop_score(guide, fixed: Trace, guide_trace: Trace, args: tuple, kwargs: dict) -> Trace:
    """``guide_trace`` with each site's log q(z|x) (scaled and unscaled) replaced by a tensor of
    the same value whose gradient in φ is the path term alone (see the module's docstring).

    ``guide`` is the guide as the estimator ran it (inside its particle plate, if vectorized),
    and ``fixed`` its detached trace: rerun on it, the guide sees the same z̄ and the same
    subsample of every plate.
    """
    rerun = poutine.trace(poutine.replay(guide, trace=fixed)).get_trace(*args, **kwargs)
    scored = guide_trace.stochastic_nodes
    rerun.compute_log_prob(lambda name, site: name in scored)
    for name, site in guide_trace.iter_stochastic_nodes():
        score = rerun.nodes[name]["log_prob"]                      # log q_φ(z̄|x), batch shape
        unscaled = rerun.nodes[name]["unscaled_log_prob"]
        log_q = site["log_prob"] - (score - score.detach())
        site.update(log_prob=log_q, log_prob_sum=log_q.sum(),
                    unscaled_log_prob=site["unscaled_log_prob"] - (unscaled - unscaled.detach()),
                    score_parts=ScoreParts(log_q, 0, log_q))
    return guide_trace


class STL_ELBO(PathDerivativeMixin, EstimatorTraits, TensorTrace_ELBO):
    """"Sticking the landing": the ELBO's path-derivative gradient (Roeder, Wu & Duvenaud 2017).

    The loss is Trace_ELBO's, −ELBO with ELBO = E_q[log p(x, z) − log q(z|x)] estimated with K
    draws z_k = T_φ(ε_k); the gradient is that of the surrogate

        (1/K) Σ_k [log p_θ(x, z_k) − log q_φ̄(z_k|x)],   φ̄ = stop_gradient(φ),

    so θ gets Trace_ELBO's gradient and φ only the path term

        (1/K) Σ_k ∂(log p_θ(x, z_k) − log q_φ(z_k|x))/∂z_k · ∂z_k/∂φ.

    It is unbiased (the dropped score term has mean zero), and it vanishes in every draw when
    q(z|x) = p(z|x), where log p(x, z) − log q(z|x) = log p(x) no longer depends on z: the
    gradient "sticks the landing" instead of jittering around the optimum. Every guide site must
    be reparameterized (``ValueError`` otherwise).

    References

    [1] `Sticking the Landing: Simple, Lower-Variance Gradient Estimators for Variational
        Inference`, Geoffrey Roeder, Yuhuai Wu, David Duvenaud (NeurIPS 2017)
    """

    reparameterized = True
    path_derivative = True


class DReG_ELBO(PathDerivativeMixin, IWAE_ELBO):
    """The doubly-reparameterized gradient of the IWAE bound (Tucker, Lawson, Gu & Maddison 2019).

    The loss is ``IWAE_ELBO``'s: −(N/B) Σ_i L_K(x_i), L_K(x_i) = log (1/K) Σ_k w_ik with
    w_ik = p_θ(x_i, z_ik) / q_φ(z_ik|x_i), z_ik = T_φ(ε_ik), one set of K weights per data point
    and the minibatch scale outside. With the normalized weights w̃_ik = w_ik / Σ_j w_ij held
    fixed, the gradients are

        θ:  (N/B) Σ_i Σ_k w̃_ik  ∇_θ log p_θ(x_i, z_ik)                            (IWAE's own)
        φ:  (N/B) Σ_i Σ_k w̃_ik² ∂(log p_θ(x_i, z) − log q_φ(z|x_i))/∂z |_{z_ik} · ∂z_ik/∂φ

    The φ line is IWAE's gradient with its score term reparameterized a second time: unbiased
    for the same expectation, and, unlike IWAE's, its signal-to-noise ratio grows with K instead
    of decaying like 1/√K (Rainforth et al. 2018). Both come from one surrogate and one run of
    the model,

        −(N/B) Σ_i Σ_k [w̃_ik log p_θ(x_i, z'_ik) − w̃_ik² log q_φ̄(z_ik|x_i)],

    with q's score dropped (log q_φ̄: the path term alone) and z' = z on the way forward, its
    gradient multiplied by w̃_ik on the way back (``GradientGate``, around the model's replay of
    the guide's values): θ gets w̃ ∇_θ log p, and φ gets w̃ · w̃ ∂ log p/∂z through z' and
    w̃² ∂ log q/∂z through z. (Written without the gate, the same gradients need the model run
    a second time at z̄ = stop_gradient(z): −Σ [w̃² log w + (w̃ − w̃²) log p(x, z̄)], what this
    class computed before, 1.4–2.3× IWAE's step in ``benchmarks/RESULTS.md``.) Needs every
    latent site reparameterized in the guide (``ValueError`` otherwise).

    References

    [1] `Doubly Reparameterized Gradient Estimators for Monte Carlo Objectives`,
        George Tucker, Dieterich Lawson, Shixiang Gu, Chris J. Maddison (ICLR 2019)

    [2] `Importance Weighted Autoencoders`, Yuri Burda, Roger Grosse, Ruslan Salakhutdinov

    [3] `Tighter Variational Bounds are Not Necessarily Better`, Tom Rainforth, Adam R.
        Kosiorek, Tuan Anh Le, Chris J. Maddison, Maximilian Igl, Frank Wood, Yee Whye Teh
        (ICML 2018)
    """

    path_derivative = True

    def _get_trace(self, model, guide, args, kwargs):
        """(model trace at z' = gate(z), guide trace at z with q's score dropped, the gate)."""
        gate = GradientGate()
        model_trace, guide_trace, _ = self._path_derivative_traces(model, guide, args, kwargs,
                                                                   around=gate)
        return model_trace, guide_trace, gate

    def differentiable_loss(self, model, guide, *args, **kwargs):
        """−(N/B) Σ_i L_K(x_i), as a tensor whose gradient is the surrogate's above, computed
        in one run of the model: −(N/B) Σ_ik [w̃_ik log p_θ(x_i, z'_ik) − w̃_ik² log q_φ̄(z_ik|x_i)]
        with z' = z whose gradient the gate multiplies by w̃_ik, so that φ receives
        w̃ · w̃ ∂ log p/∂z and θ receives w̃ ∇_θ log p, as the two-term surrogate gives them."""
        name, log_p, log_q, gates = type(self).__name__, [], [], []
        for model_trace, guide_trace, gate in self._get_traces(model, guide, args, kwargs):
            model_log_p, scale = point_log_weights(model_trace, Trace(), name)
            log_p.append(model_log_p)
            log_q.append(-point_log_weights(Trace(), guide_trace, name)[0])
            gates.append((gate, model_trace))
        log_p, log_q = stack_particles(log_p), stack_particles(log_q)                # (K, B)
        log_w = log_p - log_q
        w = torch.softmax(log_w.detach(), dim=0)                                     # w̃_ik
        for k, (gate, model_trace) in enumerate(gates):
            gate.open(model_trace, w if len(gates) == 1 else w[k])
        surrogate = -scale * (w * log_p - w ** 2 * log_q).sum()
        loss = -scale * (torch.logsumexp(log_w.detach(), 0) - math.log(log_w.shape[0])).sum()
        return loss + (surrogate - surrogate.detach())


class GradientGate(Messenger):
    """Around the making of an ELBO's traces: each latent value the *model* replays from the
    guide reaches the model as z' = z, whose gradient on the way back is multiplied by a
    factor set after the forward pass (``open``): per data point and particle, broadcast over
    the site's other dimensions. The guide's own trace keeps z. It sits below Pyro's trace and
    replay handlers, so it sees the replayed value and the model trace records z'."""

    def __init__(self):
        super().__init__()
        self.factors = {}                   # site name → its _Factor, filled in by ``open``

    def _process_message(self, msg):
        if msg["type"] == "sample" and not msg["is_observed"] and msg["value"] is not None \
                and not site_is_subsample(msg) and torch.is_floating_point(msg["value"]):
            factor = self.factors[msg["name"]] = _Factor()
            msg["value"] = _ScaleGradient.apply(msg["value"], factor)

    def open(self, model_trace: Trace, weights: torch.Tensor) -> None:
        """Set every gated site's factor from ``weights`` of shape (K, B) or (B,): K along
        the particle plate's dimension, B along the data plate's."""
        for name, factor in self.factors.items():
            site = model_trace.nodes[name]
            value = site["value"]
            shape = [1] * value.dim()
            for frame in site["cond_indep_stack"]:
                if frame.name in (PARTICLE_PLATE, DATA_PLATE):
                    shape[value.dim() - site["fn"].event_dim + frame.dim] = \
                        value.shape[value.dim() - site["fn"].event_dim + frame.dim]
            factor.value = weights.reshape(shape)


class _Factor:
    value = None


class _ScaleGradient(torch.autograd.Function):
    """Identity forward; backward, the incoming gradient times ``factor.value``."""

    @staticmethod
    def forward(ctx, z, factor):
        ctx.factor = factor
        return z.view_as(z)

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.factor.value, None
