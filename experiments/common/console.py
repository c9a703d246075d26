"""What a run says on the console beside its progress bars: ``log``, one line at a time."""
import sys

from tqdm import tqdm

from experiments.common.ranks import leader


def log(config, message: str, force: bool = False) -> None:
    """A line on stderr beside the progress bars, unless ``--no-progress`` (``config.progress``
    off, where ``config`` is a run's settings) or ``force``; in a torchrun job, rank 0's only."""
    if (config.progress or force) and leader():
        tqdm.write(message, file=sys.stderr)
