"""One run across processes (torchrun + DistributedDataParallel, gloo on the loopback): a step of
N ranks is one step on the union of their minibatches, the ranks' parameters stay bit-identical,
sharded evaluation gives one process's numbers, checkpoints move between world sizes, and a rank
that dies ends the job with one line naming it. Every multi-process call has a deadline. The
spawned ranks import this module: it imports at the top only what they need."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pyro
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from pyro.infer import SVI

from experiments.common.distributed import World, is_collective_failure, lost_contact, shared_work
from experiments.common.errors import UserError
from experiments.config.config import Config
from experiments.data.datasets import binarize
from experiments.estimators import ELBOS
from experiments.evaluation import metrics
from experiments.evaluation.likelihood import iwae_log_likelihood, mean_elbo
from experiments.parts.build import build
from experiments.parts.namespaces import local_name
from experiments.training import batches, distributed
from experiments.training.optim import JointOptim, adam

ROOT = Path(__file__).resolve().parent.parent
DEADLINE = 120                      # seconds any multi-process step may take, at most
QUICK = dict(num_train=240, num_test=60, hidden_dims=(16,), iwae_samples=30, progress=False)
N_GMM, UNION = 40, 16               # gmm points, and the global minibatch of the union test


def loopback_env(**extra) -> dict:
    """torch's env:// variables for ranks on this machine, on the loopback only."""
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
            "GLOO_SOCKET_IFNAME": "lo", "MASTER_ADDR": "127.0.0.1", **extra}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Recorded(JointOptim):
    """The run's optimizer (fused Adam over all parameters), keeping a copy of the gradients of
    every step it takes."""

    def __init__(self, lr: float):
        super().__init__(torch.optim.Adam, {"lr": lr, "fused": True})
        self.grads = []

    def __call__(self, params, *args, **kwargs):
        store = pyro.get_param_store()
        self.grads.append({local_name(store.param_name(p)): p.grad.clone() for p in params})
        super().__call__(params, *args, **kwargs)


def state(parts) -> dict:
    return {f"{role}.{k}": v.clone() for role in ("model", "guide")
            for k, v in getattr(parts, role).state_dict().items()}


def load(parts, saved: dict) -> None:
    for role in ("model", "guide"):
        getattr(parts, role).load_state_dict({k.split(".", 1)[1]: v for k, v in saved.items()
                                              if k.startswith(role + ".")})


def held_out_points() -> torch.Tensor:
    return binarize(torch.rand(37, 64, generator=torch.Generator().manual_seed(4)), seed=5)


def gmm_data() -> torch.Tensor:
    generator = torch.Generator().manual_seed(3)
    centres = torch.tensor([[-3.0, 0.0], [0.0, 3.0], [3.0, 0.0]])
    return centres[torch.randint(3, (N_GMM,), generator=generator)] + torch.randn(
        N_GMM, 2, generator=generator)


def gmm_parts():
    pyro.set_rng_seed(0)
    return build("gmm", "enum", "enum", data_dim=2, num_data=N_GMM, components=3)


def vae_parts(data_dim=64):
    pyro.set_rng_seed(0)
    return build("vae", "normal", "trace", data_dim=data_dim, num_data=200, hidden_dims=(16,))


def union_steps(svi, x, steps=3, share=lambda index: index):
    """``steps`` steps, step s on the global minibatch s (of UNION points), or this rank's
    ``share`` of it; the losses returned."""
    losses = []
    for s in range(steps):
        index = share(torch.arange(s * UNION, (s + 1) * UNION) % N_GMM)
        losses.append(svi.step(x[index], index, num_data=N_GMM))
    return losses


