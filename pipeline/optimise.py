"""Stylise one frame: optimise its pixels against an `Objective`, coarse to fine.

`stylise(content, init, objective, plan)` runs L-BFGS (default) or Adam on the image, one scale after
another, and returns the image with its loss history. One iteration is one evaluation of the objective
(one VGG forward and backward pass), the unit every count in nst-video uses.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn.functional as F

from .config import Config
from .errors import NonFiniteLoss
from .events import Step
from .losses import Objective, TemporalTarget
from .tensors import resize_image


COARSE_SHARE = 0.8  # at most this share of a frame's iterations goes to the coarse scales


COLD_MARGIN = 0.02  # how far inside (0, 1) a cold start begins under L-BFGS's tanh bound (see BOUND_EPS)


class _Spent(Exception):
    """A scale's evaluations are used up in the middle of an L-BFGS line search."""


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
    # At the final scale, the frame stops as soon as content + style are at or below this (None: no level; the
    # tolerance stop applies instead).
    quality_target: float | None = None
    # And content and style each at or below these (None: judged on their sum only).
    term_targets: tuple[float, float] | None = None
    # A frame still above quality_target at the final scale's cap keeps going up to this many iterations there.
    extend_to: int = 0
    # The temporal weight's factor at the final scale's start, and what it is multiplied by every `relax_every`
    # iterations the frame is still above quality_target (1: never).
    temporal_scale: float = 1.0
    relax: float = 1.0
    relax_every: int = 0
    relax_floor: float = 0.0   # the factor is never relaxed below this
    # How far inside (0, 1) L-BFGS's start is moved (see BOUND_EPS): wide for a cold start, narrow for a warm one.
    start_margin: float = COLD_MARGIN

    @property
    def iterations(self) -> int:
        return sum(n for _, n in self.scales)

    @classmethod
    def for_frame(cls, cfg: Config, size: tuple[int, int], *, first: bool, iterations: int | None = None,
                  optimizer: str | None = None, step_size: float | None = None, **stop: Any) -> "Plan":
        """The multi-scale schedule of cfg for a frame of `size` (H, W). The first frame (or a cut) runs the
        coarse scales then the rest of `iterations` at full size; later frames, already warm, run
        `frame_iterations` at full size only unless `frame_scales` is set. `stop`: a later frame's earned stop
        and relaxation (quality_target .. relax_floor), which temporal.later_plan decides."""
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
                   cfg.tolerance, cfg.tolerance_window, cfg.log_every, start_margin=COLD_MARGIN if first else BOUND_EPS,
                   **stop)


@dataclass
class Result:
    image: torch.Tensor                      # (1, 3, H, W) in [0, 1]
    iterations: int                          # evaluations used (<= plan.iterations)
    losses: dict[str, float]                 # last evaluated losses (weighted parts and total)
    history: list[dict[str, float]] = field(default_factory=list)  # every iteration, in order
    converged: bool = False
    seconds: float = 0.0
    sizes: list[tuple[int, int]] = field(default_factory=list)     # the scales visited
    temporal_scale: float = 1.0              # the temporal weight's factor at the end (see Plan.relax)
    relaxed: int = 0                         # how many times the temporal weight was relaxed


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


# A departure from Gatys et al., who leave L-BFGS unconstrained and clip the result: unconstrained, about 6% of
# the pixels leave [0, 1], and the clipped frame that is saved scores far worse than the optimiser believed
# (96 px, the PyTorch tutorial's objective, 120 iterations: content + style 0.40 evaluated, 2.31 once clipped),
# and on a static shot that damage grew frame after frame (0.48 -> 0.80 over 5 identical frames). Clamping
# inside the closure, as the tutorial does, made 64 px frames end worse than they started. Optimising z with
# the image (tanh(z) + 1) / 2 keeps every evaluation in range: 0.37 saved for the tutorial's objective, 0.045
# against 0.063 (clipped) for the product's objective on random weights.
# Two guards keep the bound from stalling: a cold start is moved 0.02 inside it (Plan.start_margin; where tanh is
# flat, a black frame started from its content stayed at content + style 11.8 for its 12 iterations; 0.98 from
# 0.02), a warm one, already inside, only BOUND_EPS (0.02 would move every frame of a static shot off its
# predecessor's optimum: it then ran to its cap), and a strong-Wolfe line search keeps a quasi-Newton step from throwing pixels into the flat tails (an
# inverted cut frame ended at 11.4 from 2.6 without it, 0.22 with it). A line search cut by the scale's cap
# leaves the best point it evaluated.
BOUND_EPS = 1e-3


