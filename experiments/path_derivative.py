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
import math

import torch
from pyro import poutine
from pyro.distributions.score_parts import ScoreParts
from pyro.infer import RenyiELBO, Trace_ELBO
from pyro.infer.util import get_dependent_plate_dims, torch_sum
from pyro.poutine import Trace
from pyro.poutine.trace_messenger import TraceHandler
from pyro.util import warn_if_nan


class PathDerivativeMixin:
    """Listed before a Pyro ELBO among a class's bases, wraps that ELBO's ``_get_trace``: it
    refuses latent sites that are not reparameterized, then drops the score term of each guide
    site's log q(z|x). Everything downstream (loss values, surrogates) is the ELBO's own."""

    def _get_trace(self, model, guide, args, kwargs):
        guide = poutine.trace(guide)        # its trace keeps the subsample indices Pyro prunes
        model_trace, guide_trace = super()._get_trace(model, guide, args, kwargs)
        check_reparameterized(model_trace, guide_trace, type(self).__name__)
        return model_trace, drop_score(guide, guide_trace, args, kwargs)


def check_reparameterized(model_trace: Trace, guide_trace: Trace, estimator: str) -> None:
    """Refuse what a path derivative cannot differentiate: a latent site of the model that the
    guide does not draw (left to enumeration or to the prior), or a guide site drawn without
    ``rsample`` (discrete, or forced to the score function)."""
    for name in model_trace.stochastic_nodes:
        if name not in guide_trace.nodes:
            raise ValueError(f"{estimator} needs every latent site drawn by the guide, but the "
                             f"guide has no site {name!r}; use trace, tracegraph or enum")
    for name, site in guide_trace.iter_stochastic_nodes():
        if not site["fn"].has_rsample:
            raise ValueError(f"{estimator} needs reparameterized guide sites z = T_φ(ε), but "
                             f"the guide samples site {name!r} without rsample (a discrete "
                             f"site, or one forced to the score function); use trace or tracegraph")


def drop_score(traced_guide: TraceHandler, guide_trace: Trace, args: tuple,
               kwargs: dict) -> Trace:
    """``guide_trace`` with each site's log q(z|x) replaced by a tensor of the same value whose
    gradient in φ is the path term alone (see the module's docstring).

    ``traced_guide`` is the guide as the estimator ran it (inside its particle plate, if
    vectorized) under ``poutine.trace``: rerun on its trace, detached, it sees the same z̄ and
    the same subsample of every plate.
    """
    fixed = traced_guide.trace              # its own site dicts: detaching leaves guide_trace's
    fixed.detach_()
    replayed = poutine.replay(traced_guide.fn, trace=fixed)
    rerun = poutine.trace(replayed).get_trace(*args, **kwargs)
    scored = guide_trace.stochastic_nodes
    rerun.compute_log_prob(lambda name, site: name in scored)
    for name, site in guide_trace.iter_stochastic_nodes():
        score = rerun.nodes[name]["log_prob"]                      # log q_φ(z̄|x), batch shape
        log_q = site["log_prob"] - (score - score.detach())
        site.update(log_prob=log_q, log_prob_sum=log_q.sum(),
                    score_parts=ScoreParts(log_q, 0, log_q))
    return guide_trace


class STL_ELBO(PathDerivativeMixin, Trace_ELBO):
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


