"""Figures: labelled image grids, the optimisation's contact sheet and animation, and loss plots.

matplotlib draws (Agg backend, no display needed); Pillow writes GIFs. Images are (H, W, 3) uint8 RGB.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from . import media
from .files import atomic

LOSS_COLOURS = {"total": "black", "content": "tab:blue", "style": "tab:red", "tv": "tab:green",
                "temporal": "tab:purple"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | Path, dpi: int = 150) -> None:
    """Save a figure atomically (temporary name, then rename)."""
    path = Path(path)
    try:
        with atomic(path) as temp:
            fig.savefig(temp, dpi=dpi, format=path.suffix.lstrip(".") or "png")
    finally:
        _pyplot().close(fig)


def image_grid(panels: Sequence[np.ndarray], labels: Sequence[str], path: str | Path, *,
               columns: int | None = None, title: str | None = None, panel_inches: float = 2.6) -> tuple[int, int]:
    """A labelled grid of images (each label under its panel), saved as PNG. Returns (rows, columns)."""
    plt = _pyplot()
    count = len(panels)
    columns = columns or min(count, 6)
    rows = math.ceil(count / columns)
    aspect = panels[0].shape[0] / panels[0].shape[1]
    fig, axes = plt.subplots(rows, columns, figsize=(panel_inches * columns, panel_inches * aspect * rows + 0.6 * rows
                                                     + (0.5 if title else 0)), squeeze=False)
    for slot, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if slot >= count:
            ax.axis("off")
            continue
        ax.imshow(panels[slot])
        ax.set_xlabel(labels[slot], fontsize=10)
        for spine in ax.spines.values():
            spine.set_visible(False)
    if title:
        fig.suptitle(title, fontsize=12)
    fig.tight_layout()
    _save(fig, path)
    return rows, columns


@dataclass
class Snapshots:
    """Receives the image every N iterations (see `--save-every`), writes each to `folder`, and keeps
    the list for the contact sheet and animation."""

    folder: Path
    items: list[tuple[int, Path, dict[str, float]]] = field(default_factory=list)

    def __call__(self, iteration: int, frame: np.ndarray, losses: Mapping[str, float]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"iter_{iteration:06d}.png"
        media.write_image(path, frame)
        self.items.append((iteration, path, dict(losses)))


def _loaded(items: Sequence[tuple[int, Path, dict]]) -> list[np.ndarray]:
    """The snapshots, all at the size of the last one (coarse scales are smaller)."""
    frames = [media.read_image(path) for _, path, _ in items]
    size = (frames[-1].shape[1], frames[-1].shape[0])
    return [media.resize(f, size) for f in frames]


def progress_sheet(items: Sequence[tuple[int, Path, dict]], path: str | Path) -> None:
    """A labelled contact sheet: iteration number and losses under each snapshot."""
    if not items:
        raise ValueError("no snapshots to draw (was --save-every larger than the iteration count?)")
    labels = [f"iteration {it}\ntotal {l.get('total', 0):.3g}  content {l.get('content', 0):.2g}\n"
              f"style {l.get('style', 0):.2g}" for it, _, l in items]
    image_grid(_loaded(items), labels, path, title="Optimisation progress")


def progress_animation(items: Sequence[tuple[int, Path, dict]], path: str | Path, fps: int = 4) -> None:
    """The snapshots as an animated GIF (Pillow) or an MP4 (ffmpeg)."""
    from fractions import Fraction

    from PIL import Image

    frames = _loaded(items)
    path = Path(path)
    if path.suffix.lower() == ".gif":
        images = [Image.fromarray(f) for f in frames]
        with atomic(path) as temp:
            images[0].save(temp, format="GIF", save_all=True, append_images=images[1:], duration=int(1000 / fps),
                           loop=0)
        return
    width, height = frames[0].shape[1] // 2 * 2, frames[0].shape[0] // 2 * 2
    writer = media.VideoWriter(path, (width, height), Fraction(fps))
    try:
        for frame in frames:
            writer.write(np.ascontiguousarray(frame[:height, :width]))
        writer.close()
    except BaseException:
        writer.abort()
        raise


def loss_plot(histories: Sequence[Sequence[Mapping[str, float]]], path: str | Path,
              title: str = "Loss during optimisation") -> int:
    """Every loss term against iteration, log scale. Several frames' histories (in the order they were
    optimised) are laid end to end, frame boundaries dotted. Returns the number of iterations plotted."""
    plt = _pyplot()
    keys = [h for h in histories if h]
    if not keys:
        raise ValueError("no loss history to plot")
    series: dict[str, list[float]] = {}
    boundaries = []
    length = 0
    for history in keys:
        for record in history:
            for name in record:
                series.setdefault(name, [math.nan] * length)
            for name, values in series.items():
                values.append(record.get(name, math.nan))
            length += 1
        boundaries.append(length)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    iterations = np.arange(1, length + 1)
    for name in sorted(series, key=lambda n: list(LOSS_COLOURS).index(n) if n in LOSS_COLOURS else 99):
        values = np.asarray(series[name], dtype=float)
        values[values <= 0] = np.nan  # log scale
        ax.plot(iterations, values, label=name, color=LOSS_COLOURS.get(name), linewidth=1.2)
    if len(keys) > 1:
        for boundary in boundaries[:-1]:
            ax.axvline(boundary + 0.5, color="grey", linestyle=":", linewidth=0.6)
    ax.set_yscale("log")
    ax.set_xlabel("iteration" + (" (frames laid end to end)" if len(keys) > 1 else ""))
    ax.set_ylabel("weighted loss")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    _save(fig, path)
    return length


def line_plot(x: Sequence[float], series: Mapping[str, Sequence[float]], path: str | Path, *, xlabel: str,
              ylabel: str, title: str, secondary: Mapping[str, Sequence[float]] | None = None,
              secondary_label: str = "") -> None:
    """A per-frame line plot (e.g. temporal error), optionally with a second y axis (e.g. style loss)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4))
    for name, values in series.items():
        ax.plot(x, values, label=name, linewidth=1.3)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if secondary:
        ax2 = ax.twinx()
        for name, values in secondary.items():
            ax2.plot(x, values, label=name, linestyle="--", color="tab:red", linewidth=1.1)
        ax2.set_ylabel(secondary_label)
        more = ax2.get_legend_handles_labels()
        handles, labels = handles + more[0], labels + more[1]
    ax.legend(handles, labels, loc="best")
    fig.tight_layout()
    _save(fig, path)


def progress_figures(snapshots: "Snapshots | None", sheet: str | None, animation: str | None) -> None:
    """After a run with --save-every: its contact sheet and its animation, where asked for."""
    if snapshots is None:
        return
    if sheet:
        progress_sheet(snapshots.items, sheet)
    if animation:
        progress_animation(snapshots.items, animation)
