"""PNG plots shared by the training command and the applications (matplotlib, no screen)."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Sequence

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: works on machines without a display
    import matplotlib.pyplot as plt

    return plt


def subplots(*args, **kwargs):
    """`matplotlib.pyplot.subplots` on the file-only backend: (figure, axes)."""
    return _pyplot().subplots(*args, **kwargs)


def save(fig, path: str | os.PathLike, top: float = 1.0) -> None:
    """Writes `fig` as a PNG and closes it (pyplot keeps every open figure otherwise); the
    axes are laid out below `top` (a fraction of the height: room for a title)."""
    fig.tight_layout(rect=(0, 0, 1, top))
    fig.savefig(path, dpi=100)
    _pyplot().close(fig)


def plot_history(history: dict[str, list[float]], path: str | os.PathLike, title: str = "") -> None:
    """Loss curves (training, and validation when present) per epoch, log-scaled."""
    fig, ax = subplots(figsize=(6, 4))
    for key, values in history.items():
        if key.endswith("loss") and values:
            ax.plot(range(1, len(values) + 1), values, marker="o", label=key)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    if ax.lines:
        ax.legend()
    else:  # (a preset's detector saved again: its run kept no history)
        ax.text(0.5, 0.5, "no training history", ha="center", transform=ax.transAxes)
    ax.set_title(title or "training history")
    save(fig, path)


def image_grid(
    rows: Sequence[np.ndarray],
    path: str | os.PathLike,
    row_titles: Sequence[str] = (),
    title: str = "",
) -> None:
    """Saves rows of images (each an array (n, height, width, channels) in [0, 1]) as a grid."""
    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    width = 1.6 * n_cols + 1
    # A title wider than a narrow grid (2 images: 4.2 inches) was cut at both sides: in
    # lines of what fits, about 11 characters an inch at 10 points (words, paths, whole).
    lines = textwrap.wrap(title, max(20, int(11 * width)), break_long_words=False,
                          break_on_hyphens=False)
    # The title's room in inches, not a fraction of the height: in a tall grid (1000
    # samples: 200 inches) the default place, 2 % down, fell on the third row of images.
    room = 0.25 + 0.17 * max(0, len(lines) - 1) if lines else 0.0
    height = 1.6 * n_rows + max(room, 0.4)
    fig, axes = subplots(n_rows, n_cols, figsize=(width, height), squeeze=False)
    for r, images in enumerate(rows):
        for c in range(n_cols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(images):
                image = np.clip(np.asarray(images[c], dtype=np.float32), 0, 1)
                if image.ndim == 3 and image.shape[-1] == 1:
                    ax.imshow(image[..., 0], cmap="gray", vmin=0, vmax=1)
                else:
                    ax.imshow(image)
            else:
                ax.axis("off")
        if r < len(row_titles):
            axes[r][0].set_ylabel(row_titles[r])
    if lines:
        fig.suptitle("\n".join(lines), fontsize=10, y=1 - 0.08 / height, va="top")
    save(fig, path, top=1 - room / height)


def plot_reconstructions(model, x: np.ndarray, path: str | os.PathLike, title: str = "") -> None:
    """Inputs next to the model's reconstructions: a grid for images (n, h, w, c), line
    plots for signals and vectors."""
    x_hat = np.asarray(model.predict(x, verbose=0))
    if x.ndim == 4:
        image_grid([x, x_hat], path, row_titles=["input", "reconstruction"], title=title)
        return
    fig, axes = subplots(len(x), 1, figsize=(7, 1.6 * len(x) + 0.5), squeeze=False)
    for ax, signal, rebuilt in zip(axes[:, 0], x, x_hat):
        ax.plot(signal.reshape(len(signal), -1), color="tab:blue", label="input")
        ax.plot(rebuilt.reshape(len(rebuilt), -1), color="tab:red", alpha=0.8, label="reconstruction")
    axes[0, 0].legend(loc="upper right")
    fig.suptitle(title or "reconstructions")
    save(fig, path)


def plot_score_histogram(
    scores: np.ndarray,
    is_anomaly: np.ndarray,
    threshold: float,
    path: str | os.PathLike,
    title: str = "",
) -> None:
    """Histograms of anomaly scores, normal and anomalous examples apart, with the threshold.

    The bins are log-spaced when every score is positive, since reconstruction errors span
    orders of magnitude.
    """
    scores = np.asarray(scores, dtype=np.float64)
    is_anomaly = np.asarray(is_anomaly, dtype=bool)
    low, high = float(scores.min()), float(scores.max())
    log = low > 0
    if log:
        bins = np.geomspace(low, high if high > low else low * 1.01, 51)
    else:
        bins = np.linspace(low, high if high > low else low + 1, 51)
    fig, ax = subplots(figsize=(6, 4))
    groups = ((~is_anomaly, "normal", "tab:blue"), (is_anomaly, "anomalous", "tab:red"))
    for mask, label, color in groups:
        if mask.any():
            label = f"{label} ({mask.sum()})"
            ax.hist(scores[mask], bins=bins, alpha=0.6, color=color, label=label)
    ax.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.4g}")
    if log:
        ax.set_xscale("log")
    ax.set_xlabel("anomaly score")
    ax.set_ylabel("examples")
    ax.legend()
    ax.set_title(title or "anomaly scores")
    save(fig, path)


def plot_roc(
    curves: dict[str, tuple[np.ndarray, np.ndarray, float]],
    path: str | os.PathLike,
    title: str = "",
) -> None:
    """ROC curves: detector name -> (false positive rates, true positive rates, ROC-AUC)."""
    fig, ax = subplots(figsize=(5, 5))
    for name, (fpr, tpr, auc) in curves.items():
        ax.plot(fpr, tpr, label=f"{name} (AUC {auc:.3f})")
    ax.plot([0, 1], [0, 1], color="gray", linestyle=":", label="chance")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right")
    ax.set_title(title or "ROC")
    save(fig, path)


def plot_scatter(
    points: np.ndarray,
    labels: np.ndarray,
    path: str | os.PathLike,
    title: str = "",
    axis_labels: tuple[str, str] = ("1", "2"),
) -> None:
    """A 2-D scatter of points (n, 2) coloured by label, one legend entry per label."""
    plt = _pyplot()
    points = np.asarray(points)
    labels = np.asarray(labels)
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    classes = np.unique(labels)
    cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
    for i, label in enumerate(classes):
        mask = labels == label
        ax.scatter(*points[mask].T, s=6, alpha=0.7, color=cmap(i % cmap.N), label=str(label))
    ax.set_xlabel(axis_labels[0])
    ax.set_ylabel(axis_labels[1])
    if len(classes) <= 20:
        ax.legend(markerscale=3, fontsize="small", loc="best")
    ax.set_title(title)
    save(fig, path)
