"""`nst-video bench temporal`: flicker and quality at once, over the clips of clips.py (see bench.py for the rules
every benchmark keeps).

For each clip and variant: the temporal error (RMSE 0-255 between each stylised frame and its predecessor warped
by the clip's true flow, over the pixels that stay visible), per frame, first and last quarter and worst; and the
quality of sampled later frames against the same frames optimised cold (the plain per-frame loop), judged twice:
by the objective itself, and by a view it does not optimise (the same network's layers on the other side of the
ReLUs: relu for conv and conv for relu), so that frames cannot pass by fitting the objective's own statistics.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import torch

from . import media, video
from .bench import Workspace, _table, later_evaluations
from .clips import CLIPS, Clip
from .config import Config
from .flow import warp
from .losses import build_objective
from .metrics import warped_rmse
from .runtime import select_device
from .synthetic import MECHANICS_WEIGHTS, TUTORIAL_OBJECTIVE, write_frames
from .variants import VARIANTS
from .tensors import to_tensor

JUDGES = ("objective", "other side")
# The tutorial's layers and weights with the product's pooling: under the tutorial's max pooling even frame t-1's cold
# optimum moved exactly along the true flow scores 1.82x frame t's cold optimum (3.30x on the zoom), so a judge
# against cold frames would fault stability itself; under blur pooling that ideal scores 1.10x (--pooling max: the tutorial's).
BENCH_POOLING = "blur"


@dataclass
class Judged:
    """One judge's view of a variant's sampled later frames: each term over the cold frame's, mean; their sum's
    ratio, mean over the first and the last quarter's sampled frames, and the worst."""

    content: float
    style: float
    quality: float
    first_quarter: float
    last_quarter: float
    worst: float
    worst_frame: int


@dataclass
class TemporalRow:
    clip: str
    tuned: bool
    variant: str
    label: str
    temporal_error: float          # mean over the frame pairs
    error_first: float             # ... over the first quarter's pairs
    error_last: float              # ... over the last quarter's
    error_worst: float
    worst_pair: int                # the frame whose pair with its predecessor is worst
    floor: float                   # the input's own error under the same flow (interpolation, lighting)
    judges: dict[str, Judged]
    evaluations: float             # per later frame
    cold_evaluations: int          # per frame of the plain per-frame loop
    cuts: int                      # frames the run took for scene cuts (each starts cold)
    seconds: float
    per_frame_error: list[float] = field(default_factory=list)   # index t-1: the pair (t-1, t)