def quality(losses: dict[str, float]) -> float:
    """What a frame is judged by: its (weighted) content + style terms, without TV and temporal terms."""
    return losses.get("content", 0.0) + losses.get("style", 0.0)


def _with_total(losses: dict[str, float]) -> dict[str, float]:
    return {**losses, "total": sum(losses.values())}


def _lbfgs(x: torch.Tensor, plan: Plan) -> torch.optim.LBFGS:
    return torch.optim.LBFGS([x], lr=plan.step_size, max_iter=1, max_eval=1, history_size=100,
                             tolerance_grad=1e-9, tolerance_change=1e-12, line_search_fn="strong_wolfe")


def stylise(content: torch.Tensor, init: torch.Tensor, objective: Objective, plan: Plan, *,
            temporal: list[TemporalTarget] | None = None, frame: int = 0,
            callback: Callable[[Step], None] | None = None, save_every: int = 0,
            on_snapshot: Callable[[int, torch.Tensor, dict[str, float]], None] | None = None) -> Result:
    """Optimise an image that has `content`'s features and the objective's style, starting from `init`.

    content, init: (1, 3, H, W) in [0, 1] at full size (resized per scale here). `temporal` targets (warped
    previous results and their weights) are resized with each scale. Raises NonFiniteLoss if the loss
    stops being finite.
    """
    run = _Run(objective, plan, frame, callback, save_every, on_snapshot)
    image = init
    for position, (size, cap) in enumerate(plan.scales):
        objective.set_content(resize_image(content, size))
        objective.set_temporal([target.resized(size) for target in temporal or []])
        final = position == len(plan.scales) - 1
        run.temporal_scale = plan.temporal_scale if final else 1.0
        scale = _Scale(run, image, size, start_margin=plan.start_margin if position == 0 else BOUND_EPS)
        run.converged = scale.optimise(cap, final=final)  # reported for the final scale
        image = scale.image()
        if plan.optimizer == "adam":
            run.adam_state = scale.optimizer.state.get(scale.x)
    return run.result(image, tuple(content.shape[-2:]))


class _Run:
    """One stylise call: what its scales share (evaluations so far, the recorded losses, Adam's moments)."""

    def __init__(self, objective: Objective, plan: Plan, frame: int, callback: Callable[[Step], None] | None,
                 save_every: int, on_snapshot: Callable | None):
        self.objective, self.plan, self.frame = objective, plan, frame
        self.callback, self.save_every, self.on_snapshot = callback, save_every, on_snapshot
        self.started = time.perf_counter()
        self.recorded: list[dict[str, torch.Tensor]] = []   # on the device until a read-back
        self.history: list[dict[str, float]] = []
        self.done = 0
        self.converged = False
        self.relaxed = 0
        self.temporal_scale = 1.0   # the temporal weight's factor in this scale's evaluations (Plan.relax)
        self.adam_state: dict | None = None
        self.sizes: list[tuple[int, int]] = []

    def read_back(self) -> dict[str, float]:
        """A host synchronisation point: the losses recorded since the last one; the latest."""
        self.history.extend(_with_total(h) for h in _to_floats(self.recorded[len(self.history):]))
        return self.history[-1] if self.history else {"total": 0.0}

    def result(self, image: torch.Tensor, full_size: tuple[int, int]) -> Result:
        last = self.read_back()
        if not all(math.isfinite(v) for v in last.values()) or not torch.isfinite(image).all():
            raise NonFiniteLoss(f"frame {self.frame}: the loss became {last.get('total')} at iteration {self.done}")
        image = image.contiguous().clamp(0, 1)
        # The frame's losses are those of what is saved (the clamped image; with L-BFGS's tanh bound it is the image
        # itself): one more evaluation, at the final scale with its targets.
        with torch.no_grad():
            _, parts = self.objective(image, self.temporal_scale)
        final = _with_total(_to_floats([parts])[0])
        self.objective.set_temporal([])
        if self.sizes[-1] != full_size:
            image = resize_image(image, full_size).clamp(0, 1)
        return Result(image, self.done, final, self.history, self.converged, time.perf_counter() - self.started,
                      self.sizes, self.temporal_scale, self.relaxed)


