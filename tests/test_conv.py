"""Convolutional encoders and decoders on flat image vectors, and what ``network="mlp"`` keeps."""
import math

import matplotlib.pyplot as plt
import numpy as np
import pyro
import pytest
import torch

from experiments import train
from experiments.common.errors import UserError
from experiments.config.config import Config
from experiments.data.datasets import load_dataset
from experiments.figures.images import _image_grid
from experiments.parts.build import build
from experiments.parts.compatibility import check_combination, matrix
from experiments.training.end_to_end import run
from guides import GUIDES
from models import MODELS
from models.networks import ConvDecoder, ConvEncoder, make_network

SHAPES = [(1, 8, 8), (1, 28, 28), (3, 32, 32), (3, 7, 9)]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_encoder_and_decoder_map_flat_images_of_any_size(shape):
    size = math.prod(shape)
    encoder = make_network(size, (16,), 6, "conv", shape)
    decoder = make_network(5, (16,), size, "conv", shape)
    assert isinstance(encoder, ConvEncoder) and isinstance(decoder, ConvDecoder)
    x = torch.rand(4, size)
    assert encoder(x).shape == (4, 6)
    assert encoder(x.expand(2, 4, size)).shape == (2, 4, 6)      # vectorized particles
    assert decoder(torch.randn(4, 5)).shape == (4, size)
    assert decoder(torch.randn(3, 4, 5)).shape == (3, 4, size)


def test_the_encoder_reads_flat_vectors_channels_first():
    """One value of x changed, at channel 1, row 6, column 8 of a (3, 7, 9) image in (C, H, W)
    order: the first convolution's output moves only where its 3×3 stride-2 windows cover that
    pixel, the bottom-right corner (3, 4); read in another order, elsewhere."""
    shape = (3, 7, 9)
    encoder = make_network(math.prod(shape), (8,), 2, "conv", shape)
    seen = []
    encoder.convs[0].register_forward_hook(lambda module, inputs, out: seen.append(out))
    x = torch.rand(1, math.prod(shape))
    changed = x.clone()
    changed[0, 1 * 63 + 6 * 9 + 8] += 1.0
    encoder(x), encoder(changed)
    moved = (seen[1] - seen[0]).abs().amax(dim=(0, 1)) > 0                # (4, 5) locations
    assert moved.nonzero().tolist() == [[3, 4]]


def test_a_conv_network_needs_an_image_shape_that_fits():
    with pytest.raises(ValueError, match="no image shape") as info:
        MODELS["vae"](data_dim=64, network="conv")
    assert str(info.value).count(". ") == 0 and "\n" not in str(info.value)
    with pytest.raises(ValueError, match="maps 5 to 60"):
        make_network(5, (8,), 60, "conv", (1, 8, 8))
    with pytest.raises(ValueError, match="unknown network 'resnet'"):
        make_network(5, (8,), 64, "resnet")
    with pytest.raises(UserError, match="^--model vae: the conv network needs image data"):
        build("vae", "normal", "trace", data_dim=64, network="conv")


def test_guides_build_the_network_of_their_model():
    shape = (1, 6, 6)
    model = MODELS["discrete-vae"](data_dim=36, latent_dim=2, categories=3, hidden_dims=(8,),
                                   network="conv", image_shape=shape)
    guide = GUIDES["categorical"](model, hidden_dims=(8,))
    assert isinstance(model.decoder, ConvDecoder)
    assert isinstance(guide.encoder, ConvEncoder) and isinstance(guide.baseline, ConvEncoder)
    hvae = MODELS["hvae"](data_dim=36, latent_dims=(3, 2), hidden_dims=(8,), network="conv",
                          image_shape=shape)
    assert isinstance(GUIDES["chain"](hvae, hidden_dims=(8,)).encoder, ConvEncoder)


def test_a_conv_vae_trains_on_colour_images():
    """Binary (N, 3, 6, 10) images flattened to (N, 180): each image one of two random
    patterns with 5% of its pixels flipped. Twenty Adam steps lower the mean loss of the last
    five steps below that of the first five by over 10% (a model that did not learn would stay
    at the start's ~125 nats per image)."""
    generator = torch.Generator().manual_seed(0)
    patterns = torch.rand(2, 3, 6, 10, generator=generator).round()
    x = patterns[torch.arange(32) % 2]
    x = (x + (torch.rand(x.shape, generator=generator) < 0.05)).remainder(2).flatten(1)
    parts = build("vae", "normal", "trace", data_dim=180, latent_dim=2, hidden_dims=(16,),
                  network="conv", image_shape=(3, 6, 10))
    svi = pyro.infer.SVI(parts.model, parts.guide, pyro.optim.Adam({"lr": 1e-2}), parts.elbo)
    losses = [svi.step(x) / len(x) for _ in range(20)]
    assert all(math.isfinite(v) for v in losses)
    assert sum(losses[-5:]) < 0.9 * sum(losses[:5])