def rank_worker(rank: int, size: int, port: int, out: str) -> None:
    """One rank: the checks whose numbers the tests compare with one process's."""
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(size), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), GLOO_SOCKET_IFNAME="lo")
    torch.set_num_threads(1)
    from experiments.common.distributed import joined

    with joined("gloo", timeout=DEADLINE), pyro.validation_enabled(True):
        result = {}
        # 1. the deterministic estimator (enum on the gmm): gradients of the union, per step
        parts = gmm_parts()
        optim = Recorded(0.05)
        svi = distributed.DistributedSVI(parts.model, parts.guide, optim, parts.elbo)
        result["union_losses"] = union_steps(svi, gmm_data(),
                                             share=lambda i: i.tensor_split(size)[rank])
        result["union_grads"], result["gmm_state"] = optim.grads, parts.model.state_dict()
        # 2. a sampling estimator: each rank its own noise and data, the parameters still equal
        parts = vae_parts()
        svi = distributed.DistributedSVI(parts.model, parts.guide, adam(0.01), parts.elbo)
        x = torch.rand(200, 64).bernoulli()
        torch.manual_seed(100 + rank)
        for step in range(4):
            index = torch.randperm(200)[:20]
            svi.step(x[index], index, num_data=200)
        result["vae_state"] = state(parts)
        # 3. sharded evaluation, at parameters every rank holds
        x_test = held_out_points()
        pyro.set_rng_seed(7)
        gmm = build("gmm", "categorical", "trace", data_dim=2, num_data=N_GMM, components=3)
        metrics.EXACT_CHUNK = 7
        result["gmm_eval_state"] = state(gmm)
        with shared_work():
            result["elbo"] = mean_elbo(parts.model, parts.guide, x_test, chunk=8)
            result["iwae"] = iwae_log_likelihood(parts.model, parts.guide, x_test, 20,
                                                 chunk_elements=100)
            result["gmm_metrics"] = metrics.metrics_on_test_set(gmm.model, gmm.guide,
                                                                gmm_data(), 30)
        # 4. labels: at each step one rank's share is all labeled (q(y|x) unused), the other's not
        pyro.set_rng_seed(0)
        ssvae = build("ssvae", "m2", "trace", data_dim=64, num_data=32, num_classes=3,
                      hidden_dims=(16,))
        svi = distributed.DistributedSVI(ssvae.model, ssvae.guide, adam(0.01), ssvae.elbo)
        x, y = torch.rand(32, 64).bernoulli(), torch.arange(32) % 3
        y[8:16] = y[24:32] = -1                     # unlabeled
        for step in range(4):
            index = torch.arange(16 * (step % 2), 16 * (step % 2) + 16).tensor_split(2)[
                (rank + step // 2) % 2]
            svi.step(x[index], index, num_data=32, y=y[index])
        result["ssvae_state"] = state(ssvae)
        # 5. a rank that stops answering: the others' collective fails after the timeout
        group = dist.new_group(timeout=timedelta(seconds=2))
        if rank == 1:
            time.sleep(6)
        try:
            dist.all_reduce(torch.zeros(1), group=group)
        except RuntimeError as exc:
            result["hang"] = (is_collective_failure(exc), str(lost_contact(exc, "then")))
    torch.save(result, Path(out) / f"rank{rank}.pt")


def spawn(worker, size: int, out: Path, *args):
    """``worker(rank, size, port, out, *args)`` in ``size`` fresh processes, within DEADLINE."""
    context = mp.start_processes(worker, args=(size, free_port(), str(out), *args),
                                 nprocs=size, join=False, start_method="spawn")
    deadline = time.time() + DEADLINE
    while not context.join(timeout=1):
        if time.time() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail(f"{size} ranks did not finish within {DEADLINE} s")
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(size)]


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    os.environ.update(OMP_NUM_THREADS="1")
    return spawn(rank_worker, 2, tmp_path_factory.mktemp("ranks"))


@pytest.mark.slow
def test_a_step_of_two_ranks_is_one_step_on_the_union_of_their_minibatches(two_ranks):
    """enum on the gmm draws nothing, so the union's gradient is one number: DDP's average of
    the ranks' gradients (each with the plate's N/B) must equal it at every step."""
    parts = gmm_parts()
    optim = Recorded(0.05)
    losses = union_steps(SVI(parts.model, parts.guide, optim, parts.elbo), gmm_data())
    for rank in two_ranks:
        assert rank["union_losses"] == pytest.approx(losses, rel=1e-5)
        for theirs, ours in zip(rank["union_grads"], optim.grads):
            assert theirs.keys() == ours.keys()
            for name in ours:
                torch.testing.assert_close(theirs[name], ours[name], rtol=1e-5, atol=1e-6)
        for name, value in parts.model.state_dict().items():
            torch.testing.assert_close(rank["gmm_state"][name], value, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_the_ranks_parameters_are_bit_identical_after_training(two_ranks):
    first, second = (rank["vae_state"] for rank in two_ranks)
    start = state(vae_parts())
    assert first.keys() == second.keys() == start.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not all(torch.equal(first[k], start[k]) for k in first)      # they did train


@pytest.mark.slow
def test_a_model_whose_steps_use_different_parameters_trains_across_ranks(two_ranks):
    """The ssvae's q(y|x) serves only unlabeled points: at every step of the worker one rank's
    share is all labeled, so that rank's step leaves the classifier without a gradient, and
    DDP must find the parameters each step leaves unused (else the ranks' all-reduces no longer
    match, and gloo aborts)."""
    first, second = (rank["ssvae_state"] for rank in two_ranks)
    assert any(k.startswith("guide.classifier") for k in first)
    assert all(torch.equal(first[k], second[k]) for k in first)


@pytest.mark.slow
def test_sharded_evaluation_equals_one_process(two_ranks, monkeypatch):
    parts = vae_parts()
    load(parts, two_ranks[0]["vae_state"])
    x_test = held_out_points()
    elbo = mean_elbo(parts.model, parts.guide, x_test, chunk=8)
    iwae = iwae_log_likelihood(parts.model, parts.guide, x_test, 20, chunk_elements=100)
    monkeypatch.setattr(metrics, "EXACT_CHUNK", 7)
    gmm = build("gmm", "categorical", "trace", data_dim=2, num_data=N_GMM, components=3)
    load(gmm, two_ranks[0]["gmm_eval_state"])
    exact = metrics.metrics_on_test_set(gmm.model, gmm.guide, gmm_data(), 30)
    assert set(exact) == {"test_elbo", "test_iwae", "test_exact_log_likelihood", "test_gap",
                          "test_posterior_kl"}
    for rank in two_ranks:
        assert rank["elbo"] == elbo and rank["iwae"] == iwae
        assert rank["gmm_metrics"] == exact


@pytest.mark.slow
def test_a_rank_that_stops_answering_fails_the_others_collective_after_the_timeout(two_ranks):
    failed, message = two_ranks[0]["hang"]
    assert failed
    assert message.startswith("another rank stopped answering (") and \
        message.endswith("); rank 0 of 2 stopped then")


def test_minibatches_share_each_global_minibatch_among_the_ranks(monkeypatch):
    n, batch, size = 103, 8, 3            # 4 full global batches, 7 points left: 3 + 2 + 2
    one = batches.minibatches(n, batch, 0, 1, torch.device("cpu"))
    assert [len(b) for b in one] == [8] * 12 + [7]            # one process: as before
    shares = []
    for rank in range(size):
        monkeypatch.setattr(batches, "world", lambda r=rank: World(r, size))
        shares.append(batches.minibatches(n, batch, 0, 1, torch.device("cpu")))
        assert len(shares[-1]) == batches.steps_per_epoch(n, batch) == 5
    order = torch.cat(one)
    for step, parts in enumerate(zip(*shares)):
        assert torch.equal(torch.cat(parts), order[24 * step: 24 * (step + 1)])
        assert max(map(len, parts)) - min(map(len, parts)) <= 1 and min(map(len, parts)) > 0
    monkeypatch.setattr(batches, "world", lambda: World(2, size))
    few = batches.minibatches(25, batch, 0, 1, torch.device("cpu"))   # 24 + 1 point
    assert [len(b) for b in few] == [8] and batches.steps_per_epoch(25, batch) == 1


@pytest.fixture
def group_of_one():
    """A process group of this process alone, as torchrun --nproc_per_node 1 makes."""
    store = dist.HashStore()
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_an_estimator_without_a_differentiable_loss_is_refused_in_one_line(group_of_one):
    with pytest.raises(UserError, match=r"^--elbo tracegraph cannot train under torchrun: "
                                        r"TraceGraph_ELBO .* one of trace, meanfield"):
        distributed.check_training(Config(elbo="tracegraph"), ELBOS["tracegraph"](), 100)
    for name in ("trace", "meanfield", "enum", "iwae", "renyi", "tail-adaptive",
                 "score-function", "stl", "dreg"):
        distributed.check_training(Config(elbo=name), ELBOS[name](), 100)


def test_fewer_training_points_than_ranks_are_refused(group_of_one, monkeypatch):
    monkeypatch.setattr(distributed, "world", lambda: World(0, 4))
    distributed.check_training(Config(), ELBOS["trace"](), 4)
    with pytest.raises(UserError, match="^3 training points cannot be shared among 4 ranks"):
        distributed.check_training(Config(), ELBOS["trace"](), 3)


def run_ranks(args, size=2, **popen):
    """``torchrun --standalone`` with ``size`` ranks of ``python -m experiments.train``."""
    return subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone",
                             "--nproc_per_node", str(size), "-m", "experiments.train", *args],
                            env=loopback_env(), cwd=ROOT, stderr=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, **popen)


