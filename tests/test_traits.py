"""What a model declares it can do (its traits) is true of it, and the figures and diagnostics
read the traits, not the model's name."""
import pytest
import torch

from experiments.config.config import Config
from experiments.parts.build import build_model
from experiments.training.end_to_end import run
from models import MODELS

#: trait → the attributes a model that declares it must have
PROMISES = {
    "has_exact_log_likelihood": ("exact_log_likelihood",),
    "has_exact_posterior": ("exact_posterior",),
    "has_decoder": ("decode", "ancestral_means"),
    "starts_from_clusters": ("set_from_clusters", "components"),
    "mixture_of_gaussians": ("weights", "locs", "scales", "log_joint"),
    "takes_labels": ("num_classes", "decode"),
    "conditional": ("split", "fit_baseline", "baseline_log_likelihood", "predict",
                    "baseline_completion"),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_every_trait_a_model_declares_holds_and_none_it_lacks_is_offered(name):
    model = build_model(name, data_dim=2, latent_dim=2, hidden_dims=(8,), components=3)
    for trait, attributes in PROMISES.items():
        assert all(hasattr(model, a) for a in attributes) == getattr(model, trait), trait
    x = torch.randn(5, 2)
    if model.has_exact_log_likelihood:
        log_px = model.exact_log_likelihood(x)
        assert log_px.shape == (5,) and torch.isfinite(log_px).all()
    if model.has_decoder:
        assert model.ancestral_means(x, 3).shape == (3, 2)


def test_a_discrete_vae_run_on_images_draws_reconstructions_samples_and_its_codes(tmp_path):
    """Figures follow the traits: the discrete-vae has a decoder, so on the digits it draws
    what the vae draws but the manifold (its z is not a point of R²)."""
    result = run(Config(model="discrete-vae", guide="categorical", elbo="trace", epochs=1,
                        num_train=200, num_test=50, hidden_dims=(32,), iwae_samples=10,
                        progress=False, out=str(tmp_path / "run")))
    drawn = {p.name for p in result.run_dir.glob("*.png")}
    assert drawn == {"elbo.png", "reconstructions.png", "samples.png", "latent.png"}
    for name in drawn:
        assert (result.run_dir / name).read_bytes()[:4] == b"\x89PNG"
