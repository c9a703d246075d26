"""An experiment, not part of ``make bench``: the recorded training step fused by Inductor.

    python -m benchmarks.inductor [--threads N] [--rounds R]

The default run (``vae``/``normal``/``trace``, 784-400-20, batch 128, 1,408 of the bundled
digits upsampled to 28×28: one minibatch shape) trains one epoch, so that its step is recorded;
the recorded program (an ``fx`` ``GraphModule`` of ATen operations: θ, x, index → loss and
∂loss/∂θ) is then compiled by ``torch._inductor.compile_fx`` with ``fallback_random`` on (random
numbers drawn by the same eager kernels, so that the draws can agree with Pyro's step) and its
persistent FX graph cache. Printed: the compile time, whether the compiled program's outputs
equal the replay's bit for bit from the same random state (and the largest difference relative
to each output's size), and the program's time per step, replay against compiled, in turns
(``benchmarks.timing``), as seconds per epoch. The optimizer's update is the same for both and
left out.
"""
import argparse
import collections
import math
import time
from typing import Callable, List, Optional

import pyro
import torch

from benchmarks.run import default_data
from benchmarks.timing import alternate, format_ratio
from experiments.config.config import Config
from experiments.parts.build import build_parts
from experiments.training.loop import stepper, training_steps
from experiments.training.optim import adam
from experiments.training.prepare import prepare_data


def recorded_program(config: Config):
    """(the recorded program, its inputs at the last step of epoch 1, steps per epoch)."""
    data = prepare_data(config, torch.device("cpu"))
    pyro.set_rng_seed(config.seed)
    parts = build_parts(config, data.data_dim, len(data.x_train), data.x_train.device)
    svi = stepper(parts, adam(config.lr), config)
    last = {}
    step = svi.step

    def watched_step(*args, **kwargs):
        last["tensors"] = [a for a in args if torch.is_tensor(a)] + [
            kwargs[k] for k in sorted(kwargs) if torch.is_tensor(kwargs[k])]
        return step(*args, **kwargs)

    svi.step = watched_step
    with pyro.validation_enabled(False):
        collections.deque(training_steps(svi, parts.elbo, data, config, 1), maxlen=0)
    (program,) = svi.replays.values()          # one minibatch shape: one program
    inputs = list(program.params) + last["tensors"]
    return program.program, inputs, math.ceil(len(data.x_train) / config.batch_size)


def compare_outputs(first: Callable, second: Callable, inputs: List[torch.Tensor]) -> List[str]:
    """Each output of ``first`` against ``second``'s from the same random state."""
    state = torch.get_rng_state()
    with torch.no_grad():
        a = first(*inputs)
        torch.set_rng_state(state)
        b = second(*inputs)
    return [f"output {i} {tuple(x.shape)}: {'equal' if torch.equal(x, y) else 'differs'}, "
            f"largest |difference| / largest |value| = "
            f"{((x - y).abs().max() / x.abs().max().clamp_min(1e-30)).item():.2g}"
            for i, (x, y) in enumerate(zip(a, b))]


def main(argv: Optional[List[str]] = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.inductor", description=__doc__)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=10)
    args = p.parse_args(argv)
    import torch._inductor.config as inductor_config
    from torch._inductor.compile_fx import compile_fx

    inductor_config.fallback_random = True
    torch.set_num_threads(args.threads)
    config = Config(data=default_data("data"), latent_dim=20, hidden_dims=(400,), lr=1e-3,
                    batch_size=128, num_train=11 * 128, progress=False).validate()
    program, inputs, steps = recorded_program(config)
    start = time.perf_counter()
    with torch.no_grad():
        compiled = compile_fx(program, inputs)
    print(f"{len(program.graph.nodes)} nodes; compiled in {time.perf_counter() - start:.1f} s")
    print("\n".join(compare_outputs(program, compiled, inputs)))

    def five(f: Callable) -> Callable:
        def call():
            with torch.no_grad():
                for _ in range(5):
                    f(*inputs)
        return call

    timings = alternate({"replay": five(program), "inductor": five(compiled)}, args.rounds)
    for name in timings.seconds:
        print(f"{name}: {timings.median(name) / 5 * steps:.3f} s per epoch ({steps} steps)")
    print(f"inductor / replay: {format_ratio(timings.ratio('inductor', 'replay'))}")


if __name__ == "__main__":
    main()
