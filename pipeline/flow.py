"""Optical flow on the input frames, warping, Ruder et al.'s consistency weights, and scene cuts.

Flow convention (OpenCV's): `flow = estimate(source, target)` gives, for each pixel p of `source`, the
displacement to where it is in `target`: source(p) ~ target(p + flow(p)). The backward flow of frame t
is estimate(frame_t, frame_{t-1}); warping the previous result with it brings it into frame t.
"""
from __future__ import annotations

import os
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from .config import Config

_DIS_PRESETS = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST, "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
                "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}


def to_gray(frame: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)


class FlowEstimator:
    """Dense flow between two frames with OpenCV's DIS (default) or Farneback. Not thread-safe: one per
    thread."""

    def __init__(self, method: str, preset: str):
        self.method = method
        self._dis = cv2.DISOpticalFlow_create(_DIS_PRESETS[preset]) if method == "dis" else None

    def __call__(self, source: np.ndarray, target: np.ndarray) -> np.ndarray:
        """(H, W, 2) float32 flow from `source` to `target` (RGB uint8 or grey)."""
        source = to_gray(source) if source.ndim == 3 else source
        target = to_gray(target) if target.ndim == 3 else target
        if self._dis is not None:
            return self._dis.calc(source, target, None)
        return cv2.calcOpticalFlowFarneback(source, target, None, pyr_scale=0.5, levels=4, winsize=15,
                                            iterations=3, poly_n=5, poly_sigma=1.2, flags=0)


def _grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    return xs, ys