def flags(**settings):
    return [arg for key, value in settings.items() for arg in
            (f"--{key.replace('_', '-')}", ",".join(map(str, value)) if isinstance(value, tuple)
             else str(value)) if value is not False] + ["--no-progress"]


@pytest.mark.slow
def test_two_ranks_resume_one_process_and_reach_its_test_elbo(tmp_path):
    """A checkpoint of one process resumes under 2 ranks of half the batch (the same global
    batch) and theirs in one process again; the 2-rank run ends within the 99% prediction
    interval of one-process runs of 4 seeds (Student's t with 3 degrees of freedom: 5.84)."""
    from experiments.training.end_to_end import run  # here: the ranks' processes need not load it
    config = Config(**QUICK, batch_size=40, epochs=1, out=str(tmp_path / "seed0"))
    run(config)
    shutil.copytree(tmp_path / "seed0", tmp_path / "ranks")
    job = run_ranks(["--resume", str(tmp_path / "ranks"), "--epochs", "4", "--batch-size",
                     "20", "--force", "--no-progress"])
    finals = [run(config.replace(epochs=4), resume=tmp_path / "seed0").summary["test_elbo"]]
    finals += [run(config.replace(seed=s, epochs=4, out=str(tmp_path / f"seed{s}")))
               .summary["test_elbo"] for s in (1, 2, 3)]
    out, err = job.communicate(timeout=DEADLINE)
    assert job.returncode == 0, err
    summary = json.loads((tmp_path / "ranks" / "summary.json").read_text())
    assert (summary["world_size"], summary["batch_size"], summary["global_batch_size"]) == \
        (2, 20, 40)
    assert "2 processes (global batch 40)" in out
    mean = sum(finals) / 4
    spread = (sum((f - mean) ** 2 for f in finals) / 3) ** 0.5
    assert abs(summary["test_elbo"] - mean) <= 5.84 * spread * (1 + 1 / 4) ** 0.5
    # one process takes the 2 ranks' checkpoint over with their global batch, epoch 5 after
    # their 4
    resumed = run(Config.from_dict(json.loads((tmp_path / "ranks" / "config.json").read_text()))
                  .replace(epochs=5, batch_size=40, progress=False), resume=tmp_path / "ranks")
    assert [row["epoch"] for row in resumed.metrics] == [1, 2, 3, 4, 5]
    assert resumed.summary["world_size"] == 1


