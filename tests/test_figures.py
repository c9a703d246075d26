"""Figures that read right: each quantity keeps its colour, legends sit beside the curves, a
posterior's two axes share one scale, log-scale variances are dots (a bar's length on a log
axis misstates ratios), and no mixture component takes the true density's colour."""
import matplotlib.pyplot as plt
import pytest
import torch
from matplotlib.colors import to_rgba

from experiments.figures import common, comparison, lvm
from experiments.figures.mixture import TRUTH_COLOR, component_color
from experiments.parts.build import build


@pytest.fixture
def drawn(monkeypatch):
    """The figures the code under test saves, kept open instead of written."""
    figures = []

    def keep(fig, path):
        figures.append(fig)
        return path

    for module in (common, comparison, lvm):
        monkeypatch.setattr(module, "save_figure", keep)
    yield figures
    plt.close("all")


def _bounds_rows(kl: bool):
    return [{"epoch": e, "test_elbo": -3.0 + 0.1 * e, "test_iwae": -2.5, "test_gap": 0.5,
             "test_exact_log_likelihood": -2.4, **({"test_posterior_kl": 0.4} if kl else {})}
            for e in range(1, 6)]


def test_the_bounds_figure_keeps_each_quantitys_colour_and_its_legends_beside_the_curves(drawn):
    colours = []
    for kl in (True, False):        # the mixture has the exact KL, the nonlinear model not
        common.plot_bounds(_bounds_rows(kl), "bounds.png", ceiling=-2.0)
        fig = drawn[-1]
        colours.append({line.get_label(): line.get_color() for ax in fig.axes
                        for line in ax.get_lines() if not line.get_label().startswith("_")})
        fig.canvas.draw()
        for ax in fig.axes:
            assert ax.get_legend().get_window_extent().x0 >= ax.get_window_extent().x1
    with_kl, without = colours
    assert {k: v for k, v in with_kl.items() if k in without} == without
    assert without["log p(x) − IWAE"] == with_kl["log p(x) − IWAE"] == "tab:green"


@pytest.mark.parametrize("latent_dim", [1, 2])
def test_posterior_panels_use_one_scale_for_both_axes_of_z(drawn, latent_dim):
    parts = build("lvm", "normal", "trace", data_dim=2, latent_dim=latent_dim, hidden_dims=(8,))
    lvm.plot_posteriors(parts.model, parts.guide, torch.randn(3, 2), "posterior.png",
                        points=40)
    for ax in drawn[0].axes:
        if latent_dim == 2:
            (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
            assert ax.get_aspect() == 1.0
            assert x1 - x0 == pytest.approx(y1 - y0, rel=1e-6)


def test_gradient_variances_are_dots_at_their_values_on_a_log_axis_not_bars(drawn):
    rows = [{"label": "a", "grad_var_guide_init": 7.7e6, "grad_var_guide": 7.2e6,
             "grad_var_model_init": 1e3, "grad_var_model": 2e9},
            {"label": "enum", "grad_var_guide_init": 0.0, "grad_var_guide": 0.0,
             "grad_var_model_init": 0.0, "grad_var_model": 0.0}]
    comparison.plot_gradient_variance(rows, "gradient_variance.png")
    for ax, group in zip(drawn[0].axes, ("guide", "model")):
        assert ax.get_yscale() == "log" and not ax.patches       # no bars
        values = sorted(y for line in ax.get_lines() for y in line.get_ydata())
        assert values == sorted([rows[0][f"grad_var_{group}_init"], rows[0][f"grad_var_{group}"]])
        assert "0: exact" in [t.get_text() for t in ax.texts]


def test_no_mixture_component_takes_the_colour_of_the_true_density_or_the_data():
    taken = {to_rgba(TRUTH_COLOR), to_rgba("tab:gray")}
    colours = [to_rgba(component_color(n)) for n in range(12)]
    assert not taken & set(colours)
    assert len(set(colours[:8])) == 8
