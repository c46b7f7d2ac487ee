"""Condensation pictures: valid PNGs with matplotlib; a clear message (and a card that still renders) without."""

import sys

import pytest
import torch
from huggingface_hub import ModelCard

from ko_hf import KOTrainer, KOTrainingArguments
from ko_hf.card.plots import (
    comparison_series,
    neuron_order,
    plot_condensation_comparison,
    plot_condensation_curves,
    plot_similarity_heatmaps,
)

from tiny import tiny_bert, tiny_dataset

Image = pytest.importorskip("PIL.Image")


def assert_png(path, min_side=300):
    assert path.exists()
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert min(image.size) >= min_side


def planted_blocks(n=64, d=32, blocks=4, seed=0):
    gen = torch.Generator().manual_seed(seed)
    centres = torch.randn(blocks, d, generator=gen)
    assignment = torch.randint(blocks, (n,), generator=gen)
    return centres[assignment] + 0.3 * torch.randn(n, d, generator=gen), assignment


def history(steps=10, targets=("classifier.weight", "bert.pooler.dense.weight"), scale=1.0):
    out = []
    for step in range(0, steps + 1, 2):
        entry = {"step": step, "loss": 1.0}
        for i, name in enumerate(targets):
            entry[f"ko/{name}/weight_correlation"] = scale * (0.05 + 0.01 * step + i * 0.02)
            entry[f"ko/{name}/neuron_similarity"] = scale * (0.2 + 0.03 * step + i * 0.05)
        entry["ko/weight_correlation"] = sum(entry[f"ko/{n}/weight_correlation"] for n in targets) / len(targets)
        entry["ko/neuron_similarity"] = max(entry[f"ko/{n}/neuron_similarity"] for n in targets)
        out.append(entry)
        out.append({"step": step, "eval_loss": 1.0})  # entries without ko/ keys are skipped
    return out


# ------------------------------------------------------------------ with matplotlib


def test_heatmaps_are_png(tmp_path):
    pytest.importorskip("matplotlib")
    start = torch.randn(64, 32) * 0.02
    end, _ = planted_blocks()
    path = plot_similarity_heatmaps(start, end, tmp_path / "sub" / "heat.png", title="planted blocks")
    assert path == tmp_path / "sub" / "heat.png"
    assert_png(path)
    assert_png(plot_similarity_heatmaps(torch.randn(3, 8), torch.randn(3, 8), tmp_path / "three.png",
                                        neuron_labels=["a", "b", "c"]))
    assert_png(plot_similarity_heatmaps(torch.randn(2, 8), torch.randn(2, 8), tmp_path / "two.png"))


def test_heatmap_rejects_mismatched_shapes(tmp_path):
    pytest.importorskip("matplotlib")
    with pytest.raises(ValueError, match="differ in shape"):
        plot_similarity_heatmaps(torch.randn(4, 8), torch.randn(5, 8), tmp_path / "x.png")


def test_neuron_order_puts_planted_blocks_together():
    weight, assignment = planted_blocks()
    order = neuron_order(weight)
    assert sorted(order) == list(range(64))
    ordered = assignment[torch.tensor(order)].tolist()
    changes = sum(a != b for a, b in zip(ordered, ordered[1:]))
    assert changes == len(set(ordered)) - 1  # each block is one contiguous run


def test_neuron_order_without_scipy(monkeypatch):
    for name in [m for m in sys.modules if m == "scipy" or m.startswith("scipy.")] + ["scipy"]:
        monkeypatch.setitem(sys.modules, name, None)
    weight, assignment = planted_blocks(blocks=2)
    order = neuron_order(weight)
    assert sorted(order) == list(range(64))
    ordered = assignment[torch.tensor(order)].tolist()
    assert sum(a != b for a, b in zip(ordered, ordered[1:])) == 1