class _Scale:
    """The optimisation at one scale: its parameter (the image, or z under L-BFGS's tanh bound), optimiser and
    evaluations, in chunks that end at log points, snapshots and the cap."""

    def __init__(self, run: _Run, image: torch.Tensor, size: tuple[int, int], start_margin: float):
        self.run, self.size = run, size
        run.sizes.append(size)
        plan = run.plan
        # NCHW-contiguous whatever the model's layout: torch's L-BFGS flattens the gradient with .view(-1)
        x = resize_image(image.detach(), size).clone(memory_format=torch.contiguous_format)
        self.bounded = plan.optimizer == "lbfgs"
        if self.bounded:  # L-BFGS optimises z with the image (tanh(z) + 1) / 2: always inside [0, 1] (see above)
            x = torch.atanh(x.clamp(start_margin, 1 - start_margin) * 2 - 1)
        self.x = x.requires_grad_(True)
        self.start, self.limit = run.done, 0
        # on the device (no host sync); L-BFGS only
        self.best = [torch.tensor(math.inf, device=x.device), x.detach().clone()] if self.bounded else []
        if self.bounded:
            self.optimizer = _lbfgs(x, plan)
        else:
            self.optimizer = torch.optim.Adam([x], lr=plan.step_size)
            if run.adam_state is not None:  # carry the moments across scales
                self.optimizer.state[x] = _resize_adam_state(run.adam_state, size)

    def image(self, param: torch.Tensor | None = None) -> torch.Tensor:
        """The image the parameter stands for (detached unless `param` is given, for an evaluation)."""
        x = self.x.detach() if param is None else param
        return (torch.tanh(x) + 1) / 2 if self.bounded else x

    def evaluate(self) -> torch.Tensor:
        run = self.run
        if run.done >= self.limit:
            raise _Spent
        total, parts = run.objective(self.image(self.x), run.temporal_scale)
        total.backward()
        run.recorded.append({k: v.detach() for k, v in parts.items()})
        run.done += 1
        if self.bounded:  # the point a line search cut at a chunk's end goes back to (Adam is never cut)
            with torch.no_grad():
                better = total.detach() < self.best[0]
                self.best[0] = torch.where(better, total.detach(), self.best[0])
                self.best[1] = torch.where(better, self.x.detach(), self.best[1])
        return total

    def closure(self) -> torch.Tensor:
        self.optimizer.zero_grad(set_to_none=True)
        return self.evaluate()

    def saved_losses(self) -> dict[str, float]:
        """The losses of the image as it would be saved, clamped to [0, 1] (Adam's steps may leave it between
        clamps; L-BFGS's image is bounded): one forward pass, at log points."""
        with torch.no_grad():
            _, parts = self.run.objective(self.image().clamp(0, 1), self.run.temporal_scale)
        return _to_floats([parts])[0]

    def step(self, chunk: int) -> None:
        """`chunk` evaluations, exactly: chunks end where asked (logs, snapshots and caps fall on their
        iterations)."""
        self.limit = self.run.done + chunk
        if self.bounded:
            self.optimizer.param_groups[0]["max_iter"] = chunk
            self.optimizer.param_groups[0]["max_eval"] = chunk
            try:
                self.optimizer.step(self.closure)
            except _Spent:  # cut inside a line search: x is a trial point; go on from the best one evaluated
                with torch.no_grad():
                    self.x.copy_(self.best[1])
                self.optimizer = _lbfgs(self.x, self.run.plan)  # its history ended at the trial point (rare)
            return
        for _ in range(chunk):
            self.optimizer.zero_grad(set_to_none=True)
            self.evaluate()
            self.optimizer.step()
            with torch.no_grad():  # Adam keeps the box constraint [0, 1] (L-BFGS is bounded by tanh)
                self.x.clamp_(0, 1)

    def optimise(self, cap: int, *, final: bool) -> bool:
        """Up to `cap` evaluations; True if it stopped early, converged. At the final scale of a frame with a
        plan.quality_target, the stop is earned: it stops at the first log point where the frame is at the
        target, and one that is not goes on up to plan.extend_to, relaxing the temporal weight every
        plan.relax_every evaluations (see relax)."""
        run, plan = self.run, self.run.plan
        judged = final and plan.quality_target is not None
        if judged:
            cap = max(cap, plan.extend_to)
        window: list[tuple[int, float]] = []
        since = 0  # evaluations since the objective last changed
        while run.done - self.start < cap:
            chunk = min(cap - (run.done - self.start), plan.log_every - run.done % plan.log_every)
            if run.save_every:
                chunk = min(chunk, run.save_every - run.done % run.save_every)
            before = run.done
            self.step(chunk)
            last = self._report()
            if judged and self._at_target():
                return True  # as good as the level the video reached: the stop is earned
            since += run.done - before
            stalled = run.done - before < chunk  # L-BFGS found nothing left to improve
            if judged and self._can_relax() and (stalled or since >= plan.relax_every):
                self.relax()
                window, since = [], 0
                continue
            if stalled:
                return not judged
            window.append((run.done, last["total"]))
            if plan.tolerance > 0 and not judged and run.done - self.start < cap:  # a stop at the cap is no early stop
                old = [loss for it, loss in window if it <= run.done - plan.tolerance_window]
                if old and (old[-1] - last["total"]) < plan.tolerance * abs(old[-1]):
                    return True
        return False

    def _can_relax(self) -> bool:
        objective, plan = self.run.objective, self.run.plan
        return (plan.relax < 1 and bool(objective.temporal) and objective.temporal_weight > 0
                and self.run.temporal_scale * plan.relax >= plan.relax_floor * (1 - 1e-9))

    def relax(self) -> None:
        """The frame is still worse than the level: its temporal term is what holds it there (held to the warped
        previous result, it cannot re-fit texture to this frame's grid), so the term's weight is multiplied by
        plan.relax and L-BFGS restarts from here (its history belongs to the old objective)."""
        run = self.run
        run.temporal_scale *= run.plan.relax
        run.relaxed += 1
        if self.bounded:
            self.best[0].fill_(math.inf)
            self.optimizer = _lbfgs(self.x, run.plan)

    def _at_target(self) -> bool:
        """Whether the frame, as it would be saved, is at plan.quality_target and its content and style each at
        plan.term_targets (always, without them): one forward pass, only where a stop or an extension hangs on it."""
        plan = self.run.plan
        if plan.quality_target is None:
            return True
        losses = self.saved_losses()
        terms = plan.term_targets
        return quality(losses) <= plan.quality_target and (
            terms is None or (losses.get("content", 0.0) <= terms[0] and losses.get("style", 0.0) <= terms[1]))

    def _report(self) -> dict[str, float]:
        """At a log point: read the losses back, check them, report progress and snapshots."""
        run = self.run
        last = run.read_back()
        if not math.isfinite(last["total"]):
            raise NonFiniteLoss(f"frame {run.frame}: the loss became {last['total']} at iteration {run.done}")
        if run.callback:
            run.callback(Step(run.frame, run.done, run.plan.iterations, self.size, last,
                              time.perf_counter() - run.started))
        if run.on_snapshot and run.save_every and run.done % run.save_every == 0:
            run.on_snapshot(run.done, self.image().clamp(0, 1).clone(), last)
        return last
