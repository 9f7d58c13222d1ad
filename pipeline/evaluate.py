"""`nst-video eval`: read two clips in step, measure their temporal error, write JSON/CSV/plot."""
from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from . import media, probe
from .config import Config
from .errors import NSTError
from .figures import line_plot
from .files import write_file, write_json
from .losses import build_objective
from .metrics import Evaluation, FrameQuality, temporal_errors
from .optimise import Plan, stylise
from .runtime import select_device
from .tensors import noise_like, resize_image, to_tensor


class Scorer:
    """Rates stylised frames with a run's own objective (the same layers, pooling and weights, built by the
    one factory), and optimises sampled input frames cold, as a run's first frame is, for reference."""

    def __init__(self, cfg: Config, style: Path, size: tuple[int, int], reference_every: int = 0):
        import torch

        self.cfg, self.reference_every, self.torch, self.to_tensor = cfg, reference_every, torch, to_tensor
        self.device = select_device(cfg.device)
        self.objective = build_objective(cfg, self.device)
        self.objective.set_style([to_tensor(media.read_image(style), self.device)], None)
        self.size = (size[1], size[0])  # (H, W)

    def __call__(self, index: int, stylised: np.ndarray, original: np.ndarray) -> FrameQuality:
        content = self.to_tensor(original, self.device)
        self.objective.set_content(resize_image(content, self.size))
        with self.torch.no_grad():
            _, parts = self.objective(self.to_tensor(stylised, self.device))
        rated = FrameQuality(index, float(parts["content"]), float(parts["style"]))
        if self.reference_every and index % self.reference_every == 0:
            start = noise_like(content, self.cfg.seed * 1_000_003 + index) if self.cfg.init == "noise" else content
            result = stylise(content, start, self.objective, Plan.for_frame(self.cfg, self.size, first=True),
                             frame=index)
            rated.reference_content, rated.reference_style = result.losses["content"], result.losses["style"]
        return rated


def evaluate_clips(stylised: Path, original: Path, *, size: int | None = None, style: Path | None = None,
                   cfg: Config | None = None, reference_every: int = 0) -> Evaluation:
    """Temporal error of STYLISED against ORIGINAL; with `style`, each frame's content and style terms under
    `cfg`'s objective, and every `reference_every`th frame's cold optimisation for comparison."""
    info_s, info_o = probe.inspect_input(stylised), probe.inspect_input(original)
    for info, name in ((info_s, "STYLISED"), (info_o, "ORIGINAL")):
        if info.kind == "image" or info.frames == 1:
            raise NSTError(f"{name} has one frame: temporal error needs at least 2")
    warnings = []
    aspect_s, aspect_o = info_s.width / info_s.height, info_o.width / info_o.height
    if abs(aspect_s - aspect_o) / aspect_s > 0.02:
        raise NSTError(f"the clips have different shapes ({info_s.width}x{info_s.height} and "
                       f"{info_o.width}x{info_o.height})")
    target = (info_s.width, info_s.height) if size is None else media.working_size(info_s.width, info_s.height, size)
    if (info_o.width, info_o.height) != (info_s.width, info_s.height):
        warnings.append(f"ORIGINAL is {info_o.width}x{info_o.height}, STYLISED {info_s.width}x{info_s.height}: "
                        f"both are compared at {target[0]}x{target[1]}")
    score = Scorer(cfg or Config(), style, target, reference_every) if style else None
    readers = [media.FrameReader(info_s, target), media.FrameReader(info_o, target)]
    try:
        result = temporal_errors(iter(readers[0]), iter(readers[1]), cfg=cfg, score=score)
    except ValueError as error:
        raise NSTError(str(error)) from None
    finally:
        for reader in readers:
            reader.close()
    result.warnings = warnings + readers[0].warnings + readers[1].warnings
    return result


def write_outputs(result: Evaluation, *, json_file: str | None = None, csv_file: str | None = None,
                  plot: str | None = None) -> None:
    if json_file:
        write_json(json_file, result.to_dict())
    if csv_file:
        text = io.StringIO(newline="")
        writer = csv.writer(text)
        writer.writerow(["frame", "temporal_error", "original_floor", "reliable_fraction", "cut", "content", "style",
                         "reference_content", "reference_style", "ratio"])
        errors = {f.index: f for f in result.frames}
        rated = {q.index: q for q in result.quality}
        for index in sorted(set(errors) | set(rated)):
            f, q = errors.get(index), rated.get(index)
            writer.writerow([index, *((f.stylised, f.original, round(f.reliable, 4), int(f.cut)) if f else ("",) * 4),
                             *((q.content, q.style, q.reference_content, q.reference_style, q.ratio) if q
                               else ("",) * 5)])
        write_file(csv_file, text.getvalue().encode())
    if plot:
        x = [f.index for f in result.frames]
        nan = float("nan")
        series = {"stylised": [nan if f.stylised is None else f.stylised for f in result.frames],
                  "original (floor)": [nan if f.original is None else f.original for f in result.frames]}
        secondary = ({"style loss": [f.style for f in result.frames]}
                     if any(f.style is not None for f in result.frames) else None)
        line_plot(x, series, plot, xlabel="frame", ylabel="temporal error (RMSE, 0-255)",
                  title="Temporal error per frame", secondary=secondary, secondary_label="style loss")


def report_lines(result: Evaluation) -> list[str]:
    """What `eval` prints: the temporal error against its floor, the terms with --style, the drift with
    --reference-every."""
    figures = result.to_dict()
    cuts = f"; scene cuts at {', '.join(map(str, figures['cuts']))}" if figures["cuts"] else ""
    lines = [f"temporal error (RMSE, 0-255): {figures['temporal_error']:.3f} stylised, "
             f"{figures['original_floor']:.3f} original (floor), {len(result.frames)} frame pairs{cuts}"]
    if figures["style_loss"] is not None:
        content = sum(q.content for q in result.quality) / len(result.quality)
        lines.append(f"style term (mean per frame): {figures['style_loss']:.5g}; content term: {content:.5g}")
    drift = figures["drift"]
    if drift:
        lines.append(f"content + style against cold optimisation of the same frames: {drift['mean_ratio']:.3f}x "
                     f"mean, worst {drift['worst_ratio']:.3f}x at frame {drift['worst_frame']}; first quarter "
                     f"{drift['first_quarter']:.3f}x, last quarter {drift['last_quarter']:.3f}x")
    return lines
