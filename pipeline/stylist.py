"""The stylist: the model, the objective (style targets set once) and how one frame starts (cold, or warm
from the previous result along the flow) and is optimised, retried once where the loss is not finite."""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import numpy as np
import torch

from . import color, media
from .config import Config
from .errors import NSTError, NonFiniteLoss
from .events import Notice
from .flow import Motion, inpaint, long_term_weights, matched_fill, warp
from .losses import TemporalTarget, build_objective
from .optimise import Plan, Result, stylise
from .tensors import noise_like, resize_image, to_frame, to_tensor


class Stylist:
    """Holds the model, the objective (style targets set once) and the rules for starting a frame."""

    def __init__(self, cfg: Config, device: torch.device, styles: list[np.ndarray], first_content: np.ndarray,
                 *, init_image: np.ndarray | None = None, emit: Callable[[Any], None] = lambda e: None,
                 model=None):
        self.cfg, self.device, self.emit = cfg, device, emit
        self.objective = build_objective(cfg, device, model=model)
        self.model = self.objective.model
        style_tensors = [to_tensor(s, device) for s in styles]
        if cfg.original_colors:  # luminance-only: styles as grey matched to the first frame's luminance
            content = to_tensor(first_content, device)
            style_tensors = [color.match_luminance(s, content) for s in style_tensors]
        self.objective.set_style(style_tensors, cfg.style_blend)
        self.init_image = init_image

    def space(self, image: torch.Tensor) -> torch.Tensor:
        """What the optimiser works on: the image itself, or its luminance as grey (original colours)."""
        return color.grey(image) if self.cfg.original_colors else image

    def finish(self, result: torch.Tensor, content: torch.Tensor) -> np.ndarray:
        if self.cfg.original_colors:
            result = color.recombine(result, content)
        return to_frame(result)

    def cold_start(self, content: torch.Tensor, index: int) -> torch.Tensor:
        if self.cfg.init == "noise":
            return noise_like(content, self.cfg.seed * 1_000_003 + index)
        if self.cfg.init == "content":
            return self.space(content)
        height, width = content.shape[-2:]
        return self.space(to_tensor(media.resize(self.init_image, (width, height)), self.device))

    def run(self, index: int, content_frame: np.ndarray, init: torch.Tensor, plan: Plan,
            temporal: list[TemporalTarget], *, save_every: int = 0,
            on_snapshot: Callable | None = None) -> tuple[np.ndarray, Result]:
        """Optimise one frame; a non-finite loss restarts it once from the same start with Adam at a
        lower step size (logged), and a second failure is an error naming the frame."""
        content = to_tensor(content_frame, self.device)
        target = self.space(content)
        def snapshot(iteration: int, image: torch.Tensor, losses: dict) -> None:
            on_snapshot(iteration, self.finish(image, resize_image(content, tuple(image.shape[-2:]))), losses)
        kwargs = dict(temporal=temporal, frame=index, callback=self.emit, save_every=save_every,
                      on_snapshot=snapshot if on_snapshot else None)
        try:
            result = stylise(target, init, self.objective, plan, **kwargs)
        except NonFiniteLoss as error:
            safer = 0.5 * plan.step_size if plan.optimizer == "adam" else 0.01
            self.emit(Notice(f"{error}; restarting frame {index} with Adam at lr {safer:g}"))
            retry = dataclasses.replace(plan, optimizer="adam", step_size=safer)
            try:
                result = stylise(target, init, self.objective, retry, **kwargs)
            except NonFiniteLoss as again:
                raise NSTError(f"frame {index} failed twice with a non-finite loss ({again}); "
                               "try a lower --lr or --precision fp32") from None
        return self.finish(result.image, content), result

    def warm_start(self, index: int, content_frame: np.ndarray, previous: dict[int, np.ndarray],
                   motions: list[Motion]) -> tuple[torch.Tensor, list[TemporalTarget]]:
        """Frame t's start and temporal targets from earlier results (offset -> frame) and motions."""
        cfg = self.cfg
        content = to_tensor(content_frame, self.device)
        prev = self.space(to_tensor(previous[1], self.device))
        if not cfg.flow:
            return prev, []  # plain warm start
        usable = [m for m in motions if m.offset in previous]
        weights = long_term_weights(usable)
        temporal = []
        warped_closest = None
        for motion, w in zip(usable, weights):
            earlier = self.space(to_tensor(previous[motion.offset], self.device))
            warped = warp(earlier, motion.backward)
            if warped_closest is None:
                warped_closest = warped if cfg.start_warp == "bilinear" else warp(earlier, motion.backward, cfg.start_warp)
            temporal.append(TemporalTarget(warped, torch.from_numpy(w)[None, None].to(self.device)))
        if cfg.unreliable_init == "warped":
            return warped_closest, temporal
        if cfg.unreliable_init == "inpaint":
            return inpaint(warped_closest, usable[0].weights), temporal
        if cfg.unreliable_init == "matched":
            return matched_fill(self.space(content), warped_closest, usable[0].weights), temporal
        c = torch.from_numpy(usable[0].weights)[None, None].to(self.device)
        fill = (noise_like(content, cfg.seed * 1_000_003 + index) if cfg.unreliable_init == "noise"
                else self.space(content))
        init = c * warped_closest + (1 - c) * fill
        return init, temporal
