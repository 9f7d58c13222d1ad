"""Benchmarks of long shots (see bench.py for the rules every benchmark keeps):

    drift     quality over a long shot: later frames against frames optimised cold, per variant (variants.py)
    chunks    a long shot split into chunks stylised apart: what the seams cost
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from . import media, shots, video
from .bench import Workspace, _photo, _table, later_evaluations
from .config import Config
from .evaluate import evaluate_clips
from .figures import quality_plot
from .metrics import detail_energy, temporal_errors
from .synthetic import MECHANICS_WEIGHTS, TUTORIAL_OBJECTIVE, drift_clip, write_frames
from .variants import DRIFT_VARIANTS


@dataclass
class DriftRow:
    name: str
    label: str
    content_ratio: float        # later sampled frames: content term / the cold optimisation's, mean
    style_ratio: float
    quality_ratio: float        # (content + style) / cold, mean over the later sampled frames
    worst_ratio: float
    first_quarter: float        # quality ratio, mean over the sampled frames of the first quarter
    last_quarter: float         # ... and of the last quarter: a drift shows as last > first
    temporal_error: float       # RMSE 0-255 against the previous frame warped by flow on the input (`eval`)
    later_iterations: float     # evaluations per later frame, mean
    level_iterations: float     # ... and per later frame, those spent measuring the cold level (probes, references)
    detail_x: float             # later sampled frames' fine detail across x / the cold optimisation's, mean
    detail_y: float             # ... across y (metrics.detail_energy): streaks along the pan show as x < y
    early_stops: int
    later_frames: int
    speedup: float              # cold per-frame evaluations / later frames' mean, level measurements included
    seconds: float
    per_frame: list[tuple[float, float]]   # (content, style) of every frame
    pooling: str = ""           # VGG19's pooling in the objective the variant and the cold frames were judged by


def _drift_setup(workspace: Workspace, frames: int, size: int, random_weights: bool, tutorial: bool,
                 **settings) -> tuple[list[np.ndarray], Path, dict]:
    """The drift clip (frames and their folder) and the settings every variant starts from."""

    width, height = size, round(size * 2 / 3) // 2 * 2
    clip = drift_clip(frames, width, height, background=_photo("tubingen.png", 11, (width * 3, height * 2)))
    source = write_frames(clip, workspace.root / "input")
    base = {"weights": workspace.weights, "size": size, **(MECHANICS_WEIGHTS if random_weights else {}),
            **(TUTORIAL_OBJECTIVE if tutorial else {}), **settings}
    return clip, source, base


def drift_benchmark(*, frames: int = 100, size: int = 96, iterations: int = 240, frame_iterations: int = 60,
                    every: int = 10, objective: str = "tutorial", variants: list[str] | None = None,
                    weights: str | None = None, device: str = "cpu", seed: int = 0, overrides: dict | None = None,
                    cold: dict[int, tuple[float, float]] | None = None,
                    progress: Callable[[str], None] = lambda message: None) -> tuple[list[DriftRow], dict[int, tuple[float, float]]]:
    """The drift clip through each variant, and every `every`th frame optimised cold with the first frame's
    schedule (`iterations`: the plain per-frame loop) as the level later frames are judged against: its
    (content, style, detail across x, detail across y), the last two of the saved frame (metrics.detail_energy).
    `objective`: "tutorial" (the PyTorch tutorial's, which keeps content on random weights) or "default"
    (the product's layers and pooling, with random-weight loss weights unless `weights` is given). `cold`:
    references measured earlier with the same arguments (they do not depend on the variant)."""
    workspace = Workspace.create(weights, seed)
    try:
        clip, source, base = _drift_setup(workspace, frames, size, weights is None, objective == "tutorial",
                                          iterations=iterations, frame_iterations=frame_iterations, device=device,
                                          seed=seed, **(overrides or {}))
        sampled = list(range(0, frames, every))
        if cold is None:
            progress(f"cold references: frames {', '.join(map(str, sampled[:3]))}.. ({iterations} iterations each)")
            cold_source = write_frames([clip[i] for i in sampled], workspace.root / "sampled")
            cold_summary = video.run(video.Job(cold_source, (workspace.style,), workspace.root / "cold"),
                                     Config(**{**base, "warm_start": False}))
            cold = {index: (cold_summary.losses[k]["content"], cold_summary.losses[k]["style"],
                            *detail_energy(media.read_image(workspace.root / "cold" / media.FRAME_NAME.format(k))))
                    for k, index in enumerate(sampled)}
        rows = []
        for name in variants or list(DRIFT_VARIANTS):
            label, changes = DRIFT_VARIANTS[name]
            cfg = Config(**{**base, **changes})
            progress(f"{name}: {label}")
            output = workspace.root / f"out-{name}".replace(".", "_")  # a folder: no suffix
            started = time.perf_counter()
            summary = video.run(video.Job(source, (workspace.style,), output), cfg)
            seconds = time.perf_counter() - started
            per_frame = [(summary.losses[i]["content"], summary.losses[i]["style"]) for i in range(frames)]
            later = [i for i in sampled if i > 0]
            ratio = {i: sum(per_frame[i]) / (cold[i][0] + cold[i][1]) for i in later}
            quarter = max(1, frames // 4)
            first_q = [ratio[i] for i in later if i < quarter] or [ratio[later[0]]]
            last_q = [ratio[i] for i in later if i >= frames - quarter] or [ratio[later[-1]]]
            stylised = [media.read_image(output / media.FRAME_NAME.format(i)) for i in range(frames)]
            originals = [media.resize(f, (s.shape[1], s.shape[0])) for f, s in zip(clip, stylised)]
            error = temporal_errors(iter(stylised), iter(originals), cfg=cfg).mean("stylised")
            later_iterations, level_iterations = later_evaluations(summary)
            detail = {i: detail_energy(stylised[i]) for i in later}
            rows.append(DriftRow(
                name, label, float(np.mean([per_frame[i][0] / cold[i][0] for i in later])),
                float(np.mean([per_frame[i][1] / cold[i][1] for i in later])), float(np.mean(list(ratio.values()))),
                max(ratio.values()), float(np.mean(first_q)), float(np.mean(last_q)), error, later_iterations,
                level_iterations, float(np.mean([detail[i][0] / cold[i][2] for i in later])),
                float(np.mean([detail[i][1] / cold[i][3] for i in later])), summary.early_stops,
                len(summary.later_frame_seconds),
                iterations / (later_iterations + level_iterations), seconds,
                per_frame, cfg.pooling))
        return rows, cold
    finally:
        workspace.cleanup()


def drift_plot(rows: list[DriftRow], cold: dict, path: str | Path, frames: int, objective: str) -> None:
    """Content + style per frame for each variant, the cold references marked."""
    quality_plot({r.name: [c + s for c, s in r.per_frame] for r in rows}, {i: c + s for i, (c, s, *_) in cold.items()},
                 path, title=f"Quality over time ({frames} frames, {objective} objective)")


def drift_table(rows: list[DriftRow]) -> str:
    return _table([
        ("variant", 52, lambda r: f"{r.name}: {r.label}"),
        ("content", 8, lambda r: f"{r.content_ratio:.3f}"),
        ("style", 7, lambda r: f"{r.style_ratio:.3f}"),
        ("c+s", 6, lambda r: f"{r.quality_ratio:.3f}"),
        ("worst", 6, lambda r: f"{r.worst_ratio:.3f}"),
        ("1st q", 6, lambda r: f"{r.first_quarter:.3f}"),
        ("last q", 6, lambda r: f"{r.last_quarter:.3f}"),
        ("temp.err", 8, lambda r: f"{r.temporal_error:.3f}"),
        ("it/later", 8, lambda r: f"{r.later_iterations:.1f}"),
        ("+level", 6, lambda r: f"{r.level_iterations:.1f}"),
        ("detail x/y", 10, lambda r: f"{r.detail_x:.2f}/{r.detail_y:.2f}"),
        ("early", 7, lambda r: f"{r.early_stops}/{r.later_frames}"),
        ("speed-up", 8, lambda r: f"{r.speedup:.2f}x"),
        ("s", 6, lambda r: f"{r.seconds:.0f}")], rows, "(ratios: later frames / cold optimisation of the same frame)")


@dataclass
class ChunkRow:
    name: str
    units: int
    seam_error: float           # temporal error (eval), mean over the frames around each seam
    worst_seam: float
    inside_error: float         # ... and over every other frame
    style: float                # style term of the output frames (eval --style), mean over all frames
    style_seam: float           # ... over the frames around each seam
    seconds: float              # the whole run on one device (the chunks one after another)
    longest_unit: int           # frames stylised by the longest unit, burn-in included: the wall time with


def chunks_benchmark(*, frames: int = 48, size: int = 96, max_frames: int = 12, overlaps: tuple[int, ...] = (0, 4, 8),
                     iterations: int = 240, frame_iterations: int = 60, weights: str | None = None,
                     device: str = "cpu", seed: int = 0,
                     progress: Callable[[str], None] = lambda message: None) -> list[ChunkRow]:
    """The drift clip (one long shot) stylised whole, and cut into chunks of `max_frames` with each overlap, on
    the PyTorch tutorial's objective. Every output is measured by `eval` (temporal error and style term per frame)
    around the seams, the frames from (largest overlap) before each seam to the seam, against the rest."""

    workspace = Workspace.create(weights, seed)
    try:
        _, source, base = _drift_setup(workspace, frames, size, weights is None, True, iterations=iterations,
                                       frame_iterations=frame_iterations, device=device, seed=seed)
        widest = max(overlaps, default=0)
        seams = shots.seam_frames(shots.plan([], frames, Config(max_shot_frames=max_frames, chunk_overlap=0)))
        near = {i for seam in seams for i in range(max(1, seam - widest), seam + 1)}
        rows = []
        for name, changes in [("one shot", {})] + [(f"chunks of {max_frames}, overlap {k}",
                                                   {"max_shot_frames": max_frames, "chunk_overlap": k}) for k in overlaps]:
            progress(name)
            cfg = Config(**base, **changes)
            output = workspace.root / f"out-{len(rows)}"
            started = time.perf_counter()
            video.run(video.Job(source, (workspace.style,), output), cfg)
            seconds = time.perf_counter() - started
            evaluation = evaluate_clips(output, source, style=workspace.style, cfg=cfg)
            errors = {f.index: f.stylised for f in evaluation.frames if f.stylised is not None}
            style = {q.index: q.style for q in evaluation.quality}
            spans = shots.plan([], frames, cfg)
            rows.append(ChunkRow(
                name, len(spans), float(np.mean([errors[i] for i in near])), max(errors[i] for i in near),
                float(np.mean([e for i, e in errors.items() if i not in near])), float(np.mean(list(style.values()))),
                float(np.mean([style[i] for i in near])), seconds, max(s.end - s.start for s in spans)))
        return rows
    finally:
        workspace.cleanup()


def chunks_table(rows: list[ChunkRow]) -> str:
    return _table([
        ("variant", 26, lambda r: r.name),
        ("units", 5, lambda r: str(r.units)),
        ("temp.err seams", 14, lambda r: f"{r.seam_error:.2f}"),
        ("worst", 6, lambda r: f"{r.worst_seam:.2f}"),
        ("elsewhere", 9, lambda r: f"{r.inside_error:.2f}"),
        ("style", 9, lambda r: f"{r.style:.3g}"),
        ("style seams", 11, lambda r: f"{r.style_seam:.3g}"),
        ("longest unit", 12, lambda r: f"{r.longest_unit} fr"),
        ("s (1 device)", 12, lambda r: f"{r.seconds:.0f}")], rows,
        "(temporal error: RMSE 0-255 against the previous frame warped by the input's flow; style: eval --style)")
