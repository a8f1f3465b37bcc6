"""The figure checker of tools/figures.py (applied to every example's figures by
tests/test_examples.py) finds each problem it claims to find, and passes a readable figure."""
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

plt = pytest.importorskip("matplotlib.pyplot")
ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("tools_figures", ROOT / "tools" / "figures.py")
figures = sys.modules["tools_figures"] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(figures)


@pytest.fixture
def fig():
    f = plt.figure(figsize=(8, 3.5), layout="constrained")
    yield f
    plt.close(f)


def readable(fig):
    ax, im_ax = fig.subplots(1, 2)
    x = np.linspace(0, 1, 50)
    ax.plot(x, x ** 2, label="x²")
    ax.set(xlabel="x (m)", ylabel="area (m²)", title="a square")
    ax.legend(loc="upper left")                                  # the curve is low on the left
    im = im_ax.imshow(np.eye(3), cmap="RdBu_r", vmin=-1, vmax=1)
    im_ax.set_title("identity")
    fig.colorbar(im, ax=im_ax, label="entry")
    return ax, im_ax


def test_a_readable_figure_passes(fig):
    readable(fig)
    assert figures.problems(fig) == []


def test_missing_labels_title_and_colorbar(fig):
    ax, im_ax = fig.subplots(1, 2)
    ax.plot([0, 1], [0, 1])
    im_ax.imshow(np.eye(3))
    found = figures.problems(fig)
    assert any("no x label" in p for p in found) and any("no y label" in p for p in found)
    assert any("no title" in p for p in found)
    assert any("without a colorbar" in p for p in found)


def test_legend_over_the_data(fig):
    ax, _ = readable(fig)
    ax.get_legend().remove()
    ax.plot(np.linspace(0, 0.3, 30), np.full(30, 0.97), label="high on the left")
    ax.legend(loc="upper left")
    assert any("legend covers" in p for p in figures.problems(fig))


def test_twin_axis(fig):
    ax, _ = readable(fig)
    twin = ax.twinx()
    twin.plot([0, 1], [5, 3])
    twin.set_ylabel("other")
    assert any("twin axis" in p for p in figures.problems(fig))


def test_tiny_and_overlapping_text(fig):
    ax, _ = readable(fig)
    ax.get_legend().remove()
    ax.legend(fontsize=5, loc="upper left")
    ax.set_xticks(np.linspace(0, 1, 60))
    found = figures.problems(fig)
    assert any("smaller than 7 pt" in p for p in found)
    assert any("overlapping text" in p for p in found)