class DReG_ELBO(PathDerivativeMixin, RenyiELBO):
    """The doubly-reparameterized gradient of the IWAE bound (Tucker, Lawson, Gu & Maddison 2019).

    The loss is −IWAE with IWAE = E[log (1/K) Σ_k w_k], w_k = p_θ(x, z_k) / q_φ(z_k|x), z_k =
    T_φ(ε_k) (Pyro's ``RenyiELBO`` at α = 0; one set of K weights per data point). With the
    normalized weights w̃_k = w_k / Σ_j w_j held fixed, the gradients are

        θ:  Σ_k w̃_k  ∇_θ log p_θ(x, z_k)                          (IWAE's own)
        φ:  Σ_k w̃_k² ∂(log p_θ(x, z_k) − log q_φ(z_k|x))/∂z_k · ∂z_k/∂φ

    The φ line is IWAE's gradient with its score term reparameterized a second time: unbiased
    for the same expectation, and, unlike IWAE's, its signal-to-noise ratio grows with K instead
    of decaying like 1/√K (Rainforth et al. 2018). θ and φ weigh the particles differently, so
    there is no single surrogate: ``loss_and_grads`` differentiates one per group, and there is
    no ``differentiable_loss`` (train through ``SVI``). Needs every latent site reparameterized
    in the guide and no parameter shared by model and guide (``ValueError`` otherwise).

    References

    [1] `Doubly Reparameterized Gradient Estimators for Monte Carlo Objectives`,
        George Tucker, Dieterich Lawson, Shixiang Gu, Chris J. Maddison (ICLR 2019)

    [2] `Importance Weighted Autoencoders`, Yuri Burda, Roger Grosse, Ruslan Salakhutdinov

    [3] `Tighter Variational Bounds are Not Necessarily Better`, Tom Rainforth, Adam R.
        Kosiorek, Tuan Anh Le, Chris J. Maddison, Maximilian Igl, Frank Wood, Yee Whye Teh
        (ICML 2018)
    """

    def __init__(self, num_particles=2, max_plate_nesting=float("inf"),
                 vectorize_particles=False, strict_enumeration_warning=True):
        super().__init__(alpha=0.0, num_particles=num_particles,
                         max_plate_nesting=max_plate_nesting,
                         vectorize_particles=vectorize_particles,
                         strict_enumeration_warning=strict_enumeration_warning)

    def loss_and_grads(self, model, guide, *args, **kwargs):
        """−IWAE, after accumulating the θ and φ gradients above into the parameters' ``.grad``."""
        log_w, theta, phi = self._log_weights(model, guide, args, kwargs)   # (K, batch…)
        weights = torch.softmax(log_w.detach(), dim=0)                       # w̃_k
        if theta:
            (-(weights * log_w).sum()).backward(inputs=theta, retain_graph=bool(phi))
        if phi:
            (-(weights ** 2 * log_w).sum()).backward(inputs=phi)
        loss = -(torch.logsumexp(log_w.detach(), dim=0) - math.log(self.num_particles)).sum()
        warn_if_nan(loss, "loss")
        return loss.item()

    def _log_weights(self, model, guide, args, kwargs):
        """log w_k with q's score dropped, stacked over the K particles as (K, batch…), and the
        unconstrained model (θ) and guide (φ) parameters it depends on."""
        log_w, theta, phi = [], {}, {}
        for model_trace, guide_trace in self._get_traces(model, guide, args, kwargs):
            sum_dims = get_dependent_plate_dims(model_trace.nodes.values())
            log_w.append(_log_prob(model_trace, sum_dims) - _log_prob(guide_trace, sum_dims))
            theta.update(_params(model_trace))
            phi.update(_params(guide_trace))
        shared = theta.keys() & phi.keys()
        if shared:
            raise ValueError(f"dreg weighs model and guide parameters differently, but "
                             f"{', '.join(sorted(shared))} belong to both")
        vectorized = self.vectorize_particles and self.num_particles > 1
        log_w = log_w[0] if vectorized else torch.stack(log_w)
        return log_w, list(theta.values()), list(phi.values())


def _log_prob(trace: Trace, sum_dims: list) -> torch.Tensor:
    """Σ over the trace's sample sites of log-densities, summed over the plates in ``sum_dims``."""
    return sum(torch_sum(site["log_prob"], sum_dims) for site in trace.nodes.values()
               if site["type"] == "sample")


def _params(trace: Trace) -> dict:
    """The trace's parameters by name, as the unconstrained tensors that SVI steps."""
    return {name: site["value"].unconstrained() for name, site in trace.nodes.items()
            if site["type"] == "param"}
