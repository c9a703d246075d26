"""Convolutional encoders and decoders on flat image vectors, and what ``network="mlp"`` keeps."""
import math

import pyro
import pytest
import torch

from experiments.parts.build import build
from experiments.common.errors import UserError
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
