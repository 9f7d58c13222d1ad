"""Stylise one frame: optimise its pixels against an `Objective`, coarse to fine.

`stylise(content, init, objective, plan)` runs L-BFGS (default) or Adam on the image, one scale after
another, and returns the image with its loss history. One iteration is one evaluation of the objective
(one VGG forward and backward pass), the unit every count in nst-video uses.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .config import Config, NSTError
from .losses import Objective, TemporalTarget, resize_image


COARSE_SHARE = 0.8  # at most this share of a frame's iterations goes to the coarse scales


class NonFiniteLoss(NSTError):
    """The loss became NaN or infinite (a step too large, or bf16 overflow)."""


def to_tensor(frame: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """(H, W, 3) uint8 RGB -> (1, 3, H, W) float32 in [0, 1]."""
    frame = np.ascontiguousarray(frame) if frame.flags.writeable else frame.copy()  # decoded frames are read-only
    return torch.from_numpy(frame).to(device).permute(2, 0, 1)[None].float().div_(255).contiguous()


def to_frame(image: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) in [0, 1] -> (H, W, 3) uint8 RGB (rounded, clamped)."""
    return image[0].detach().clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()


def scaled_size(size: tuple[int, int], longest: int) -> tuple[int, int]:
    """(H, W) scaled so the longest side is `longest`."""
    factor = longest / max(size)
    return max(8, round(size[0] * factor)), max(8, round(size[1] * factor))


@dataclass(frozen=True)
class Plan:
    """How to optimise one frame: (size (H, W), iteration cap) per scale, finest last."""

    scales: tuple[tuple[tuple[int, int], int], ...]
    optimizer: str = "lbfgs"
    step_size: float = 1.0
    tolerance: float = 0.0
    tolerance_window: int = 20
    log_every: int = 10

    @property
    def iterations(self) -> int:
        return sum(n for _, n in self.scales)

    @classmethod
    def for_frame(cls, cfg: Config, size: tuple[int, int], *, first: bool, iterations: int | None = None,
                  optimizer: str | None = None, step_size: float | None = None) -> "Plan":
        """The multi-scale schedule of cfg for a frame of `size` (H, W). The first frame (or a cut) runs the
        coarse scales then the rest of `iterations` at full size; later frames, already warm, run
        `frame_iterations` at full size only unless `frame_scales` is set."""
        total = iterations if iterations is not None else (cfg.iterations if first else cfg.frame_iterations)
        coarse = cfg.coarse_sizes() if (first or cfg.frame_scales) else []
        if coarse and not first:  # later frames: the same shape of schedule within their smaller budget
            ratio = total / cfg.iterations
            coarse = [(s, max(1, round(n * ratio))) for s, n in coarse]
        minimum, _ = cfg.min_side()  # a coarse scale VGG19 cannot take (an elongated frame) is left out
        coarse = [(s, n) for s, n in coarse if s < max(size) and min(scaled_size(size, s)) >= minimum]
        if sum(n for _, n in coarse) > COARSE_SHARE * total:  # a small budget: shrink the coarse scales with it
            factor = COARSE_SHARE * total / sum(n for _, n in coarse)
            coarse = [(s, max(1, round(n * factor))) for s, n in coarse]
        final = max(1, total - sum(n for _, n in coarse))
        scales = tuple((scaled_size(size, s), n) for s, n in coarse) + ((size, final),)
        return cls(scales, optimizer or cfg.optimizer, step_size if step_size is not None else cfg.step_size,
                   cfg.tolerance, cfg.tolerance_window, cfg.log_every)


@dataclass
class Step:
    """A progress report, sent every `log_every` iterations (the only host synchronisation points)."""

    frame: int
    iteration: int
    iterations: int
    size: tuple[int, int]
    losses: dict[str, float]
    seconds: float


@dataclass
class Result:
    image: torch.Tensor                      # (1, 3, H, W) in [0, 1]
    iterations: int                          # evaluations used (<= plan.iterations)
    losses: dict[str, float]                 # last evaluated losses (weighted parts and total)
    initial_losses: dict[str, float]         # losses of the starting image
    history: list[dict[str, float]] = field(default_factory=list)  # every iteration, in order
    converged: bool = False
    seconds: float = 0.0
    sizes: list[tuple[int, int]] = field(default_factory=list)     # the scales visited


def _resize_adam_state(state: dict, size: tuple[int, int]) -> dict:
    """Carry Adam's moment estimates to the next scale: the mean bicubically, the (non-negative) second
    moment bilinearly, clamped at zero."""
    state = {k: (v.clone() if torch.is_tensor(v) else v) for k, v in state.items()}
    state["exp_avg"] = F.interpolate(state["exp_avg"], size=size, mode="bicubic", align_corners=False)
    state["exp_avg_sq"] = F.interpolate(state["exp_avg_sq"], size=size, mode="bilinear", align_corners=False).clamp_min(0)
    return state


def _to_floats(parts_list: list[dict[str, torch.Tensor]]) -> list[dict[str, float]]:
    """One host transfer for a whole run of recorded losses."""
    if not parts_list:
        return []
    keys = list(parts_list[0])
    stacked = torch.stack([torch.stack([p[k] for k in keys]) for p in parts_list]).detach().float().cpu()
    return [dict(zip(keys, row.tolist())) for row in stacked]


