"""One run trained by several processes: PyTorch's DistributedDataParallel (DDP) under torchrun.

    torchrun --standalone --nproc_per_node 2 -m experiments.train --model vae --data digits

Every rank builds the same parts from the same seed and holds the whole data set. In each step
rank r takes its own share of the step's global minibatch (``experiments.training.batches``) and
computes its loss with the data plate's scale N/B, so its gradient is an unbiased estimate of the
whole training set's; DDP averages the ranks' gradients, so a step of N ranks is one step on the
N × B points of the global minibatch (``--batch-size`` is B, per rank). The estimator's
``differentiable_loss`` is wrapped in Pyro's ``ELBOModule`` (``elbo(model, guide)``: a
``torch.nn.Module`` holding model and guide) and that module in DDP, which synchronizes the
gradients during ``backward``: a step's one collective, which also brings every rank the mean
loss and any rank's request to stop (``_Carrying``). The run's own optimizer
(``experiments.training.optim``) then steps the same parameters on every rank, which
therefore stay equal (``check_in_sync`` verifies it after every epoch). An estimator without
``differentiable_loss`` (``tracegraph``: Pyro computes its gradient inside ``loss_and_grads``
only) cannot be wrapped, and is refused.

Random numbers: the epoch's order of the training set comes from the run's seed, the same on
every rank; the noise of each rank (z ~ q, dynamic binarization) from a stream of its own,
seeded afresh at every epoch from (seed, epoch, rank), so a resumed run draws what an
uninterrupted one draws without a random state per rank in the checkpoint. Evaluation draws
per chunk of the test set (``experiments.evaluation.likelihood``), whichever rank scores it.
"""
import hashlib
import os
from typing import Dict, List, Set

import pyro
import torch
from pyro import poutine
from pyro.infer import ELBO
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from experiments.common.distributed import (
    RankFailure,
    forget_stop,
    gather,
    joined,
    joined_group,
    stop_requested,
    world,
)
from experiments.common.errors import UserError
from experiments.common.ranks import launched
from experiments.common.rng import isolated_rng
from experiments.config.config import Config
from experiments.estimators import ELBOS
from experiments.parts.namespaces import local_name

WARM_UP_SEED = 0


def session(config: Config):
    """The process group of a torchrun job (a no-op in one process): gloo on CPU, NCCL with
    ``--device cuda``; collectives time out after ``--dist-timeout`` seconds."""
    return joined("nccl" if config.device.startswith("cuda") else "gloo", config.dist_timeout)


def device_of(name: str) -> torch.device:
    """The device of this rank: under torchrun, ``--device cuda`` is the GPU of the local rank
    (one GPU per process, taken when the rank joins), as it is the current GPU in one
    process."""
    if not launched() or not name.startswith("cuda"):
        return torch.device(name)
    if name != "cuda":
        raise UserError(f"--device {name}: under torchrun each rank takes the GPU of its local "
                        "rank; pass --device cuda")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))


def check_training(config: Config, estimator: ELBO, num_train: int) -> None:
    """Refuse what cannot train across ranks, before anything is written: an ``estimator`` (the
    run's, ``--elbo``) with no single differentiable loss, or fewer training points than
    ranks."""
    here = world()
    if not joined_group():
        return
    if not callable(getattr(estimator, "differentiable_loss", None)):
        able = [name for name, cls in ELBOS.items() if callable(getattr(cls, "differentiable_loss",
                                                                         None))]
        raise UserError(f"--elbo {config.elbo} cannot train under torchrun: "
                        f"{_pyro_base(type(estimator))} computes its gradient only inside "
                        "loss_and_grads, and DistributedDataParallel needs one differentiable "
                        f"loss to synchronize; train it in one process, or choose one of "
                        f"{', '.join(able)}")
    if config.labeled_batch and config.labels is not None:
        raise UserError("--labeled-batch draws labeled rows apart in one process; under torchrun "
                        "pass --labeled-batch 0 (labeled and unlabeled rows drawn alike)")
    if num_train < here.size:
        raise UserError(f"{num_train} training points cannot be shared among {here.size} ranks; "
                        "use more data or fewer processes")


def check_global_batch(config: Config, saved: dict, run_dir, force: bool) -> None:
    """Refuse to resume the checkpoint ``saved`` with another global batch (processes ×
    --batch-size) than it trained with, unless ``force``: resumed by another number of
    processes with the same --batch-size, a run would silently change its steps. The line
    names the --batch-size that keeps the global batch here."""
    processes, batch = saved.get("world_size", 1), saved["config"]["batch_size"]
    here = world().size
    if here * config.batch_size == processes * batch or force:
        return
    keep = processes * batch // here if processes * batch % here == 0 else None
    raise UserError(
        f"--resume {run_dir}: the run trained with a global batch of {processes * batch} "
        f"({processes} process(es) × --batch-size {batch}); {here} process(es) × "
        f"{config.batch_size} would make it {here * config.batch_size}: "
        + (f"pass --batch-size {keep} --force to keep it, or " if keep else "pass ")
        + f"--force to continue with {here * config.batch_size}")


def _pyro_base(estimator: type) -> str:
    return next(c.__name__ for c in estimator.__mro__ if c.__module__.startswith("pyro."))