def sampled_frames(count: int, samples: int | None = None) -> list[int]:
    """The later frames judged against cold: evenly spread from the middle of the first quarter to the last
    frame (5 of 16, 9 of 96), so each quarter has some, the middle frame and the last among them."""
    samples = samples or max(5, min(12, count // 10))
    first = max(1, count // 8)
    picked = {int(round(x)) for x in np.linspace(first, count - 1, samples)} | {count // 2, count - 1}
    return sorted(i for i in picked if 0 < i < count)


def quarters(count: int) -> tuple[int, int]:
    """Frames below the first bound are the first quarter, from the second on the last."""
    quarter = max(1, count // 4)
    return quarter, count - quarter


def mirrored(layers) -> dict[str, float]:
    """The same layers on the other side of their ReLU (conv4_2 <-> relu4_2)."""
    swap = {"conv": "relu", "relu": "conv"}
    return {swap[name[:4]] + name[4:]: weight for name, weight in dict(layers).items()}


class Judge:
    """Content and style terms of a frame against its input and the style, under an objective."""

    def __init__(self, cfg: Config, device: torch.device, style: np.ndarray):
        self.objective = build_objective(cfg, device)
        self.objective.set_style([to_tensor(style, device)])
        self.device = device

    def __call__(self, stylised: np.ndarray, original: np.ndarray) -> tuple[float, float]:
        self.objective.set_content(to_tensor(original, self.device))
        with torch.no_grad():
            _, parts = self.objective(to_tensor(stylised, self.device))
        return float(parts["content"]), float(parts["style"])


def judged(scores: dict[int, tuple[float, float]], cold: dict[int, tuple[float, float]], count: int) -> Judged:
    ratio = {i: sum(scores[i]) / max(sum(cold[i]), 1e-30) for i in scores}
    first, last = quarters(count)
    early = [r for i, r in ratio.items() if i < first] or [ratio[min(ratio)]]
    late = [r for i, r in ratio.items() if i >= last] or [ratio[max(ratio)]]
    worst = max(ratio, key=ratio.get)
    return Judged(float(np.mean([scores[i][0] / max(cold[i][0], 1e-30) for i in scores])),
                  float(np.mean([scores[i][1] / max(cold[i][1], 1e-30) for i in scores])),
                  float(np.mean(list(ratio.values()))), float(np.mean(early)), float(np.mean(late)), ratio[worst], worst)


def pair_errors(frames: list[np.ndarray], clip: Clip) -> list[float]:
    """Temporal error of each frame against its predecessor under the clip's flow (NaN where nothing is visible)."""
    out = []
    for t in range(1, len(frames)):
        value = warped_rmse(frames[t], frames[t - 1], clip.backward[t], clip.visible[t])
        out.append(float("nan") if value is None else value)
    return out


def difference(frames: list[np.ndarray], clip: Clip, t: int, gain: float = 4.0) -> np.ndarray:
    """|frame t - frame t-1 warped by the true flow| over the visible pixels, amplified; revealed pixels grey."""
    previous = torch.from_numpy(frames[t - 1].astype(np.float32)).permute(2, 0, 1)[None]
    moved = warp(previous, clip.backward[t])[0].permute(1, 2, 0).numpy()
    diff = np.clip(np.abs(frames[t].astype(np.float32) - moved) * gain, 0, 255).astype(np.uint8)
    diff[~clip.visible[t]] = 96
    return diff


# Settings only later frames read: a cold frame is the same whatever they are, so kept cold frames serve every variant.
LATER_ONLY = ("warm_start", "frame_iterations", "frame_scales", "temporal_weight", "temporal_detail", "temporal_sigma",
              "flow", "flow_method", "dis_preset", "flow_scale", "photometric", "boundary_rule", "unreliable_init",
              "start_warp", "long_term", "passes", "pass_iterations", "cut_reliable", "cut_histogram", "max_shot_frames",
              "chunk_overlap", "quality_slack", "frame_extension", "term_slack", "temporal_relax", "relax_every",
              "temporal_floor", "relax_share", "carry_misses", "probe_every", "reprobe_after", "probe_iterations")


def _cold_key(clip: Clip, sampled: list[int], cfg: Config, style: Path) -> str:
    """What the cold frames of a clip depend on: the clip, the frames sampled, the settings a cold frame reads, the
    weights and the style image (by content)."""
    settings = {k: v for k, v in cfg.frames_dict().items() if k not in LATER_ONLY}
    files = [hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in (cfg.weights, style)]
    text = json.dumps([clip.name, len(clip.frames), clip.frames[0].shape, sampled, settings, files], sort_keys=True,
                      default=str)
    return f"{clip.name}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def cold_frames(clip: Clip, sampled: list[int], cfg: Config, workspace: Workspace, keep: Path | None,
                progress: Callable[[str], None]) -> dict[int, np.ndarray]:
    """The sampled frames optimised cold, each with the first frame's schedule; kept in `keep` (a folder), where
    a rerun with the same clip and settings finds them instead of optimising them again."""
    folder = (keep or workspace.root / "cold") / _cold_key(clip, sampled, cfg, workspace.style)
    names = [folder / media.FRAME_NAME.format(k) for k in range(len(sampled))]
    if not all(p.exists() for p in names):
        progress(f"{clip.name}: {len(sampled)} frames cold ({cfg.iterations} iterations each)")
        source = write_frames([clip.frames[i] for i in sampled], workspace.root / f"sampled-{clip.name}")
        partial = folder.with_name(folder.name + "-partial")
        shutil.rmtree(partial, ignore_errors=True)
        video.run(video.Job(source, (workspace.style,), partial), cfg.replace(warm_start=False))
        shutil.rmtree(folder, ignore_errors=True)
        partial.rename(folder)
    return {i: media.read_image(p) for i, p in zip(sampled, names)}


def temporal_benchmark(*, clips: list[str] | None = None, variants: dict[str, tuple[str, dict]] | None = None,
                       iterations: int = 240, frame_iterations: int | None = None, frames: int | None = None,
                       width: int | None = None,
                       weights: str | None = None,
                       device: str = "cpu", seed: int = 0, cold_dir: str | Path | None = None,
                       sheet: str | Path | None = None, overrides: dict | None = None,
                       progress: Callable[[str], None] = lambda message: None) -> list[TemporalRow]:
    """Every clip (of clips.CLIPS, `frames` long and `width` px wide where given) through every variant (name ->
    (label, changes to the settings)), on the PyTorch tutorial's objective (on random weights; with `weights`, the
    product's own objective and loss weights), first frames and cold references with `iterations`, later frames
    with `frame_iterations` (None: the defaults'). The cold
    references are kept in `cold_dir` for reruns; `sheet`: write the frames sheet (write_sheet) there."""
    workspace = Workspace.create(weights, seed)
    dev = select_device(device)
    device = str(dev)
    rows: list[TemporalRow] = []
    blocks = []
    try:
        objective = {**MECHANICS_WEIGHTS, **TUTORIAL_OBJECTIVE, "pooling": BENCH_POOLING} if weights is None else {}
        style = media.read_image(workspace.style)
        for name in clips or list(CLIPS):
            clip = CLIPS[name](**({"frames": frames} if frames else {}), **({"width": width} if width else {}))
            if clip is None:
                progress(f"{name}: skipped (its source is not here)")
                continue
            count, (height, clip_width) = len(clip.frames), clip.frames[0].shape[:2]
            base = Config(weights=workspace.weights, size=max(clip_width, height), iterations=iterations,
                          device=device, seed=seed, **objective, **(overrides or {}),
                          **({"frame_iterations": frame_iterations} if frame_iterations else {}))
            source = write_frames(clip.frames, workspace.root / f"input-{name}")
            sampled = sampled_frames(count)
            cold = cold_frames(clip, sampled, base, workspace, Path(cold_dir) if cold_dir else None, progress)
            judges = {JUDGES[0]: Judge(base, dev, style),
                      JUDGES[1]: Judge(base.replace(content_layers=mirrored(base.content_layers),
                                                    style_layers=mirrored(base.style_layers)), dev, style)}
            cold_scores = {j: {i: judge(cold[i], clip.frames[i]) for i in sampled} for j, judge in judges.items()}
            floor = float(np.nanmean(pair_errors(clip.frames, clip)))
            block = []
            for variant, (label, changes) in (variants or VARIANTS).items():
                cfg = base.replace(**changes)
                progress(f"{name}: {variant}")
                output = workspace.root / f"out-{name}-{variant}".replace(".", "_")
                started = time.perf_counter()
                summary = video.run(video.Job(source, (workspace.style,), output), cfg)
                seconds = time.perf_counter() - started
                stylised = [media.read_image(output / media.FRAME_NAME.format(i)) for i in range(count)]
                errors = pair_errors(stylised, clip)
                first, last = quarters(count)
                scores = {j: judged({i: judge(stylised[i], clip.frames[i]) for i in sampled}, cold_scores[j], count)
                          for j, judge in judges.items()}
                worst = int(np.nanargmax(errors)) + 1
                rows.append(TemporalRow(name, clip.tuned, variant, label, float(np.nanmean(errors)),
                                        float(np.nanmean(errors[:first - 1] or errors[:1])),
                                        float(np.nanmean(errors[last - 1:])), errors[worst - 1], worst, floor,
                                        scores, later_evaluations(summary), iterations, len(summary.cuts), seconds, errors))
                block.append((variant, stylised))
            blocks.append((clip, sampled, cold, block))
        if sheet:
            write_sheet(blocks, sheet)
        return rows
    finally:
        workspace.cleanup()


def _labelled(image: np.ndarray, text: str) -> np.ndarray:
    out = np.full((image.shape[0] + 14, image.shape[1], 3), 255, np.uint8)
    out[14:] = image
    cv2.putText(out, text, (2, 11), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1, cv2.LINE_AA)
    return out


def write_sheet(blocks: list, path: str | Path, enlarge: int = 2) -> None:
    """One sheet: for each clip, the first, middle and last frame of each variant beside the same frames optimised
    cold, and the difference of the middle and the last frame from their predecessors (warped by the true flow,
    x4; grey: revealed)."""
    rows = []
    for clip, sampled, cold, block in blocks:
        count = len(clip.frames)
        middle, last = min(sampled, key=lambda i: abs(i - count // 2)), count - 1
        for variant, frames in block:
            tiles = [(f"{clip.name} {variant} {i}", frames[i]) for i in (0, middle, last)]
            tiles += [(f"cold {i}", cold[i]) for i in (middle, last)]
            tiles += [(f"diff {i}", difference(frames, clip, i)) for i in (middle, last)]
            big = [_labelled(cv2.resize(image, None, fx=enlarge, fy=enlarge, interpolation=cv2.INTER_NEAREST), text)
                   for text, image in tiles]
            rows.append(np.concatenate(big, axis=1))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    media.write_image(path, np.concatenate(rows, axis=0))


def temporal_table(rows: list[TemporalRow]) -> str:
    reference = {r.clip: r for r in rows if r.variant == "default"}

    def judge(j: str, r: TemporalRow) -> str:
        v = r.judges[j]
        return f"{v.quality:.2f} {v.first_quarter:.2f}/{v.last_quarter:.2f} {v.worst:.2f}"
    return _table([
        ("clip", 10, lambda r: f"{r.clip}{'' if r.tuned else '*'}"),
        ("variant", 14, lambda r: r.variant),
        ("temp.err", 8, lambda r: f"{r.temporal_error:.2f}"),
        ("1st/last q", 11, lambda r: f"{r.error_first:.2f}/{r.error_last:.2f}"),
        ("worst", 9, lambda r: f"{r.error_worst:.2f}@{r.worst_pair}"),
        ("floor", 5, lambda r: f"{r.floor:.2f}"),
        ("vs def.", 7, lambda r: f"{r.temporal_error / reference[r.clip].temporal_error:.2f}" if r.clip in reference else "-"),
        ("content", 7, lambda r: f"{r.judges[JUDGES[0]].content:.2f}"),
        ("style", 6, lambda r: f"{r.judges[JUDGES[0]].style:.2f}"),
        ("c+s 1q/lq worst", 18, lambda r: judge(JUDGES[0], r)),
        ("other side", 18, lambda r: judge(JUDGES[1], r)),
        ("eval/later", 10, lambda r: f"{r.evaluations:.1f} ({r.evaluations / r.cold_evaluations:.2f})"),
        ("cuts", 4, lambda r: str(r.cuts)),
        ("s", 5, lambda r: f"{r.seconds:.0f}")], rows,
        "(* held out: never tuned on. temp.err: RMSE 0-255 against the previous frame warped by the true flow, over\n"
        " the pixels that stay visible; floor: the input's own. c+s: content + style of sampled later frames over the\n"
        " same frames optimised cold: mean, first/last quarter, worst; by the objective and by the other side of its\n"
        " ReLUs. eval/later: evaluations per later frame, and their share of a cold frame's.)")
