"""PNG plots for people: confusion matrices, training curves, label timelines (matplotlib, Agg backend).

Every function writes one PNG to exactly the path it is given (whatever its extension) and returns that path;
parent folders are created. Nothing here opens a window.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

GAP_FRAME_STEPS = 2.0  # plot_timeline: a face unseen for longer than this many frame steps was absent


def _pyplot():
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format="png", dpi=110, bbox_inches="tight")
    finally:
        _pyplot().close(fig)
    return path


def remove_plots(out_dir: str | Path, names: Iterable[str]) -> None:
    """Remove the PNGs `names` from `out_dir` where they exist: a tool writing into a folder a run has written
    before removes the plots it may write first, so that one this run does not make is never taken for its own."""
    for name in names:
        (Path(out_dir) / name).unlink(missing_ok=True)


def plot_confusion_matrix(cm, class_names: Sequence[str], path: str | Path, title: str = "",
                          pred_names: Sequence[str] | None = None, not_found: str | None = None) -> Path:
    """Confusion matrix PNG: rows = true class (`class_names`) with their sample counts, columns = predicted
    (`pred_names`, default the same). Cells show counts; colours are row-normalised (share of each true class), so
    rare classes stay readable. Rows without samples stay white. `not_found`: the name of the column of samples
    that got no prediction (faces not found): they count in their row and as wrong in the title's accuracy, which
    says how many there were."""
    plt = _pyplot()
    cm = np.asarray(cm, np.int64)
    rows_n = list(class_names)
    cols_n = list(pred_names) if pred_names is not None else rows_n
    if cm.shape != (len(rows_n), len(cols_n)):
        raise ValueError(f"confusion matrix shape {cm.shape} does not match {len(rows_n)} x {len(cols_n)} names")
    sums = cm.sum(axis=1, keepdims=True)
    share = np.divide(cm, sums, out=np.zeros(cm.shape, np.float64), where=sums > 0)
    side = 0.6 + 0.55 * max(len(cols_n), 2)
    fig, ax = plt.subplots(figsize=(side + 1.6, 0.55 * max(len(rows_n), 2) + 1.6))
    im = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto")
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            if cm[i, j] or sums[i, 0]:
                ax.text(j, i, str(int(cm[i, j])), ha="center", va="center", fontsize=8,
                        color="white" if share[i, j] > 0.55 else "black")
    ax.set_xticks(range(len(cols_n)), cols_n, rotation=45, ha="right")
    ax.set_yticks(range(len(rows_n)), [f"{n} ({int(s)})" for n, s in zip(rows_n, sums[:, 0])])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true (samples)")
    total = int(cm.sum())
    correct = sum(int(cm[i, cols_n.index(n)]) for i, n in enumerate(rows_n) if n in cols_n)
    acc = f", accuracy {correct / total:.3f}" if total else ""
    missed = int(cm[:, cols_n.index(not_found)].sum()) if not_found in cols_n else 0
    acc += f" ({missed} not found, counted as wrong)" if missed else ""
    ax.set_title(f"{title + ': ' if title else ''}{total} samples{acc}", fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of true class")
    return _save(fig, path)


def plot_training_curves(rows: Sequence[Mapping[str, float]], path: str | Path, title: str = "") -> Path:
    """Training curves PNG from per-epoch rows (dicts). Columns whose name contains "loss" go on the first panel,
    those containing "acc", "recall" or "precision" on the second, "lr" (learning rate) on a log-scale third;
    the x axis is "epoch" when every row has a finite number there, else the row number. Non-numeric and missing
    values are skipped."""
    plt = _pyplot()
    if not rows:
        raise ValueError("no training rows to plot")

    def series(key):
        vals = []
        for r in rows:
            v = r.get(key)
            try:
                vals.append(float(v))
            except (TypeError, ValueError):
                vals.append(np.nan)
        return np.asarray(vals)

    epochs = series("epoch")
    x_key = "epoch" if np.isfinite(epochs).all() else None
    xs = epochs if x_key else np.arange(1.0, len(rows) + 1)
    keys: list[str] = []
    for r in rows:
        keys.extend(k for k in r if k not in keys and k != x_key)

    groups = {"loss": [k for k in keys if "loss" in k.lower()],
              "accuracy": [k for k in keys if any(s in k.lower() for s in ("acc", "recall", "precision"))],
              "learning rate": [k for k in keys if k.lower() in ("lr", "learning_rate")]}
    groups = {g: [k for k in ks if np.isfinite(series(k)).any()] for g, ks in groups.items()}
    groups = {g: ks for g, ks in groups.items() if ks}
    if not groups:
        raise ValueError(f"no loss, accuracy or lr columns among {keys}")
    fig, axes = plt.subplots(1, len(groups), figsize=(4.2 * len(groups), 3.4), squeeze=False)
    for ax, (group, ks) in zip(axes[0], groups.items()):
        for k in ks:
            y = series(k)
            ok = np.isfinite(y)
            ax.plot(xs[ok], y[ok], marker="o" if ok.sum() < 30 else None, ms=3, label=k)
        ax.set_xlabel("epoch" if x_key else "row")
        ax.set_title(group, fontsize=10)
        if group == "learning rate":
            ax.set_yscale("log")
        if group == "accuracy":
            ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return _save(fig, path)


def plot_timeline(path: str | Path, tracks: Mapping[int, tuple[np.ndarray, np.ndarray]],
                  class_names: Sequence[str], title: str = "", max_faces: int = 6) -> Path:
    """Label-over-time PNG: one panel per face (at most `max_faces`, the longest tracks; a line under the panels
    says how many more there were), each class's probability over time (s) as a line and the winning label as a
    coloured strip above it. Where a face was absent for more than GAP_FRAME_STEPS frame steps (the median step
    between its times), its strip stops and its lines break. Faces without points are left out. The legend above
    has as many columns as fit the figure's width.
    `tracks`: {face id: (times_s (N,), probs (N, K))} with K = len(class_names)."""
    plt = _pyplot()
    names = list(class_names)
    scored = sorted(((i, t) for i, t in tracks.items() if len(t[0])), key=lambda kv: -len(kv[1][0]))
    items = []
    for face_id, (times, probs) in scored[:max_faces]:  # checked before the figure is made
        times = np.asarray(times, np.float64)
        probs = np.asarray(probs, np.float64).reshape(len(times), -1)
        if probs.shape[1] != len(names):
            raise ValueError(f"face {face_id}: {probs.shape[1]} scores but {len(names)} class names")
        items.append((face_id, times, probs))
    hidden = len(scored[max_faces:])
    n = max(len(items), 1)
    fig, axes = plt.subplots(n, 1, figsize=(9, 1.9 * n + 0.6), squeeze=False, sharex=True)
    try:
        _draw_timeline(plt, fig, axes, items, names, hidden, title)
    except BaseException:
        plt.close(fig)
        raise
    return _save(fig, path)


def _draw_timeline(plt, fig, axes, items, names: list[str], hidden: int, title: str) -> None:
    """plot_timeline's panels, legend and title on `fig`, one panel of `axes` per (face id, times, probs)."""
    colours = plt.get_cmap("tab10")
    for ax, (face_id, times, probs) in zip(axes[:, 0], items):
        steps = np.diff(times)
        step = float(np.median(steps[steps > 0])) if (steps > 0).any() else 0.1  # one frame step
        # a face absent for more than a couple of frame steps: its label strip ends and its lines break there
        gap = GAP_FRAME_STEPS * step
        breaks = np.flatnonzero(steps > gap) + 1
        line_t, line_p = np.insert(times, breaks, np.nan), np.insert(probs, breaks, np.nan, axis=0)
        for k, name in enumerate(names):
            ax.plot(line_t, line_p[:, k], color=colours(k % 10), lw=1.2, label=name)
        if len(times):
            winner = np.argmax(probs, axis=1)
            ends = np.append(np.minimum(times[1:], times[:-1] + gap), times[-1] + step)
            for t0, t1, k in zip(times, ends, winner):
                ax.axvspan(t0, t1, ymin=0.92, ymax=1.0, color=colours(int(k) % 10), lw=0)
        ax.set_ylim(0, 1.1)
        ax.set_ylabel(f"face {face_id}")
        ax.grid(alpha=0.3)
    if not items:
        axes[0, 0].text(0.5, 0.5, "no scored faces", ha="center", va="center", transform=axes[0, 0].transAxes)
    axes[-1, 0].set_xlabel("time (s)")
    if hidden:
        fig.text(0.5, 0.0, f"{hidden} more face{'s' if hidden > 1 else ''} not shown (shorter tracks)",
                 ha="center", va="top", fontsize=8)
    top = 0.93
    if names:
        handles = [plt.Line2D([], [], color=colours(k % 10), lw=3) for k in range(len(names))]
        legend_h = _add_legend(fig, handles, names)
        panels_h = fig.get_figheight()
        fig.set_size_inches(fig.get_figwidth(), panels_h + legend_h)  # the legend's rows above the panels
        top = 1.0 - (legend_h + 0.1) / (panels_h + legend_h)
    if title:
        fig.suptitle(title, fontsize=10, y=1.04)
    fig.tight_layout(rect=(0, 0, 1, top))


def _add_legend(fig, handles, names: Sequence[str], max_cols: int = 8) -> float:
    """Adds a figure legend at the top centre with the most columns (up to `max_cols`) that fit the figure's width,
    so that long names take more rows, not a wider figure; returns its height in inches."""
    renderer = fig.canvas.get_renderer()
    for ncol in range(min(len(names), max_cols), 0, -1):
        legend = fig.legend(handles, names, loc="upper center", ncol=ncol, fontsize=8, bbox_to_anchor=(0.5, 1.0))
        box = legend.get_window_extent(renderer)
        if ncol == 1 or box.width <= fig.get_figwidth() * fig.dpi:
            return box.height / fig.dpi
        legend.remove()