class DistributedSVI:
    """``pyro.infer.SVI``'s ``step`` for one rank: the loss of this rank's minibatch through
    DDP, its gradient averaged over the ranks in ``backward``, one step of ``optim`` (a
    ``JointOptim``) on the parameters ``SVI`` would step on the union of the ranks' minibatches.

    DDP needs every parameter before it starts (it broadcasts rank 0's values and registers a
    gradient hook on each), so the first ``step`` runs one pass of model and guide, in a random
    stream of its own and with its gradients dropped, on every rank alike, then wraps. Where
    that pass leaves parameters without a gradient (a baseline network trained apart), and for
    every model whose steps differ in the parameters they use (one that takes labels: a step
    whose points are all labeled leaves q(y|x) out), DDP looks for the unused parameters at
    every step (``find_unused_parameters``).

    ``SVI`` steps the parameters a step's trace uses, named by Pyro's store, which names them on
    first use: a rank whose minibatch never used a parameter has no name for it. A parameter
    joins the optimizer when it first has a gradient (DDP gives every rank the averaged
    gradient of a parameter that any rank used), under the name a rank that used it knows.
    """

    def __init__(self, model, guide, optim, elbo):
        self.model, self.guide = model, guide
        self.module = _Carrying(elbo(model, guide))
        self.carried = self.module.carried
        self.optim = optim
        self.ddp = None
        self.params: List[torch.Tensor] = []    # joined to ``optim``, in one order on all ranks
        self._trainable = {path: p for path, p in self.module.loss.named_parameters()
                           if p.requires_grad}
        self._seen: Set[str] = set()

    def step(self, *args, **kwargs) -> float:
        """One step on this rank's minibatch; the loss averaged over the ranks (every rank
        returns the same number, so all stop together on a NaN). When any rank was asked to
        stop (``request_stop``), every rank raises ``KeyboardInterrupt`` after this step."""
        if self.ddp is None:
            self._wrap(args, kwargs)
        self.ddp(*args, stop=float(stop_requested()), **kwargs).backward()
        shared = self.carried.grad.tolist()         # (mean loss, share of ranks asked to stop)
        self.carried.grad = None
        self._join_new()
        self.optim(self.params)
        if shared[1] > 0:
            forget_stop()
            raise KeyboardInterrupt
        return shared[0]

    def _join_new(self) -> None:
        """Join the parameters with a gradient for the first time (the same on every rank)."""
        fresh = {path: p for path, p in self._trainable.items()
                 if p.grad is not None and path not in self._seen}
        if not fresh:
            return
        store = pyro.get_param_store()
        mine = {path: local_name(store.param_name(p)) for path, p in fresh.items()
                if store.param_name(p) is not None}
        names: Dict[str, str] = {}
        for known in gather(mine):
            for path, name in known.items():
                names.setdefault(path, name)
        self._seen.update(fresh)
        named = {names[path]: p for path, p in fresh.items() if path in names}   # else: not
        self.optim.join(named)                      # Pyro's, which SVI would not step either
        self.params += [named[name] for name in sorted(named)]

    def _wrap(self, args, kwargs) -> None:
        device = next((a.device for a in args if torch.is_tensor(a)), torch.device("cpu"))
        with isolated_rng(WARM_UP_SEED, device), poutine.trace(param_only=True) as captured:
            loss = self.module(*args, stop=0.0, **kwargs)
        loss.backward()
        own = {id(p) for p in self.module.parameters()}
        outside = sorted(name for name, site in captured.trace.nodes.items()
                         if id(site["value"].unconstrained()) not in own)
        if outside:
            raise UserError(f"{', '.join(outside)}: Pyro parameters outside the model's and "
                            "guide's modules, which DistributedDataParallel cannot keep equal "
                            "across ranks; train in one process")
        unused = [p for p in self._trainable.values() if p.grad is None]
        varies = getattr(self.model, "takes_labels", False)
        for p in self.module.parameters():
            p.grad = None
        ids = [device.index] if device.type == "cuda" else None
        self.ddp = DistributedDataParallel(self.module, device_ids=ids,
                                           find_unused_parameters=bool(unused) or varies)


class _Carrying(nn.Module):
    """Pyro's ``ELBOModule`` (``loss``) whose output also carries, to every rank, the mean of
    the ranks' losses and whether any was asked to stop, without a collective of its own: the
    output adds c · (loss, stop) with c = ``carried`` = (0, 0), which changes nothing but makes
    the gradient of c (loss, stop), and DDP averages it with the parameters' gradients."""

    def __init__(self, loss: nn.Module):
        super().__init__()
        self.loss = loss
        device = next(loss.parameters(), torch.zeros(())).device
        self.carried = nn.Parameter(torch.zeros(2, device=device))

    def forward(self, *args, stop: float, **kwargs) -> torch.Tensor:
        loss = self.loss(*args, **kwargs)
        signals = torch.stack([loss.detach(), loss.detach().new_tensor(stop)])
        return loss + (self.carried.to(loss.dtype) * signals).sum()


def check_in_sync(*modules: torch.nn.Module) -> None:
    """Refuse to go on if any rank's parameters and buffers differ from rank 0's by one bit."""
    if not joined_group():
        return
    digest = hashlib.sha256()
    for module in modules:
        for tensor in module.state_dict().values():
            digest.update(tensor.detach().cpu().reshape(-1).view(torch.uint8).numpy().tobytes())
    digests = gather(digest.hexdigest())
    differ = [str(r) for r, d in enumerate(digests) if d != digests[0]]
    if differ:
        raise RankFailure(f"the parameters of rank(s) {', '.join(differ)} differ from rank 0's: "
                          "the ranks no longer train one model (a nondeterministic kernel, or "
                          "ranks on different hardware); stop and resume from the checkpoint")
