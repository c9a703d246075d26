"""Where training starts (``--init``): a mixture starts from a clustering of its training data.

Fitting a mixture by gradient ascent on the ELBO has the failure modes of EM: it climbs to the
nearest local optimum, where two components may share one cluster while another cluster goes
uncovered, or a component may collapse onto a few points. A start close to the clusters, and
several starts (``--restarts``), are the usual remedies.
"""
from typing import Callable, Dict

import torch
from sklearn.cluster import KMeans

from experiments.common.errors import UserError


def random_partition(x: torch.Tensor, k: int, seed: int) -> torch.Tensor:
    """Labels (N,): each point joins the nearest of k distinct training points drawn at random."""
    generator = torch.Generator().manual_seed(seed)
    centres = x[torch.randperm(len(x), generator=generator)[:k].to(x.device)]   # (k, D)
    return torch.cdist(x, centres).argmin(-1)


def kmeans_partition(x: torch.Tensor, k: int, seed: int) -> torch.Tensor:
    """Labels (N,) of scikit-learn's k-means (k-means++ seeding, one run per seed)."""
    labels = KMeans(n_clusters=k, n_init=1, random_state=seed).fit(x.cpu().numpy()).labels_
    return torch.as_tensor(labels, dtype=torch.long, device=x.device)


PARTITIONS: Dict[str, Callable[[torch.Tensor, int, int], torch.Tensor]] = {
    "random": random_partition,
    "kmeans": kmeans_partition,
}


def initialize(model, x: torch.Tensor, method: str, seed: int) -> None:
    """Start ``model`` from its training data ``x`` by ``method`` (a key of ``PARTITIONS``).

    A model that ``starts_from_clusters`` (the ``gmm``) takes the weights, means and scales of
    a partition of x into its K components; every other model keeps its constructor's random
    initialization, which ``random`` names and ``kmeans`` does not apply to.
    """
    if not model.starts_from_clusters:
        if method != "random":
            raise UserError(f"--init {method} applies to the gmm model only; leave it out")
        return
    if len(x) < model.components:
        raise UserError(f"--components {model.components} needs at least as many training "
                        f"points (got {len(x)}); choose fewer components or more data")
    model.set_from_clusters(x, PARTITIONS[method](x, model.components, seed))
