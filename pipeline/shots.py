"""A run in shots: the motion pre-pass that finds the scene cuts, the plan of units (a shot, or a chunk of a
long shot) and the crossfade at the seams between chunks.

Nothing crosses a scene cut in the frame loop (each shot starts cold), so the shots of a video can be
stylised in any order, on any device, and give the frames the sequential loop gives. The pre-pass runs the
loop's own cut test (MotionAnalyser at the run's settings, offset 1) over the input without optimising
anything; each shot goes to a worker as soon as its end is found, and the list is kept in the work
directory, so a resumed run does not redo it.

A shot longer than `max_shot_frames` is cut into chunks. Each chunk after the first starts cold
`chunk_overlap` frames before its first kept frame; those burn-in frames go to the work directory's
chunks/ folder and are crossfaded over the previous chunk's last frames once both chunks are done.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from . import media
from .config import Config
from .errors import NSTError
from .events import Notice
from .files import write_json
from .flow import Motion, MotionAnalyser
from .media import FRAME_NAME
from .probe import MediaInfo
from .workdir import WorkDir, identity_hash

CUTS_FILE = "cuts.json"
CROSSFADED = "crossfaded"


@dataclass(frozen=True)
class Span:
    """The frames of one unit: stylised from `start` (cold), kept from `keep_from` (frames before it are burn-in),
    up to `end` (excluded). `cut`: `start` is a scene cut (or frame 0), not a chunk's burn-in start."""

    start: int
    keep_from: int
    end: int
    cut: bool = True

    @property
    def burn_in(self) -> int:
        return self.keep_from - self.start


def starts_shot(index: int, motions: list[Motion], known: set[int] | None = None) -> bool:
    """The one cut test, of the sequential loop and of the pre-pass alike: frame `index` starts a shot when it is
    frame 0 or the flow from the frame before finds a scene cut (MotionAnalyser at the run's settings, offset 1).
    Where that flow was not computed (a frame an earlier run finished), the cuts that run found (`known`) say."""
    if index == 0:
        return True
    if known is not None:
        return index in known
    return bool(motions) and motions[0].cut


class CutScan:
    """The scene cuts of the input at the run's settings, as an iterator of shots (start, end) handed out as soon
    as each one's end is known, so its frames can be stylised while the pre-pass goes on. Taken from the work
    directory when an earlier run of the job found them (and they agree with the cuts its finished frames were
    stylised with), else found by the pre-pass and kept there at its end. After the iteration: `cuts`, `frames`,
    `warnings`, `seconds` (0 when kept) and `cached`."""

    def __init__(self, work: WorkDir, identity: dict[str, Any], source: MediaInfo, size: tuple[int, int],
                 fps: Fraction, cfg: Config, emit: Callable[[Any], None], logged_cuts: set[int]):
        self.work, self.identity, self.source, self.size, self.fps, self.cfg = work, identity, source, size, fps, cfg
        self.cuts: list[int] = []
        self.frames = 0
        self.warnings: list[str] = []
        self.seconds = 0.0
        self.cached = self._kept(emit, logged_cuts)

    def _kept(self, emit: Callable[[Any], None], logged_cuts: set[int]) -> bool:
        path = self.work.path / CUTS_FILE
        if not path.exists():
            return False
        try:
            kept = json.loads(path.read_text())
            cuts, frames = [int(c) for c in kept["cuts"]], int(kept["frames"])
            valid = (kept.get("job") == identity_hash(self.identity) and cuts == sorted(set(cuts))
                     and all(0 < c < frames for c in cuts) and logged_cuts <= set(cuts))
        except (OSError, ValueError, KeyError, TypeError):
            valid = False
        if valid:
            self.cuts, self.frames, self.warnings = cuts, frames, list(kept.get("warnings", []))
            return True
        emit(Notice(f"the shot list in {self.work.path} does not match the input; the scene cuts are found again"))
        return False

    def __iter__(self) -> Iterator[tuple[int, int]]:
        if self.cached:
            bounds = [0, *self.cuts, self.frames]
            yield from zip(bounds, bounds[1:])
            return
        started = time.perf_counter()
        reader = media.FrameReader(self.source, self.size, self.fps)
        analyser = MotionAnalyser(self.cfg.replace(long_term=0))  # offset 1 only: the loop's cut test
        start = 0
        try:
            for index, frame in enumerate(reader):
                motions = analyser(frame)  # every frame: the next one's flow starts from it
                if index > 0 and starts_shot(index, motions):
                    self.cuts.append(index)
                    self.seconds += time.perf_counter() - started
                    yield start, index
                    started, start = time.perf_counter(), index
                self.frames = index + 1
        finally:
            reader.close()
        self.warnings = list(reader.warnings)
        self.seconds += time.perf_counter() - started
        write_json(self.work.path / CUTS_FILE, {"job": identity_hash(self.identity), "frames": self.frames,
                                                "cuts": self.cuts, "warnings": self.warnings}, durable=True)
        yield start, self.frames