# Parameter names and shapes of networks built on main before convolutions existed: with the
# default network="mlp", checkpoints saved then load unchanged.
MAIN_KEYS = {
    "vae": {"decoder.0.weight": (16, 3), "decoder.0.bias": (16,), "decoder.2.weight": (8, 16),
            "decoder.2.bias": (8,), "decoder.4.weight": (12, 8), "decoder.4.bias": (12,),
            "likelihood.scale_unconstrained": ()},
    "normal": {"encoder.0.weight": (8, 12), "encoder.0.bias": (8,), "encoder.2.weight": (16, 8),
               "encoder.2.bias": (16,), "encoder.4.weight": (6, 16), "encoder.4.bias": (6,)},
    "discrete-vae": {"decoder.0.weight": (16, 6), "decoder.0.bias": (16,),
                     "decoder.2.weight": (12, 16), "decoder.2.bias": (12,)},
    "categorical": {"encoder.0.weight": (16, 12), "encoder.0.bias": (16,),
                    "encoder.2.weight": (6, 16), "encoder.2.bias": (6,),
                    "baseline.0.weight": (16, 12), "baseline.0.bias": (16,),
                    "baseline.2.weight": (1, 16), "baseline.2.bias": (1,)},
}


def test_mlp_networks_keep_their_parameter_names():
    vae = MODELS["vae"](data_dim=12, latent_dim=3, hidden_dims=(16, 8), likelihood="gaussian")
    discrete = MODELS["discrete-vae"](data_dim=12, latent_dim=2, categories=3, hidden_dims=(16,))
    built = {"vae": vae, "normal": GUIDES["normal"](vae, hidden_dims=(16, 8)),
             "discrete-vae": discrete, "categorical": GUIDES["categorical"](discrete, (16,))}
    for name, module in built.items():
        state = module.state_dict()
        assert {k: tuple(v.shape) for k, v in state.items()} == MAIN_KEYS[name], name
        saved = {k: torch.randn(shape) for k, shape in MAIN_KEYS[name].items()}
        module.load_state_dict(saved)                                     # strict
        assert all(torch.equal(module.state_dict()[k], v) for k, v in saved.items())


# --- image data and --network on the command line ------------------------------------------

def colour_patterns(n: int = 40, shape=(3, 6, 10)) -> np.ndarray:
    """(n, C, H, W) uint8 images, each one of two random binary patterns with 5% of its
    pixels flipped."""
    rng = np.random.default_rng(0)
    patterns = rng.integers(0, 2, size=(2, *shape))
    flips = rng.random((n, *shape)) < 0.05
    return ((patterns[np.arange(n) % 2] ^ flips) * 255).astype(np.uint8)


def test_mosaics_keep_each_pixel_and_channel_in_place():
    """2 × 3 tiles of (C, H, W) images: RGB pixels land at (r·(H+1) + i, c·(W+1) + j), grey
    gaps between tiles; one channel gives a grey image, two channels sit side by side."""
    images = np.random.default_rng(1).random((6, 3, 2, 4))
    mosaic = _image_grid(images.reshape(6, -1), 2, 3, (3, 2, 4))
    assert mosaic.shape == (2 * 3 - 1, 3 * 5 - 1, 3)
    for r, c, i, j in [(0, 0, 0, 0), (1, 2, 1, 3), (0, 1, 1, 2)]:
        assert np.array_equal(mosaic[r * 3 + i, c * 5 + j], images[r * 3 + c, :, i, j])
    assert (mosaic[2] == 0.5).all() and (mosaic[:, 4] == 0.5).all()
    grey = _image_grid(images[:, 0].reshape(6, -1), 2, 3, (1, 2, 4))
    assert grey.shape == (5, 14) and grey[3 + 1, 5 * 2 + 3] == images[5, 0, 1, 3]
    pairs = _image_grid(images[:, :2].reshape(6, -1), 2, 3, (2, 2, 4))
    assert pairs.shape == (5, 3 * 9 - 1) and pairs[0, 4 + 1] == images[0, 1, 0, 1]


def test_a_conv_vae_runs_end_to_end_on_a_colour_npz(tmp_path):
    """A (N, 3, 6, 10) file: its shape is kept as (C, H, W), the conv vae trains on it, and the
    figures are drawn in colour."""
    np.savez(tmp_path / "colour.npz", x=colour_patterns())
    data = load_dataset(str(tmp_path / "colour.npz"))
    assert data.image_shape == (3, 6, 10) and data.data_dim == 180
    result = run(Config(data=str(tmp_path / "colour.npz"), network="conv", epochs=2,
                        hidden_dims=(16,), batch_size=8, iwae_samples=10, progress=False,
                        pyro_validation=True, out=str(tmp_path / "run")))
    assert isinstance(result.parts.model.decoder, ConvDecoder)
    assert isinstance(result.parts.guide.encoder, ConvEncoder)
    assert math.isfinite(result.summary["test_iwae"])
    for name in ("reconstructions.png", "samples.png", "manifold.png"):
        image = plt.imread(result.run_dir / name)
        assert image.ndim == 3 and image.shape[-1] in (3, 4)
        assert not np.allclose(image[..., 0], image[..., 1])    # colour, not grey: R ≠ G


def test_network_is_refused_in_one_line_where_no_model_network_reads_images(capsys, tmp_path):
    argv = ["--epochs", "1", "--num-train", "50", "--no-progress", "--out", str(tmp_path / "r")]
    assert train.main(argv + ["--model", "gmm", "--guide", "enum", "--elbo", "enum",
                              "--network", "conv"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: --network conv: the gmm model's networks are MLPs only; --network "
                   "applies to vae, hvae, discrete-vae"]
    assert train.main(argv + ["--network", "conv", "--data", "moons", "--likelihood",
                              "gaussian"]) == 2
    assert "the conv network needs image data" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_the_compatibility_probe_builds_mlps_whatever_the_network():
    conv = matrix(**Config(network="conv").part_options())
    assert conv == matrix(**Config().part_options())
    check_combination("hvae", "chain", "trace", network="conv", image_shape=(3, 6, 10))
