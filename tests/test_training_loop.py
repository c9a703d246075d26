"""The epoch loop's steps (``experiments.training.loop.training_steps``): which rows each step
gets, drawn as ``batches.minibatches`` says."""
import torch

from experiments.config.config import Config
from experiments.data.datasets import Dataset
from experiments.training import batches
from experiments.training.loop import training_steps


class _Steps:
    """An ``SVI`` stand-in that keeps what each step is given."""

    class model:
        takes_labels = False

    def __init__(self):
        self.given = []

    def step(self, x, index, num_data):
        self.given.append((x, index, num_data))
        return 1.0


def test_each_step_gets_the_rows_of_its_minibatch_of_the_epochs_order():
    """x = x_train[index] for the epoch's minibatches, in order, N beside them (x_train's
    rows are all different, so a wrong row or order shows)."""
    x_train = torch.arange(10 * 3, dtype=torch.float32).reshape(10, 3)
    data = Dataset("rows", x_train, x_train[:2])
    config = Config(batch_size=4, binarize="none", seed=5)
    svi = _Steps()
    estimator = type("Estimator", (), {"has_loss": False})()
    list(training_steps(svi, estimator, data, config, epoch=3))
    expected = batches.minibatches(10, 4, 5, 3, x_train.device)
    assert [len(i) for i, _ in zip(expected, svi.given)] == [4, 4, 2]
    for index, (x, given_index, num_data) in zip(expected, svi.given, strict=True):
        assert torch.equal(given_index, index) and num_data == 10
        assert torch.equal(x, x_train[index])
