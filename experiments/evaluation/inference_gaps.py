"""The inference gaps of a trained amortized model (Cremer, Li & Duvenaud 2018).

For N test points, with the model's parameters θ fixed:

    log p(x)            exact where the model has it, else IWAE with many samples
    best ELBO           max over per-point q(z_i) = N(m_i, diag s_i²), refined from the
                        encoder's output until it stops improving (the guide family's optimum)
    amortized ELBO      the encoder's q(z|x)

    approximation gap = log p(x) − best ELBO          (the family cannot match p(z|x))
    amortization gap  = best ELBO − amortized ELBO    (the encoder misses the family's best)
"""
from pyro.infer import Trace_ELBO

from experiments.evaluation.likelihood import iwae_log_likelihood, mean_elbo
from experiments.evaluation.refine import fit_local_posterior

REFINE_BLOCK = 200          # Adam steps between convergence checks
CONVERGED = 0.01            # nats per point gained by one block below which refinement stops
REFINE_LR = 0.02            # Adam's step size in the first block, halved in each next one


def inference_gaps(model, guide, x, iwae_samples: int = 5000, max_blocks: int = 20,
                   precision_particles: int = 200, progress: bool = False) -> dict:
    """The three quantities and two gaps above, in nats per data point; ``progress`` shows
    each refinement block's bar on stderr."""
    precise = Trace_ELBO(num_particles=precision_particles, vectorize_particles=True,
                         max_plate_nesting=model.max_plate_nesting)
    amortized = mean_elbo(model, guide, x, elbo=precise)
    refined, best, blocks = guide, amortized, 0
    for blocks in range(1, max_blocks + 1):     # Adam's jitter shrinks with its step size
        refined = fit_local_posterior(model, x, steps=REFINE_BLOCK, init=refined,
                                      lr=REFINE_LR * 0.5 ** (blocks - 1), progress=progress)
        value = mean_elbo(model, refined, x, elbo=precise)
        gained, best = value - best, max(best, value)
        if gained < CONVERGED:
            break
    if model.has_exact_log_likelihood:
        log_px, source = model.exact_log_likelihood(x).mean().item(), "exact"
    else:
        log_px, _ = iwae_log_likelihood(model, refined, x, iwae_samples,
                                        max_plate_nesting=model.max_plate_nesting)
        source = f"IWAE, {iwae_samples} samples from the refined q"
    return {"num_points": len(x), "log_likelihood": log_px, "log_likelihood_source": source,
            "best_elbo": best, "amortized_elbo": amortized,
            "approximation_gap": log_px - best, "amortization_gap": best - amortized,
            "refinement_steps": blocks * REFINE_BLOCK}
