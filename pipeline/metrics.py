"""Flicker, measured: the temporal error of a stylised clip against its original.

Temporal error of frame t = RMSE (0-255 scale) between stylised frame t and stylised frame t-1 warped by
the optical flow estimated on the *original* frames, over the pixels that flow marks reliable (Ruder et
al.'s consistency rule). The same figure for the original itself is the floor: what the flow's own errors
and lighting changes leave even without any flicker.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np
import torch

from .config import Config
from .flow import FlowEstimator, analyse, warp


@dataclass
class FrameError:
    index: int
    stylised: float | None        # None where no pixel is reliable (a cut)
    original: float | None
    reliable: float               # fraction of reliable pixels
    cut: bool
    style: float | None = None    # style loss of the stylised frame (with --style)


@dataclass
class FrameQuality:
    """How good one stylised frame is under the run's objective: its (weighted) content term against its own
    input frame and style term against STYLE; for sampled frames, what a cold optimisation of the same input
    frame at the same settings reaches."""
    index: int
    content: float
    style: float
    reference_content: float | None = None
    reference_style: float | None = None

    @property
    def ratio(self) -> float | None:
        """(content + style) / the cold optimisation's: 1 is as good as a frame optimised on its own."""
        if self.reference_content is None or self.reference_style is None:
            return None
        return (self.content + self.style) / max(self.reference_content + self.reference_style, 1e-30)


def drift_figures(quality: list["FrameQuality"]) -> dict | None:
    """Mean and worst ratio against cold references, and the first quarter's against the last quarter's."""
    sampled = [q for q in quality if q.ratio is not None]
    if not sampled:
        return None
    last_index = max(q.index for q in quality)
    quarter = max(1, (last_index + 1) // 4)
    first = [q.ratio for q in sampled if q.index < quarter] or [sampled[0].ratio]
    last = [q.ratio for q in sampled if q.index > last_index - quarter] or [sampled[-1].ratio]
    worst = max(sampled, key=lambda q: q.ratio)
    return {"mean_ratio": float(np.mean([q.ratio for q in sampled])), "worst_ratio": worst.ratio,
            "worst_frame": worst.index, "first_quarter": float(np.mean(first)), "last_quarter": float(np.mean(last)),
            "sampled_frames": [q.index for q in sampled]}


@dataclass
class Evaluation:
    frames: list[FrameError] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    quality: list[FrameQuality] = field(default_factory=list)   # every frame, with --style

    def mean(self, key: str) -> float:
        values = [getattr(f, key) for f in self.frames if getattr(f, key) is not None and not f.cut]
        return float(np.mean(values)) if values else math.nan

    def to_dict(self) -> dict:
        return {"temporal_error": self.mean("stylised"), "original_floor": self.mean("original"),
                "frames": len(self.frames) + 1, "cuts": [f.index for f in self.frames if f.cut],
                "style_loss": self.mean("style") if any(f.style is not None for f in self.frames) else None,
                "per_frame": [f.__dict__ for f in self.frames], "warnings": self.warnings,
                "quality": [{**q.__dict__, "ratio": q.ratio} for q in self.quality],
                "drift": drift_figures(self.quality)}


def warped_rmse(current: np.ndarray, previous: np.ndarray, backward: np.ndarray, reliable: np.ndarray) -> float | None:
    """RMSE (0-255) between `current` and `previous` warped by `backward`, over `reliable` pixels."""
    if not reliable.any():
        return None
    prev = torch.from_numpy(previous.astype(np.float32)).permute(2, 0, 1)[None]
    moved = warp(prev, backward)[0].permute(1, 2, 0).numpy()
    diff = (current.astype(np.float32) - moved)[reliable]
    return float(np.sqrt((diff ** 2).mean()))


def temporal_errors(stylised: Iterable[np.ndarray], original: Iterable[np.ndarray], *, cfg: Config | None = None,
                    score: Callable[[int, np.ndarray, np.ndarray], FrameQuality] | None = None) -> Evaluation:
    """Per-frame temporal error of two frame streams of equal length and size (both RGB uint8). Flow and the
    consistency rule use `cfg`'s settings (the same as stylisation). `score(index, stylised, original)`
    rates each frame's quality (see FrameQuality)."""
    cfg = cfg or Config()
    estimator = FlowEstimator(cfg.flow_method, cfg.dis_preset)
    evaluation = Evaluation()
    previous_s = previous_o = None
    index = -1
    stylised_iter, original_iter = iter(stylised), iter(original)
    while True:
        s = next(stylised_iter, None)
        o = next(original_iter, None)
        if s is None or o is None:
            if s is not None or o is not None:
                longer = "STYLISED" if s is not None else "ORIGINAL"
                raise ValueError(f"the clips have different frame counts: {longer} has more than {index + 1} frames")
            break
        index += 1
        if s.shape != o.shape:
            raise ValueError(f"frame {index}: sizes differ ({s.shape[1]}x{s.shape[0]} vs {o.shape[1]}x{o.shape[0]})")
        rated = score(index, s, o) if score else None
        if rated is not None:
            evaluation.quality.append(rated)
        if previous_o is not None:
            motion = analyse(previous_o, o, estimator, cfg)
            reliable = motion.weights > 0.5
            evaluation.frames.append(FrameError(
                index, warped_rmse(s, previous_s, motion.backward, reliable),
                warped_rmse(o, previous_o, motion.backward, reliable), motion.reliable, motion.cut,
                rated.style if rated else None))
        previous_s, previous_o = s, o
    if index < 1:
        raise ValueError("temporal error needs at least 2 frames")
    return evaluation


def truth_error(stylised: list[np.ndarray], backward: list[np.ndarray], visible: list[np.ndarray]) -> float:
    """Temporal error with the *true* flow and visibility of a synthetic clip (see synthetic.moving_clip)."""
    values = [warped_rmse(stylised[t], stylised[t - 1], backward[t], visible[t]) for t in range(1, len(stylised))]
    return float(np.mean([v for v in values if v is not None]))
