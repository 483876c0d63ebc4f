"""plots: each PNG is written, is a real image of a sensible size, and bad shapes give clear errors."""
from __future__ import annotations

import numpy as np
import pytest

from fer_ros import plots
from fer_ros.classes import CKPLUS7, CKPLUS8


def _png_shape(path):
    import matplotlib.image as mpimg
    img = mpimg.imread(str(path))
    return img.shape


def test_confusion_matrix_png(tmp_path):
    cm = np.array([[5, 1, 0], [0, 0, 0], [2, 0, 7]])
    out = plots.plot_confusion_matrix(cm, ["anger", "happy", "surprise"], tmp_path / "sub" / "cm.png", title="t")
    assert out.exists() and out.stat().st_size > 2000
    h, w = _png_shape(out)[:2]
    assert h > 150 and w > 150


def test_confusion_matrix_rectangular_and_shape_check(tmp_path):
    cm = np.eye(7, 8, dtype=int) * 3
    cm[0, 7] = 2
    out = plots.plot_confusion_matrix(cm, CKPLUS7, tmp_path / "cm78.png", pred_names=CKPLUS8)
    assert out.stat().st_size > 2000
    with pytest.raises(ValueError, match="does not match"):
        plots.plot_confusion_matrix(cm, CKPLUS7, tmp_path / "bad.png")


def test_confusion_matrix_faces_not_found_count_in_rows_and_title(tmp_path, monkeypatch):
    """3 happy (2 right, 1 not found) and 2 anger (both not found): 5 samples, accuracy 2/5, 3 not found."""
    figures = []
    save = plots._save
    monkeypatch.setattr(plots, "_save", lambda fig, path: (figures.append(fig), save(fig, path))[1])
    cm = np.array([[0, 0, 2], [0, 2, 1]])
    plots.plot_confusion_matrix(cm, ["anger", "happy"], tmp_path / "cm.png", title="t",
                                pred_names=["anger", "happy", "not found"], not_found="not found")
    ax = figures[0].axes[0]
    assert ax.get_title() == "t: 5 samples, accuracy 0.400 (3 not found, counted as wrong)"
    assert [t.get_text() for t in ax.get_yticklabels()] == ["anger (2)", "happy (3)"]


def test_training_curves_png(tmp_path):
    rows = [{"epoch": e, "train_loss": 2.0 / e, "val_loss": 2.2 / e, "train_acc": 0.2 * e, "val_acc": 0.15 * e,
             "lr": 1e-3 * 0.5 ** e, "note": "x"} for e in range(1, 5)]
    out = plots.plot_training_curves(rows, tmp_path / "curves.png", title="run")
    assert out.stat().st_size > 2000
    w = _png_shape(out)[1]
    assert w > 800  # three panels side by side
    with pytest.raises(ValueError):
        plots.plot_training_curves([], tmp_path / "none.png")
    with pytest.raises(ValueError, match="no loss"):
        plots.plot_training_curves([{"epoch": 1, "foo": 1.0}], tmp_path / "none.png")


def test_timeline_png(tmp_path):
    t = np.arange(20) / 10.0
    p = np.zeros((20, 8), np.float32)
    p[:10, 4] = 0.9
    p[10:, 6] = 0.8
    p += 0.01
    out = plots.plot_timeline(tmp_path / "timeline.png", {1: (t, p), 3: (t[:5], p[:5])}, CKPLUS8, title="bag")
    assert out.stat().st_size > 2000
    out = plots.plot_timeline(tmp_path / "empty.png", {}, CKPLUS8)
    assert out.stat().st_size > 1000
    with pytest.raises(ValueError, match="class names"):
        plots.plot_timeline(tmp_path / "bad.png", {1: (t, p)}, CKPLUS7)


def test_timeline_does_not_hold_a_label_or_join_lines_across_an_absence(tmp_path, monkeypatch):
    """A face seen for 0.2 s and again at 10 s: its strip and lines stop where it was absent."""
    figures = []
    save = plots._save
    monkeypatch.setattr(plots, "_save", lambda fig, path: (figures.append(fig), save(fig, path))[1])
    t = np.array([0.0, 0.1, 0.2, 10.0, 10.1, 10.2])
    p = np.full((6, 8), 0.01, np.float32)
    p[:3, CKPLUS8.index("happy")] = 0.9
    p[3:, CKPLUS8.index("sadness")] = 0.9
    plots.plot_timeline(tmp_path / "timeline.png", {1: (t, p)}, CKPLUS8)
    ax = figures[0].axes[0]
    to_data = ax.transData.inverted()
    spans = sorted(tuple(to_data.transform(s.get_window_extent())[:, 0]) for s in ax.patches)
    np.testing.assert_allclose(spans, [(0.0, 0.1), (0.1, 0.2), (0.2, 0.4), (10.0, 10.1), (10.1, 10.2), (10.2, 10.3)],
                               atol=1e-6)
    for line in ax.lines:  # one break between 0.2 s and 10 s
        x = np.asarray(line.get_xdata(), np.float64)
        assert np.isnan(x).sum() == 1 and x[np.flatnonzero(np.isnan(x))[0] - 1] == pytest.approx(0.2)