@pytest.mark.slow
def test_a_two_rank_run_resumed_in_one_process_keeps_its_global_batch_or_is_refused(
        tmp_path, capsys):
    """Resumed by one process with the --batch-size of each of its 2 ranks, the global batch
    would halve (40 → 20): refused in one line naming the --batch-size that keeps it."""
    from experiments import train
    out = tmp_path / "ranks"
    job = run_ranks(flags(**{k: v for k, v in QUICK.items() if k != "progress"}, epochs=1,
                          batch_size=20, out=out))
    _, err = job.communicate(timeout=DEADLINE)
    assert job.returncode == 0, err
    assert train.main(["--resume", str(out), "--epochs", "2", "--no-progress"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: --resume {out}: the run trained with a global batch of 40 (2 process(es) × "
        "--batch-size 20); 1 process(es) × 20 would make it 20: pass --batch-size 40 --force "
        "to keep it, or --force to continue with 20")
    assert train.main(["--resume", str(out), "--epochs", "2", "--batch-size", "40", "--force",
                       "--no-progress"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["world_size"], summary["global_batch_size"], summary["epochs"]) == (1, 40, 2)


def children(pid: int):
    """The processes ``pid`` started, and theirs (from the parent field of /proc/*/stat)."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    found, frontier = [], [pid]
    while frontier:
        frontier = [child for child, parent in parents.items() if parent in frontier]
        found += frontier
    return found


def rank_of(pid: int):
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    ranks = [e.split(b"=", 1)[1] for e in environ if e.startswith(b"RANK=")]
    return int(ranks[0]) if ranks else None


@pytest.mark.slow
def test_a_killed_rank_ends_the_job_with_one_line_naming_it(tmp_path):
    out = tmp_path / "run"
    job = run_ranks(flags(**QUICK, batch_size=20, epochs=10_000, out=out), start_new_session=True)
    try:
        deadline = time.time() + DEADLINE
        while not (out / "checkpoint.pt").exists() and time.time() < deadline:
            time.sleep(0.2)
        (victim,) = [p for p in children(job.pid) if rank_of(p) == 1]
        os.kill(victim, signal.SIGKILL)
        _, err = job.communicate(timeout=DEADLINE)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
    assert job.returncode != 0
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"error: rank 1 of 2 (process {victim}) died; rank 0 of 2 "
                               "stopped after ")
    assert f"continue with --resume {out} --epochs 10000" in lines[0]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["completed_epochs"] >= 1
    assert torch.load(out / "checkpoint.pt", weights_only=True)["epoch"] >= 1


@pytest.mark.slow
def test_sigterm_in_a_torchrun_job_stops_every_rank_after_the_same_step(group_of_one, tmp_path,
                                                                       monkeypatch, capsys):
    """Under torchrun a SIGTERM only asks to stop; the ranks agree on it with the step's loss
    and stop together after that step, keeping the checkpoint of the last finished epoch."""
    from experiments import train

    for name, value in dict(RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1",
                            MASTER_PORT=str(free_port())).items():
        monkeypatch.setenv(name, value)
    real_step, calls = distributed.DistributedSVI.step, {"n": 0, "after": None}

    def signalled(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 6 + 2:                        # epoch 2, step 2 (6 steps per epoch)
            os.kill(os.getpid(), signal.SIGTERM)       # handled: the step still runs
            loss = real_step(self, *args, **kwargs)
            calls["after"] = loss                      # never reached: the step raises
            return loss
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(distributed.DistributedSVI, "step", signalled)
    out = tmp_path / "run"
    assert train.main(flags(**QUICK, batch_size=40, epochs=3, out=out)) == 130
    assert calls == {"n": 8, "after": None}
    assert capsys.readouterr().err.strip() == (f"stopped: interrupted after 1 finished epoch(s); "
                                               f"continue with --resume {out} --epochs 3")
    assert json.loads((out / "summary.json").read_text())["status"] == "interrupted"
    assert torch.load(out / "checkpoint.pt", weights_only=True)["epoch"] == 1
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
