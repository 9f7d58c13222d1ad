"""The figures of Gatys et al. 2016 that explain the method, from any image, with the product's own VGG19,
objective and optimiser:

- content reconstructions (Fig. 1, after Mahendran & Vedaldi 2015): from white noise, an image whose
  features match the image's at one layer only;
- style reconstructions (Fig. 1): from white noise, an image whose Gram matrices match on a growing subset
  of layers; the texture grows from fine to large-scale structure while the scene's arrangement is lost;
- the alpha/beta sweep (Fig. 3): one stylisation per content/style ratio and content layer.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from . import media
from .config import VGG19_LAYERS, Config
from .errors import ConfigError
from .figures import image_grid
from .losses import Objective, build_network
from .optimise import Plan, Result, stylise
from .runtime import select_device
from .tensors import noise_like, to_frame, to_tensor

CONTENT_LAYERS = ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")


def parse_layers(text: str | None, default: Sequence[str]) -> list[str]:
    """Comma-separated layer names, each checked."""
    if text is None:
        return list(default)
    layers = [name.strip() for name in text.split(",")]
    if not layers or any(not name for name in layers):
        raise ConfigError(f"empty layer name in {text!r}")
    for name in layers:
        if name not in VGG19_LAYERS:
            raise ConfigError(f"unknown layer {name!r} (VGG19 has {VGG19_LAYERS[0]} to {VGG19_LAYERS[-1]}: "
                              f"{', '.join(VGG19_LAYERS)})")
    return layers


def parse_subsets(text: str | None) -> list[list[str]]:
    """Style subsets: "a,b,c" grows cumulatively ([a], [a,b], [a,b,c], as in the paper); "a;a,b;c" gives
    each subset explicitly."""
    if text is None:
        return [list(CONTENT_LAYERS[: i + 1]) for i in range(len(CONTENT_LAYERS))]
    if ";" in text:
        subsets = []
        for part in text.split(";"):
            if not part.strip():
                raise ConfigError(f"empty layer subset in {text!r}")
            subsets.append(parse_layers(part, ()))
        return subsets
    layers = parse_layers(text, ())
    return [layers[: i + 1] for i in range(len(layers))]


def panel_layers(kind: str, text: str | None) -> list[list[str]]:
    """The layers of each panel of a reconstruction figure: one layer each for content, subsets for style."""
    return [[layer] for layer in parse_layers(text, CONTENT_LAYERS)] if kind == "content" else parse_subsets(text)


@dataclass
class Panel:
    label: str
    image: np.ndarray
    result: Result | None = None


def _optimise_one_term(objective: Objective, target: torch.Tensor, iterations: int, seed: int,
                       callback: Callable | None) -> Result:
    """Optimise from white noise. The term is scaled so the noise start scores 1: with a single term only the
    shape of the objective matters, and the figures then read the same with any weights file."""
    init = noise_like(target, seed)
    objective.set_content(target)
    with torch.no_grad():
        start, _ = objective(init)
    scale = 1.0 / max(float(start), 1e-30)
    objective.content_weight *= scale
    objective.style_weight *= scale
    return stylise(target, init, objective, Plan((((target.shape[-2], target.shape[-1]), iterations),)),
                   callback=callback)


class Reconstructor:
    """One image's reconstructions from single terms, on the network a run with `cfg` uses (its weights and
    pooling); only the terms differ: one content layer, or style layers weighted equally, no TV."""

    def __init__(self, image: np.ndarray, cfg: Config, layers: Sequence[str] = ()):
        self.device = select_device(cfg.device)
        width, height = media.working_size(image.shape[1], image.shape[0], cfg.size)
        self.image = media.resize(image, (width, height))
        self.target = to_tensor(self.image, self.device)
        self.cfg = cfg.replace(tv_weight=0.0, temporal_weight=0.0)
        self.model = build_network(self.cfg, self.device, layers or VGG19_LAYERS[-1:])

    def _objective(self, content: dict[str, float], style: dict[str, float]) -> Objective:
        return Objective.from_config(self.model, self.cfg.replace(
            content_layers=content, style_layers=style, content_weight=float(bool(content)),
            style_weight=float(bool(style))))

    def content(self, layer: str, iterations: int, seed: int = 0, callback: Callable | None = None) -> Panel:
        objective = self._objective({layer: 1.0}, {})
        result = _optimise_one_term(objective, self.target, iterations, seed, callback)
        return Panel(layer, to_frame(result.image), result)

    def style(self, layers: Sequence[str], iterations: int, seed: int = 0, callback: Callable | None = None) -> Panel:
        objective = self._objective({}, {name: 1.0 / len(layers) for name in layers})
        objective.set_style([self.target])
        result = _optimise_one_term(objective, self.target, iterations, seed, callback)
        return Panel(" + ".join(layers) if len(layers) <= 2 else f"{layers[0]} ... {layers[-1]}",
                     to_frame(result.image), result)


def label(panel: Panel) -> str:
    if panel.result is None:
        return panel.label
    return f"{panel.label}\nloss {panel.result.losses['total']:.3g} (noise: 1)"


def save_panels(panels: Sequence[Panel], folder: Path, prefix: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for index, panel in enumerate(panels):
        name = panel.label.replace(" ", "").replace("+", "_").replace("...", "-").replace("/", "_")
        media.write_image(folder / f"{prefix}_{index:02d}_{name}.png", panel.image)


def sweep(content: np.ndarray, style: np.ndarray, ratios: Sequence[float], content_layers: Sequence[str],
          cfg: Config, callback: Callable | None = None) -> list[list[Panel]]:
    """One stylisation per (content layer, alpha/beta ratio): rows are layers, columns ratios (Fig. 3).
    alpha = ratio and beta = 1 in cfg's loss scaling (the paper's ratios assume `loss_scale: paper`)."""
    device = select_device(cfg.device)
    width, height = media.working_size(content.shape[1], content.shape[0], cfg.size)
    target = to_tensor(media.resize(content, (width, height)), device)
    model = build_network(cfg, device, content_layers)
    style_tensor = to_tensor(style, device)
    init = noise_like(target, cfg.seed) if cfg.init == "noise" else target
    plan = Plan.for_frame(cfg, (height, width), first=True)
    rows = []
    for layer in content_layers:
        row = []
        for ratio in ratios:
            objective = Objective.from_config(model, cfg.replace(content_layers={layer: 1.0}, content_weight=ratio,
                                                                 style_weight=1.0, temporal_weight=0.0))
            objective.set_style([style_tensor])
            result = stylise(target, init, objective, plan, callback=callback)
            row.append(Panel(f"{layer}, \u03b1/\u03b2 = {ratio:g}", to_frame(result.image), result))
        rows.append(row)
    return rows


FIGURE_TITLES = {"content": "Content reconstructions from single layers",
                 "style": "Style reconstructions from growing sets of layers"}


def sweep_figure(content: np.ndarray, style: np.ndarray, ratios: Sequence[float], content_layers: Sequence[str],
                 cfg: Config, target: Path, panels: str | None, progress: Any) -> int:
    """`nst-video sweep`: the sweep's panels in a labelled grid (a column per ratio) saved as `target`, each
    panel also under `panels` if given; `progress` sees every step and each panel's end. Returns the count."""
    def callback(step: Any) -> None:
        progress(step)
        if step.iteration >= step.iterations:
            progress.next_panel(step.iterations)
    rows = sweep(content, style, ratios, content_layers, cfg, callback)
    flat = [panel for row in rows for panel in row]
    panel_figure(flat, [p.label for p in flat], target, "Content/style trade-off (\u03b1/\u03b2) per content layer",
                 "sweep", panels, columns=len(ratios))
    return len(flat)