def _with_total(losses: dict[str, float]) -> dict[str, float]:
    return {**losses, "total": sum(losses.values())}


def stylise(content: torch.Tensor, init: torch.Tensor, objective: Objective, plan: Plan, *,
            temporal: list[TemporalTarget] | None = None, frame: int = 0,
            callback: Callable[[Step], None] | None = None, save_every: int = 0,
            on_snapshot: Callable[[int, torch.Tensor, dict[str, float]], None] | None = None) -> Result:
    """Optimise an image that has `content`'s features and the objective's style, starting from `init`.

    content, init: (1, 3, H, W) in [0, 1] at full size (resized per scale here). `temporal` targets (warped
    previous results and their weights) are resized with each scale. Raises NonFiniteLoss if the loss
    stops being finite.
    """
    start = time.perf_counter()
    image = init
    recorded: list[dict[str, torch.Tensor]] = []
    done = 0
    converged = False
    adam_state: dict | None = None
    sizes: list[tuple[int, int]] = []
    history_floats: list[dict[str, float]] = []
    initial: dict[str, float] | None = None

    for size, cap in plan.scales:
        sizes.append(size)
        objective.set_content(resize_image(content, size))
        objective.set_temporal([target.resized(size) for target in temporal or []])
        # NCHW-contiguous whatever the model's layout: torch's L-BFGS flattens the gradient with .view(-1)
        x = resize_image(image.detach(), size).clone(memory_format=torch.contiguous_format)
        x.requires_grad_(True)
        scale_start = done
        converged = False  # reported for the final scale
        window: list[tuple[int, float]] = []

        def evaluate() -> torch.Tensor:
            nonlocal done
            total, parts = objective(x)
            total.backward()
            recorded.append({k: v.detach() for k, v in parts.items()})
            done += 1
            return total

        if plan.optimizer == "lbfgs":
            optimizer = torch.optim.LBFGS([x], lr=plan.step_size, max_iter=1, max_eval=1, history_size=100,
                                          tolerance_grad=1e-9, tolerance_change=1e-12)
        else:
            optimizer = torch.optim.Adam([x], lr=plan.step_size)
            if adam_state is not None:  # carry the moments across scales
                optimizer.state[x] = _resize_adam_state(adam_state, size)

        def closure() -> torch.Tensor:
            optimizer.zero_grad(set_to_none=True)
            return evaluate()

        while done - scale_start < cap:
            remaining = cap - (done - scale_start)
            chunk = min(remaining, plan.log_every - done % plan.log_every)
            if save_every:
                chunk = min(chunk, save_every - done % save_every)
            before = done
            if plan.optimizer == "lbfgs":
                optimizer.param_groups[0]["max_iter"] = chunk
                optimizer.param_groups[0]["max_eval"] = chunk
                optimizer.step(closure)
            else:
                for _ in range(chunk):
                    optimizer.zero_grad(set_to_none=True)
                    evaluate()
                    optimizer.step()
                    with torch.no_grad():  # Adam keeps the box constraint [0, 1] (L-BFGS is clamped at the end)
                        x.clamp_(0, 1)
            # ---- a host synchronisation point: read the losses recorded since the last one ----
            new = _to_floats(recorded[len(history_floats):])
            history_floats.extend(_with_total(h) for h in new)
            if initial is None and history_floats:
                initial = history_floats[0]
            last = history_floats[-1] if history_floats else {"total": 0.0}
            if not math.isfinite(last["total"]):
                raise NonFiniteLoss(f"frame {frame}: the loss became {last['total']} at iteration {done}")
            if callback:
                callback(Step(frame, done, plan.iterations, size, last, time.perf_counter() - start))
            if on_snapshot and save_every and done % save_every == 0:
                on_snapshot(done, x.detach().clamp(0, 1).clone(), last)
            if done - before < chunk:  # L-BFGS found nothing left to improve
                converged = True
                break
            window.append((done, last["total"]))
            if plan.tolerance > 0:
                old = [loss for it, loss in window if it <= done - plan.tolerance_window]
                if old and (old[-1] - last["total"]) < plan.tolerance * abs(old[-1]):
                    converged = True
                    break
        image = x.detach()
        if plan.optimizer == "adam":
            adam_state = optimizer.state.get(x)

    history_floats.extend(_with_total(h) for h in _to_floats(recorded[len(history_floats):]))
    objective.set_temporal([])
    final = history_floats[-1] if history_floats else {"total": 0.0}
    if not all(math.isfinite(v) for v in final.values()) or not torch.isfinite(image).all():
        raise NonFiniteLoss(f"frame {frame}: the loss became {final.get('total')} at iteration {done}")
    image = image.contiguous().clamp(0, 1)
    if sizes[-1] != tuple(content.shape[-2:]):
        image = resize_image(image, tuple(content.shape[-2:])).clamp(0, 1)
    return Result(image, done, final, initial or final, history_floats, converged,
                  time.perf_counter() - start, sizes)


def noise_like(reference: torch.Tensor, seed: int) -> torch.Tensor:
    """Uniform white noise in [0, 1], the same for the same seed on every device."""
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(reference.shape, generator=generator).to(reference.device)