def test_remove_plots_removes_the_named_pngs_that_exist_and_only_those(tmp_path):
    for name in ("timeline.png", "other.png"):
        (tmp_path / name).write_bytes(b"png")
    plots.remove_plots(tmp_path, ["timeline.png", "confusion_matrix.png"])
    assert not (tmp_path / "timeline.png").exists() and (tmp_path / "other.png").exists()


def _saved_figures(monkeypatch) -> list:
    """The figures plots save from here on, in order."""
    figures = []
    save = plots._save
    monkeypatch.setattr(plots, "_save", lambda fig, path: (figures.append(fig), save(fig, path))[1])
    return figures


def test_a_plot_is_a_png_at_exactly_the_path_given_whatever_its_extension(tmp_path):
    for name in ("cm", "cm.plot"):
        out = plots.plot_confusion_matrix(np.eye(2, dtype=int), ["a", "b"], tmp_path / name)
        assert out == tmp_path / name and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cm", "cm.plot"]


def test_a_plot_that_cannot_be_written_leaves_no_figure_open(tmp_path):
    plt = plots._pyplot()
    plt.close("all")
    (tmp_path / "file").write_text("")
    with pytest.raises(OSError):
        plots.plot_confusion_matrix(np.eye(2, dtype=int), ["a", "b"], tmp_path / "file" / "cm.png")
    assert plt.get_fignums() == []


def test_a_timeline_that_is_refused_or_fails_leaves_no_figure_open(tmp_path, monkeypatch):
    plt = plots._pyplot()
    plt.close("all")
    t = np.arange(5) / 10.0
    p = np.full((5, 8), 0.125, np.float32)
    with pytest.raises(ValueError, match="8 scores but 7 class names"):
        plots.plot_timeline(tmp_path / "bad.png", {1: (t, p)}, CKPLUS7)
    assert plt.get_fignums() == []

    def no_legend(*args, **kwargs):
        raise RuntimeError("no renderer")
    monkeypatch.setattr(plots, "_add_legend", no_legend)
    with pytest.raises(RuntimeError, match="no renderer"):
        plots.plot_timeline(tmp_path / "timeline.png", {1: (t, p)}, CKPLUS8)
    assert plt.get_fignums() == [] and not (tmp_path / "timeline.png").exists()


def test_training_curves_number_the_rows_unless_every_epoch_is_a_number(tmp_path, monkeypatch):
    figures = _saved_figures(monkeypatch)
    for epochs in ([None, 2, 3], ["x", 2, 3], [1, 2, float("nan")]):
        plots.plot_training_curves([{"epoch": e, "loss": 1.0 / (i + 1)} for i, e in enumerate(epochs)],
                                   tmp_path / "curves.png")
        ax = figures[-1].axes[0]
        assert ax.get_xlabel() == "row" and list(ax.lines[0].get_xdata()) == [1, 2, 3], epochs
    plots.plot_training_curves([{"epoch": e, "loss": 1.0} for e in ("1", 2.5)], tmp_path / "curves.png")
    assert figures[-1].axes[0].get_xlabel() == "epoch"
    assert list(figures[-1].axes[0].lines[0].get_xdata()) == [1.0, 2.5]


def test_timeline_leaves_out_faces_without_points(tmp_path, monkeypatch):
    figures = _saved_figures(monkeypatch)
    t = np.arange(5) / 10.0
    tracks = {1: (np.zeros(0), np.zeros((0, 8))), 2: (t, np.full((5, 8), 0.125))}
    assert plots.plot_timeline(tmp_path / "timeline.png", tracks, CKPLUS8).stat().st_size > 2000
    assert [ax.get_ylabel() for ax in figures[0].axes] == ["face 2"]
    assert not figures[0].texts  # an empty track is no face left out


def test_timeline_without_class_names_has_no_legend(tmp_path, monkeypatch):
    figures = _saved_figures(monkeypatch)
    assert plots.plot_timeline(tmp_path / "timeline.png", {}, []).stat().st_size > 1000
    assert figures[0].legends == []


def test_timeline_says_how_many_faces_it_does_not_show(tmp_path, monkeypatch):
    figures = _saved_figures(monkeypatch)
    t = np.arange(20) / 10.0
    tracks = {face: (t[:20 - face], np.full((20 - face, 8), 0.125)) for face in range(1, 9)}
    plots.plot_timeline(tmp_path / "timeline.png", tracks, CKPLUS8, max_faces=6)
    assert [ax.get_ylabel() for ax in figures[0].axes] == [f"face {face}" for face in range(1, 7)]
    assert [text.get_text() for text in figures[0].texts] == ["2 more faces not shown (shorter tracks)"]
    plots.plot_timeline(tmp_path / "timeline.png", tracks, CKPLUS8, max_faces=8)
    assert not figures[1].texts


def test_timeline_with_long_class_names_keeps_its_width(tmp_path):
    t = np.arange(3.0)
    tracks = {1: (t, np.eye(8)[[0, 1, 2]])}
    short = plots.plot_timeline(tmp_path / "short.png", tracks, CKPLUS8)
    long = plots.plot_timeline(tmp_path / "long.png", tracks, ["n" * 60 + str(k) for k in range(8)])
    (short_h, short_w), (long_h, long_w) = _png_shape(short)[:2], _png_shape(long)[:2]
    assert long_w <= short_w + 10 and long_h > short_h  # the names take rows, not width