def reconstruction_figure(image: np.ndarray, target: Path, kind: str, subsets: Sequence[Sequence[str]], cfg: Config,
                          iterations: int, *, seed: int = 0, progress: Callable | None = None,
                          panels: str | Path | None = None) -> int:
    """Fig. 1: the original, then one `kind` ("content" or "style") reconstruction per layer subset, in a
    labelled grid at `target` (and each panel as a PNG in `panels`). `progress` receives each optimisation
    step and `progress.next_panel(iterations)` after each panel. Returns the number of panels."""
    maker = Reconstructor(image, cfg, layers=sorted({layer for subset in subsets for layer in subset}))
    results = [Panel("original", maker.image)]
    for subset in subsets:
        if kind == "content":
            results.append(maker.content(subset[0], iterations, seed, callback=progress))
        else:
            results.append(maker.style(subset, iterations, seed, callback=progress))
        if progress is not None:
            progress.next_panel(iterations)
    panel_figure(results, [label(p) for p in results], target, FIGURE_TITLES[kind], kind, panels)
    return len(results)


def panel_figure(results: Sequence[Panel], labels: Sequence[str], target: Path, title: str, prefix: str,
                 panels: str | Path | None, columns: int | None = None) -> None:
    """A figure command's labelled grid, and each panel as a PNG in `panels`."""

    image_grid([p.image for p in results], labels, target, columns=columns, title=title)
    if panels:
        save_panels(results, Path(panels), prefix)
