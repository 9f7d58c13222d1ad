"""`nst-video bench chunks`: a long shot split into chunks stylised apart, and what the seams cost (see bench.py
for the rules every benchmark keeps)."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from . import shots, video
from .bench import Workspace, _table
from .clips import photo
from .config import Config
from .evaluate import evaluate_clips
from .synthetic import MECHANICS_WEIGHTS, TUTORIAL_OBJECTIVE, drift_clip, write_frames


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
        width, height = size, round(size * 2 / 3) // 2 * 2
        clip = drift_clip(frames, width, height, background=photo("tubingen.png", 11, (width * 3, height * 2)))
        source = write_frames(clip, workspace.root / "input")
        base = {"weights": workspace.weights, "size": size, **(MECHANICS_WEIGHTS if weights is None else {}),
                **TUTORIAL_OBJECTIVE, "iterations": iterations, "frame_iterations": frame_iterations,
                "device": device, "seed": seed}
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