def test_curves_and_comparison_are_png(tmp_path):
    pytest.importorskip("matplotlib")
    assert_png(plot_condensation_curves(history(), tmp_path / "curves.png"))
    assert_png(plot_condensation_curves(history(targets=("classifier.weight",)), tmp_path / "one.png"))
    assert_png(plot_condensation_curves([], tmp_path / "empty.png"))
    path = plot_condensation_comparison(
        {"AdamW": history(), "soft": history(scale=0.9), "hard": history(scale=1.3)}, tmp_path / "compare.png"
    )
    assert path == tmp_path / "compare.png"
    assert_png(path)
    with pytest.raises(ValueError):
        plot_condensation_comparison({}, tmp_path / "none.png")


def test_comparison_series_can_follow_one_layer():
    runs = {"adamw": [{"step": 2, "ko/weight_correlation": 0.2, "ko/classifier.weight/weight_correlation": 0.2}],
            "hard+pooler": [{"step": 2, "ko/weight_correlation": 0.3, "ko/classifier.weight/weight_correlation": 0.1,
                             "ko/pooler.weight/weight_correlation": 0.5}]}
    assert comparison_series(runs)["weight_correlation"] == {"adamw": ([2], [0.2]), "hard+pooler": ([2], [0.3])}
    by_layer = comparison_series(runs, layer="classifier.weight")
    assert by_layer["weight_correlation"] == {"adamw": ([2], [0.2]), "hard+pooler": ([2], [0.1])}
    assert by_layer["neuron_similarity"] == {"adamw": ([], []), "hard+pooler": ([], [])}


def test_comparison_series_of_single_target_runs_reads_the_target():
    """With one target KOTrainer logs no aggregate (it would repeat the target's value): the series reads it."""
    runs = {"adamw": [{"step": 2, "ko/classifier.weight/weight_correlation": 0.2}, {"step": 3, "loss": 1.0}],
            "hard": [{"step": 2, "ko/classifier.weight/weight_correlation": 0.1,
                      "ko/classifier.weight/neuron_similarity": 0.4}]}
    series = comparison_series(runs)
    assert series["weight_correlation"] == {"adamw": ([2], [0.2]), "hard": ([2], [0.1])}
    assert series["neuron_similarity"] == {"adamw": ([], []), "hard": ([2], [0.4])}


def tiny_run(out_dir, **overrides):
    args = KOTrainingArguments(
        output_dir=str(out_dir), use_cpu=True, per_device_train_batch_size=8, learning_rate=2e-3, max_steps=6,
        logging_steps=2, save_strategy="no", report_to="none", disable_tqdm=True, seed=7, collision="hard",
        **overrides,
    )
    trainer = KOTrainer(model=tiny_bert(), args=args, train_dataset=tiny_dataset())
    trainer.train()
    return trainer


def test_trainer_writes_pictures_next_to_the_model_and_links_them(tmp_path):
    pytest.importorskip("matplotlib")
    trainer = tiny_run(tmp_path / "out")
    trainer.create_model_card()
    out = tmp_path / "out"
    assert_png(out / "ko_similarity_classifier.png")
    assert_png(out / "ko_condensation.png")
    text = (out / "README.md").read_text()
    assert "](ko_similarity_classifier.png)" in text and "](ko_condensation.png)" in text
    assert str(out) not in text.split("## How to reproduce")[0]  # relative links only


def test_plots_can_be_switched_off(tmp_path):
    trainer = tiny_run(tmp_path / "out")
    trainer.create_model_card(plots=False)
    assert not list((tmp_path / "out").glob("*.png"))
    assert ".png)" not in (tmp_path / "out" / "README.md").read_text()


# ------------------------------------------------------------------ without matplotlib


@pytest.fixture
def no_matplotlib(monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)


def test_plots_without_matplotlib_say_how_to_install(tmp_path, no_matplotlib):
    with pytest.raises(ImportError, match=r'pip install "ko-hf\[plots\]"'):
        plot_similarity_heatmaps(torch.randn(4, 8), torch.randn(4, 8), tmp_path / "x.png")
    with pytest.raises(ImportError, match=r'pip install "ko-hf\[plots\]"'):
        plot_condensation_curves(history(), tmp_path / "x.png")
    with pytest.raises(ImportError, match=r'pip install "ko-hf\[plots\]"'):
        plot_condensation_comparison({"a": history()}, tmp_path / "x.png")