def plan_shot(start: int, end: int, cfg: Config) -> list[Span]:
    """The units of one shot: itself, or chunks of equal length when it is longer than cfg.max_shot_frames, each
    after the first with cfg.chunk_overlap burn-in frames before it."""
    length = end - start
    if not cfg.max_shot_frames or length <= cfg.max_shot_frames:
        return [Span(start, start, end)]
    pieces = math.ceil(length / cfg.max_shot_frames)
    firsts = [start + math.ceil(k * length / pieces) for k in range(pieces)] + [end]  # lengths differ by 1 at most
    return [Span(max(start, first - cfg.chunk_overlap), first, last, cut=first == start)
            for first, last in zip(firsts, firsts[1:])]


def plan(cuts: list[int], frames: int, cfg: Config) -> list[Span]:
    """The units of a video with these cuts (plan_shot for each shot)."""
    bounds = [0, *cuts, frames]
    return [span for start, end in zip(bounds, bounds[1:]) for span in plan_shot(start, end, cfg)]


def span_done(work: WorkDir, span: Span, passes: int) -> bool:
    """Every kept frame of the span is saved (and its sweep passes are done)."""
    if not all(work.frame_path(i).exists() for i in range(span.keep_from, span.end)):
        return False
    return passes == 1 or work.pass_state(span.keep_from)[0] > passes


def crossfade(work: WorkDir, span: Span, size: tuple[int, int]) -> None:
    """Blend the chunk's burn-in frames into the previous chunk's frames over the overlap: the weight of the
    new chunk rises linearly, 1/(K+1) .. K/(K+1), and is 1 at its first kept frame. The blends are written
    beside the burn-in frames, marked done, then moved into place, so a run killed at any point can repeat
    this without blending twice."""
    folder = work.chunk_folder(span.keep_from)
    blends = folder / "blend"
    if not (folder / CROSSFADED).exists():
        for index in range(span.start, span.keep_from):
            earlier = work.load_frame(index, size)
            burn_in = work.load_frame(index, size, folder=folder)
            if earlier is None or burn_in is None:
                raise NSTError(f"frame {index} in {work.path} is damaged; rerun with --restart")
            weight = (index - span.start + 1) / (span.burn_in + 1)
            mixed = np.rint((1 - weight) * earlier.astype(np.float32) + weight * burn_in.astype(np.float32))
            work.save_frame(index, mixed.astype(np.uint8), folder=blends)
        write_json(folder / CROSSFADED, {"frames": [span.start, span.keep_from]}, durable=True)
    for index in range(span.start, span.keep_from):
        blended = blends / FRAME_NAME.format(index)
        if blended.exists():
            os.replace(blended, work.frame_path(index))


def seam_frames(spans: list[Span]) -> list[int]:
    """The first kept frame of every chunk after the first of its shot (where one chunk hands over to the next)."""
    return [span.keep_from for span in spans if not span.cut]


def visible(paths: dict[str, Path | str | None], node: str) -> None:
    """A unit landing on a node must see everything it reads and writes: else one line naming node and path."""
    for what, path in paths.items():
        if path is not None and not Path(path).exists():
            raise NSTError(f"node {node} cannot see the {what} {path}: paths must be visible on every node "
                           "(a shared filesystem or the same mount)")