def warp(image: torch.Tensor, flow: np.ndarray | torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """Sample `image` (N, C, H, W) at p + flow(p) (`mode`: bilinear, bicubic or nearest; edges repeated): the
    previous frame's result brought into the current frame by the backward flow. Whole-pixel flows move pixels
    exactly; a sub-pixel one blurs along the motion, except nearest, which moves whole pixels only."""
    flow = torch.as_tensor(flow, dtype=image.dtype, device=image.device)      # (H, W, 2)
    height, width = image.shape[-2:]
    ys, xs = torch.meshgrid(torch.arange(height, device=image.device, dtype=image.dtype),
                            torch.arange(width, device=image.device, dtype=image.dtype), indexing="ij")
    # grid_sample wants coordinates in [-1, 1]; with align_corners=True, -1 and 1 are the edge pixels' centres.
    gx = (xs + flow[..., 0]) * (2 / max(width - 1, 1)) - 1
    gy = (ys + flow[..., 1]) * (2 / max(height - 1, 1)) - 1
    grid = torch.stack([gx, gy], dim=-1).unsqueeze(0).expand(image.shape[0], -1, -1, -1)  # (N, H, W, 2)
    warped = F.grid_sample(image, grid, mode=mode, padding_mode="border", align_corners=True)
    return warped.clamp(0, 1) if mode == "bicubic" else warped  # bicubic overshoots at edges


def inpaint(image: torch.Tensor, weights: np.ndarray, radius: int = 3) -> torch.Tensor:
    """`image` (1, C, H, W) in [0, 1] with its unreliable pixels (weights < 0.5: disoccluded, or entering at an
    edge, where the warp only repeats border pixels as streaks) filled in from their reliable neighbours
    (OpenCV's Telea inpainting), blended by the soft weights so reliable pixels are kept exactly."""
    hole = (weights < 0.5).astype(np.uint8)
    if not hole.any() or hole.all():  # nothing to fill, or nothing to fill it from (a cut)
        return image
    array = image[0].permute(1, 2, 0).detach().cpu().numpy()                       # (H, W, C) float
    filled = cv2.inpaint((np.clip(array, 0, 1) * 255).round().astype(np.uint8), hole, radius, cv2.INPAINT_TELEA)
    filled = filled.reshape(array.shape).astype(np.float32) / 255
    blend = torch.from_numpy(weights)[None, None].to(image)                      # (1, 1, H, W)
    fill = torch.from_numpy(filled).permute(2, 0, 1)[None].to(image)
    return blend * image + (1 - blend) * fill


def matched_fill(content: torch.Tensor, warped: torch.Tensor, weights: np.ndarray) -> torch.Tensor:
    """`warped` (1, C, H, W) with its unreliable pixels (revealed by motion, entering at an edge) started from
    the content frame mapped into the stylised palette: an affine colour map content -> stylised, fitted by
    least squares on the reliable pixels, so a revealed region starts with its own structure in the video's
    colours, not the warp's repeated border pixels (streaks) nor raw, unstylised content."""
    blend = torch.from_numpy(weights)[None, None].to(warped)                     # (1, 1, H, W)
    reliable = blend[0, 0] > 0.5
    if reliable.all() or not reliable.any():
        return warped
    channels = content.shape[1]
    source = content[0].reshape(channels, -1).T                                   # (H*W, C)
    target = warped[0].reshape(channels, -1).T
    picked = reliable.reshape(-1)
    design = torch.cat([source[picked], torch.ones_like(source[picked, :1])], dim=1)   # (n, C+1)
    ridge = 1e-3 * torch.eye(channels + 1, dtype=design.dtype, device=design.device)
    mapping = torch.linalg.solve(design.T @ design + ridge, design.T @ target[picked])  # (C+1, C)
    mapped = (torch.cat([source, torch.ones_like(source[:, :1])], dim=1) @ mapping).clamp(0, 1)
    fill = mapped.T.reshape(1, channels, *warped.shape[-2:])
    return blend * warped + (1 - blend) * fill


def consistency(backward: np.ndarray, forward: np.ndarray, *, frame: np.ndarray | None = None,
                earlier: np.ndarray | None = None, photometric: float = 0.0, boundary_rule: bool = True,
                grow: int = 1, blur: float = 1.0) -> np.ndarray:
    """Ruder et al. 2016's weights c in [0, 1] for frame t, from its backward flow (t -> t-1) and the
    forward flow (t-1 -> t).

    For pixel a with backward flow w^(a): b = a + w^(a); w~ = forward flow at b. c = 0 where b leaves the
    frame; where |w^ + w~|^2 >= 0.01 (|w^|^2 + |w~|^2) + 0.5 (disoccluded: the round trip does not come back);
    and where |grad w^|^2 > 0.01 |w^|^2 + 0.002 (motion boundary). Else 1. The zeros then grow by `grow`
    pixels and the mask is blurred (Gaussian, sigma `blur`), so the edge of a reliable region is soft.

    Added to the paper's rule: where the input frames are given, c = 0 also where the previous input frame
    warped by w^, times a gain per channel fitted where the round trip holds (a change of light is no flow
    failure), differs from this one by more than `photometric` (mean absolute RGB difference, 0-1 scale). DIS smears a moving object's
    flow into the background it uncovers, the same way in both directions, so the round trip alone misses
    about 15% of disoccluded pixels; the photometric test catches them. With it, the motion-boundary rule
    (`boundary_rule`) and growing the zeros (`grow`) only drop correctly tracked pixels (4.5% of them for the
    boundary rule on DIS flows), which are then restylised every frame and flicker: nst-video calls this with
    both off (see `analyse`), which lowered the true temporal error of the flicker clip from 6.0 to 5.4.
    """
    height, width = backward.shape[:2]
    xs, ys = _grid(height, width)
    bx, by = xs + backward[..., 0], ys + backward[..., 1]
    inside = (bx >= 0) & (bx <= width - 1) & (by >= 0) & (by <= height - 1)
    forward_at_b = cv2.remap(forward, bx, by, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    round_trip = ((backward + forward_at_b) ** 2).sum(-1)
    magnitudes = (backward ** 2).sum(-1) + (forward_at_b ** 2).sum(-1)
    disoccluded = round_trip >= 0.01 * magnitudes + 0.5
    reliable = inside & ~disoccluded
    if boundary_rule:
        du_dy, du_dx = np.gradient(backward[..., 0])
        dv_dy, dv_dx = np.gradient(backward[..., 1])
        reliable &= ~(du_dx**2 + du_dy**2 + dv_dx**2 + dv_dy**2 > 0.01 * (backward ** 2).sum(-1) + 0.002)
    if frame is not None and earlier is not None and photometric > 0:
        warped = cv2.remap(earlier.astype(np.float32), bx, by, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        current = frame.astype(np.float32)
        if reliable.any():  # a change of light is no flow failure: first a gain per channel, fitted where the round trip holds
            warped *= (warped[reliable] * current[reliable]).sum(0) / np.maximum((warped[reliable] ** 2).sum(0), 1e-6)
        mismatch = np.abs(warped - current).mean(-1) > photometric * 255
        reliable &= ~(cv2.dilate(mismatch.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0)
    reliable = reliable.astype(np.uint8)
    if grow:
        reliable = cv2.erode(reliable, np.ones((3, 3), np.uint8), iterations=grow, borderType=cv2.BORDER_REPLICATE)
    weights = reliable.astype(np.float32)
    if blur:
        weights = np.clip(cv2.GaussianBlur(weights, (0, 0), blur) * (reliable > 0), 0.0, 1.0)
    return weights


def histogram_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Bhattacharyya distance (0 same, 1 disjoint) between the hue-saturation-value histograms of two
    RGB frames: a jump means a scene cut even where flow "succeeds" on garbage."""
    def hist(frame: np.ndarray) -> np.ndarray:
        hsv = cv2.cvtColor(frame, cv2.COLOR_RGB2HSV)
        h = cv2.calcHist([hsv], [0, 1, 2], None, [12, 8, 8], [0, 180, 0, 256, 0, 256])
        return cv2.normalize(h, h).flatten()
    return float(cv2.compareHist(hist(a), hist(b), cv2.HISTCMP_BHATTACHARYYA))


@dataclass
class Motion:
    """How frame t relates to an earlier frame t-j: the backward flow, Ruder's weights, and cut tests."""

    offset: int
    backward: np.ndarray     # (H, W, 2) float32, t -> t-j
    weights: np.ndarray      # (H, W) float32 in [0, 1]
    reliable: float          # fraction of the frame with weight > 0.5
    histogram: float         # colour histogram distance
    cut: bool


MAX_FLOW_SIDE = 2048


def flow_pair(earlier: np.ndarray, frame: np.ndarray, estimator: FlowEstimator,
              scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(backward, forward) flows between two frames at their size, estimated on the frames enlarged by
    `scale` (capped at MAX_FLOW_SIDE px). DIS's 8 px patches resolve small moving objects better on
    enlarged frames: on the known-motion clip at 160 px, endpoint error 0.114 -> 0.062 px with scale 2."""
    height, width = frame.shape[:2]
    scale = max(1.0, min(scale, MAX_FLOW_SIDE / max(height, width)))
    if scale == 1.0:
        return estimator(frame, earlier), estimator(earlier, frame)
    size = (round(width * scale), round(height * scale))
    big_earlier = cv2.resize(earlier, size, interpolation=cv2.INTER_CUBIC)
    big_frame = cv2.resize(frame, size, interpolation=cv2.INTER_CUBIC)
    shrink = lambda flow: cv2.resize(flow, (width, height), interpolation=cv2.INTER_AREA) * np.float32(  # noqa: E731
        [width / size[0], height / size[1]])
    return shrink(estimator(big_frame, big_earlier)), shrink(estimator(big_earlier, big_frame))


def analyse(earlier: np.ndarray, frame: np.ndarray, estimator: FlowEstimator, cfg: Config, *,
            offset: int = 1) -> Motion:
    """Flow both ways between two input frames, the consistency weights, and whether this is a cut, with
    cfg's flow_scale, photometric, boundary_rule, cut_reliable and cut_histogram. A flow failure (e.g.
    OpenCV refusing a degenerate frame) is a cut, never a crash."""
    histogram = histogram_distance(earlier, frame)
    try:
        backward, forward = flow_pair(earlier, frame, estimator, cfg.flow_scale)
    except cv2.error:
        height, width = frame.shape[:2]
        zero = np.zeros((height, width), np.float32)
        return Motion(offset, np.zeros((height, width, 2), np.float32), zero, 0.0, histogram, True)
    weights = consistency(backward, forward, frame=frame, earlier=earlier, photometric=cfg.photometric,
                          boundary_rule=cfg.boundary_rule, grow=1 if cfg.boundary_rule else 0)
    reliable = float((weights > 0.5).mean())
    cut = reliable < cfg.cut_reliable or histogram > cfg.cut_histogram
    return Motion(offset, backward, weights, reliable, histogram, cut)


def long_term_offsets(long_term: int) -> list[int]:
    """J = {1, 2, 4, ..., 2^K}: the earlier frames each frame is kept consistent with."""
    return [1] + [2 ** k for k in range(1, long_term + 1)]


def long_term_weights(motions: list[Motion]) -> list[np.ndarray]:
    """Ruder 2016 long-term weights: each farther frame counts only where the closer ones did not,
    c_j = max(c_j - sum of closer c, 0). `motions` sorted by offset, closest first."""
    out, covered = [], None
    for motion in motions:
        weights = motion.weights if covered is None else np.maximum(motion.weights - covered, 0.0)
        out.append(weights.astype(np.float32))
        covered = motion.weights.copy() if covered is None else covered + motion.weights
    return out


class MotionAnalyser:
    """For each frame: its motions relative to the frames at `offsets` before it (flow, consistency,
    cut tests). Without flow only the colour-histogram cut test runs. One per thread (DIS is stateful)."""

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.offsets = long_term_offsets(cfg.long_term) if cfg.flow else [1]
        self.estimator = FlowEstimator(cfg.flow_method, cfg.dis_preset) if cfg.flow else None
        self.history: deque[np.ndarray] = deque(maxlen=max(self.offsets))
        self.seconds, self.pairs = 0.0, 0  # time spent in pair(), and how many

    def __call__(self, frame: np.ndarray, *, needed: bool = True) -> list[Motion]:
        return [self.pair(earlier, current, offset) for earlier, current, offset in self.due(frame, needed=needed)]

    def due(self, frame: np.ndarray, *, needed: bool = True) -> list[tuple[np.ndarray, np.ndarray, int]]:
        """The pairs (earlier frame, frame, offset) whose motions `frame` needs (none where not `needed`); the
        frame then joins the history, needed or not."""
        pairs = [(self.history[-o], frame, o) for o in self.offsets if o <= len(self.history)] if needed else []
        self.history.append(frame)
        return pairs

    def pair(self, earlier: np.ndarray, frame: np.ndarray, offset: int = 1) -> Motion:
        started = time.perf_counter()
        try:
            return self._pair(earlier, frame, offset)
        finally:
            self.seconds += time.perf_counter() - started
            self.pairs += 1

    def _pair(self, earlier: np.ndarray, frame: np.ndarray, offset: int) -> Motion:
        cfg = self.cfg
        if self.estimator is None:
            distance = histogram_distance(earlier, frame)
            empty = np.zeros(frame.shape[:2], np.float32)
            return Motion(offset, np.zeros(frame.shape[:2] + (2,), np.float32), empty, 1.0, distance,
                          distance > cfg.cut_histogram)
        return analyse(earlier, frame, self.estimator, cfg, offset=offset)


def flow_workers(device_type: str) -> int:
    """Threads that compute the flow ahead of the optimiser: one where the optimiser runs on the CPU (it wants the
    cores, and a frame's flow is a small share of a CPU frame's time); on a GPU, where a 1080p frame's optimisation
    can take less time than its flow on one core, one per two cores, up to 4."""
    return 1 if device_type == "cpu" else max(1, min(4, (os.cpu_count() or 2) // 2))


class MotionStream:
    """Each (index, frame) of `items` with its motions, in order: MotionAnalyser's, for the frames `needed` says
    (the others get none). With `workers` > 1 a pool of threads, each with its own estimator, analyses up to
    `workers` frames ahead of the consumer, so the results are the same as one thread's, only sooner.
    `seconds` and `pairs`: flow time summed over the threads, and the pairs analysed."""

    def __init__(self, cfg: Config, workers: int = 1, needed: Callable[[int], bool] = lambda index: True):
        self.cfg, self.workers, self.needed = cfg, max(1, workers), needed
        self._keeper = MotionAnalyser(cfg)  # the history, on the consumer's side; with one worker, the analysis too
        self.offsets = self._keeper.offsets
        self._analysers: list[MotionAnalyser] = [self._keeper]
        self._local = threading.local()

    @property
    def seconds(self) -> float:
        return sum(a.seconds for a in self._analysers)

    @property
    def pairs(self) -> int:
        return sum(a.pairs for a in self._analysers)

    def _motions(self, pairs: list[tuple[np.ndarray, np.ndarray, int]]) -> list[Motion]:
        analyser = getattr(self._local, "analyser", None)
        if analyser is None:
            analyser = self._local.analyser = MotionAnalyser(self.cfg)
            self._analysers.append(analyser)
        return [analyser.pair(earlier, frame, offset) for earlier, frame, offset in pairs]

    def __call__(self, items: Iterable[tuple[int, np.ndarray]]) -> Iterator[tuple[int, np.ndarray, list[Motion]]]:
        if self.workers == 1:
            for index, frame in items:
                yield index, frame, self._keeper(frame, needed=self.needed(index))
            return
        pending: deque = deque()
        with ThreadPoolExecutor(self.workers, thread_name_prefix="flow") as pool:
            try:
                for index, frame in items:
                    due = self._keeper.due(frame, needed=self.needed(index))
                    pending.append((index, frame, pool.submit(self._motions, due)))
                    if len(pending) >= self.workers:
                        index, frame, motions = pending.popleft()
                        yield index, frame, motions.result()
                while pending:
                    index, frame, motions = pending.popleft()
                    yield index, frame, motions.result()
            finally:
                for *_, motions in pending:
                    motions.cancel()