def test_card_without_matplotlib_still_renders_and_says_how_to_get_pictures(tmp_path, no_matplotlib):
    trainer = tiny_run(tmp_path / "out")
    trainer.create_model_card()
    out = tmp_path / "out"
    card = ModelCard.load(out / "README.md")
    assert 'pip install "ko-hf[plots]"' in card.text
    assert ".png)" not in card.text
    assert not list(out.glob("*.png"))
    assert "collision-hard" in card.data.tags


# ------------------------------------------------------------------ y range, labels


@pytest.fixture
def drawn_axes(monkeypatch):
    """The y limits of every panel each plot function drew (read before the figure is cleared)."""
    import ko_hf.card.plots as plots

    limits = []
    finish = plots._finish

    def capture(fig, path):
        limits.append([axis.get_ylim() for axis in fig.axes if axis.get_label() != "<colorbar>"])
        return finish(fig, path)

    monkeypatch.setattr(plots, "_finish", capture)
    return limits


def flat_history(start, change, steps=10):
    return [{"step": s, "ko/classifier.weight/weight_correlation": start + change * s / steps,
             "ko/classifier.weight/neuron_similarity": 2 * start + change * s / steps,
             "ko/weight_correlation": start + change * s / steps,
             "ko/neuron_similarity": 2 * start + change * s / steps} for s in range(0, steps + 1, 2)]


def test_curves_do_not_magnify_noise(tmp_path, drawn_axes):
    """A change of 0.00003 filled the whole panel (auto-scaled y axis): it looked like a cliff."""
    pytest.importorskip("matplotlib")
    min_span = 0.05  # ko_hf.card.plots.CURVE_MIN_SPAN: about 5 times the seed-to-seed noise of a head's correlation

    plot_condensation_curves(flat_history(0.0599, 0.00003), tmp_path / "noise.png")
    plot_condensation_comparison({"a": flat_history(0.0599, 0.00003), "b": flat_history(0.05991, 0.00002)},
                                 tmp_path / "noise-compare.png")
    assert len(drawn_axes) == 2
    for panels in drawn_axes:  # (weight correlation, neuron similarity): each holds its data, at least 0.05 wide
        for (low, high), value in zip(panels, (0.0599, 0.1198)):
            assert high - low >= min_span - 1e-12 and 0.0 <= low < value < high <= 1.0
    drawn_axes.clear()
    plot_condensation_curves(flat_history(0.05, 0.4), tmp_path / "real.png")  # a real change still fills it
    (low, high), _ = drawn_axes[0]
    assert 0.4 <= high - low <= 0.5 and low <= 0.05 and high >= 0.45


def test_condensation_ylim():
    from ko_hf.card.plots import condensation_ylim

    assert condensation_ylim([0.06, 0.06003]) == pytest.approx((0.035015, 0.085015))
    assert condensation_ylim([0.001, 0.002]) == pytest.approx((0.0, 0.05))  # kept inside [0, 1]
    assert condensation_ylim([0.99, 0.995]) == pytest.approx((0.95, 1.0))
    assert condensation_ylim([0.1, 0.6]) == pytest.approx((0.075, 0.625))
    assert condensation_ylim([]) == (0.0, 1.0)


def test_labels_with_dollar_signs_and_newlines_are_drawn_as_written(tmp_path):
    """A label like "$\\bad{$" made matplotlib's mathtext raise at save time."""
    pytest.importorskip("matplotlib")
    labels = ["$\\bad{$", "cost: $5\nper item", "a_b"]
    assert_png(plot_similarity_heatmaps(torch.randn(3, 8), torch.randn(3, 8), tmp_path / "heat.png",
                                        title="head $\\notacommand$", neuron_labels=labels))
    assert_png(plot_condensation_comparison({"$\\bad{$ run": history()}, tmp_path / "compare.png", title="$x"))
