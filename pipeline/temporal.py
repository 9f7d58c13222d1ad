"""The temporal policy of a shot's later frames, in one place: the cold level a later frame is judged against,
which decides when it stops (Level), and where its temporal weight starts and what it passes on (Weight); the
plan a later frame runs with is built from both (later_plan). Within a frame the optimiser relaxes the weight
(optimise.py, Plan.relax); between frames this module carries it. A Shot holds one Level and one Weight, and a
resume replays the log through the same `pass_on`, so a resumed shot continues exactly where it stopped.

    a later frame stops at the first log point where its content + style are within quality_slack of the level
    (and each term within term_slack of its own, where set); short of it after relax_every iterations, its
    temporal weight is multiplied by temporal_relax, up to frame_extension times frame_iterations; the next
    frame starts one step stronger than it ended, never where the term would weigh under relax_share.
"""
from __future__ import annotations

from .config import Config
from .optimise import Plan, quality


class Level:
    """The cold level of a shot, per unit of probe: the content and style terms of its latest cold optimisation
    (the first frame, a cold reference) over content + style of a short cold run (a probe) on the same frame. A
    later frame is judged against it times the latest probe: what cold optimisation would reach on the scene as
    it is now. The shot's first frame and every probe_every-th are probed, and the frame after a miss of a level
    that had been reached (the level went stale)."""

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.terms: tuple[float, float] | None = None
        self.probe: float | None = None
        self.probed_at: int | None = None     # the frame of the latest probe
        self.reached = False                  # a later frame reached the level since it was last measured
        self.reprobe = False                  # the next frame is probed: the last missed a stale level

    @property
    def value(self) -> float | None:
        """Content + style per unit of probe (None before it is measured)."""
        return None if self.terms is None else self.terms[0] + self.terms[1]

    def probed(self, index: int, probe: float | None) -> None:
        """A probe was taken on frame `index`: no later frame has reached the level since."""
        self.probe, self.probed_at, self.reached = probe, index, False

    def measure(self, losses: dict[str, float], probe: float) -> None:
        """The level of a cold optimisation with these `losses`, per unit of its frame's `probe`."""
        self.terms = (losses.get("content", 0.0) / probe, losses.get("style", 0.0) / probe)

    def remeasured(self) -> None:
        """The level was just measured again on a frame (a cold reference)."""
        self.reached = self.reprobe = False

    def due(self, index: int, start: int, cold: bool) -> bool:
        """Whether frame `index` of a shot starting at `start` is probed (a single image, or every frame cold,
        leaves no later frame to judge: the caller asks only where there is one)."""
        return bool(cold or self.reprobe or (self.cfg.probe_every and (index - start) % self.cfg.probe_every == 0))

    def note(self, index: int, start: int, reached: bool) -> None:
        """After later frame `index`: its next is probed again where it ended at its cap short of the level (not
        `reached`) although a frame since the latest probe reached it, and that probe is at least reprobe_after
        frames old. Where no later frame reached the level since it was measured, a miss says nothing of its age."""
        if index == start or self.value is None or self.probed_at is None:
            return
        after = self.cfg.reprobe_after
        self.reprobe = bool(after and not reached and self.reached and index - self.probed_at >= after)
        self.reached = self.reached or reached


class Weight:
    """Where the next later frame's temporal weight starts, as a factor of temporal_weight."""

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.scale = 1.0

    def carry(self, scale: float, relaxed: int, reached: bool, losses: dict[str, float]) -> None:
        """A frame ended at factor `scale` after `relaxed` relaxations: the next starts one step stronger, whether
        relaxing bought it the level or it ended at its cap short of it (carry_misses; off, a frame that missed
        passes on the factor it started with). And never below the factor at which the term (`losses`: the
        frame's, its temporal part at `scale`) would weigh relax_share of content + style: under that it no
        longer held the frame, so relaxing it was not what the frame needed."""
        cfg = self.cfg
        carried = scale / cfg.temporal_relax ** (1 if reached or cfg.carry_misses else relaxed)
        share = losses.get("temporal", 0.0) / max(quality(losses), 1e-30)
        if 0 < share < cfg.relax_share:
            carried = max(carried, scale * cfg.relax_share / share)
        self.scale = min(1.0, carried)


def pass_on(level: Level, weight: Weight, index: int, start: int, scale: float, relaxed: int, reached: bool,
            losses: dict[str, float]) -> None:
    """What later frame `index` leaves the next one, live and when a resume replays the log."""
    weight.carry(scale, relaxed, reached, losses)
    level.note(index, start, reached)


def later_plan(cfg: Config, size: tuple[int, int], level: Level, weight: Weight) -> Plan:
    """A later frame's plan (`size`: (H, W)) where the level is known: the early stop must be earned, and the
    weight relaxes."""
    terms = tuple(t * level.probe * cfg.term_slack for t in level.terms) if cfg.term_slack else None
    return Plan.for_frame(cfg, size, first=False, quality_target=level.value * level.probe * cfg.quality_slack,
                          term_targets=terms, extend_to=round(cfg.frame_iterations * cfg.frame_extension),
                          temporal_scale=weight.scale, relax=cfg.temporal_relax, relax_every=cfg.relax_every,
                          relax_floor=cfg.temporal_floor)
