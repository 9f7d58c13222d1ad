"""`nst-video eval`: read two clips in step, measure their temporal error, write JSON/CSV/plot."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np

from . import media
from .config import NSTError
from .metrics import Evaluation, temporal_errors


def _style_loss_function(style: Path, weights: str | None, device_name: str, size: tuple[int, int]):
    """Style loss (Gatys eq. 5, default layers and weights, `mean` scaling) of a frame against STYLE."""
    import torch

    from .config import Config
    from .losses import Objective
    from .optimise import to_tensor
    from .runtime import select_device
    from .vgg import build_model

    cfg = Config()
    device = select_device(device_name)
    model = build_model(weights, cfg.style_layers, device=device)
    objective = Objective(model, {}, cfg.style_layers, content_weight=0.0, style_weight=1.0)
    objective.set_style([to_tensor(media.read_image(style), device)])
    objective.prepare((size[1], size[0]))

    def loss(frame: np.ndarray) -> float:
        with torch.no_grad():
            _, parts = objective(to_tensor(frame, device))
        return float(parts["style"])
    return loss


def evaluate_clips(stylised: Path, original: Path, *, size: int | None = None, style: Path | None = None,
                   weights: str | None = None, device: str = "auto") -> Evaluation:
    info_s, info_o = media.inspect_input(stylised), media.inspect_input(original)
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
    style_loss = _style_loss_function(style, weights, device, target) if style else None
    readers = [media.FrameReader(info_s, target), media.FrameReader(info_o, target)]
    try:
        result = temporal_errors(iter(readers[0]), iter(readers[1]), style_loss=style_loss)
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
        media.write_file(json_file, json.dumps(result.to_dict(), indent=1).encode())
    if csv_file:
        text = io.StringIO(newline="")
        writer = csv.writer(text)
        writer.writerow(["frame", "temporal_error", "original_floor", "reliable_fraction", "cut", "style_loss"])
        for f in result.frames:
            writer.writerow([f.index, f.stylised, f.original, round(f.reliable, 4), int(f.cut), f.style])
        media.write_file(csv_file, text.getvalue().encode())
    if plot:
        from .figures import line_plot

        x = [f.index for f in result.frames]
        nan = float("nan")
        series = {"stylised": [nan if f.stylised is None else f.stylised for f in result.frames],
                  "original (floor)": [nan if f.original is None else f.original for f in result.frames]}
        secondary = ({"style loss": [f.style for f in result.frames]}
                     if any(f.style is not None for f in result.frames) else None)
        line_plot(x, series, plot, xlabel="frame", ylabel="temporal error (RMSE, 0-255)",
                  title="Temporal error per frame", secondary=secondary, secondary_label="style loss")
