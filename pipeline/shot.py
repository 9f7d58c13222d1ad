"""A shot: the frames between two scene cuts (or a chunk of a long one), stylised in order from the first, each
later frame warm from the one before, with the temporal policy carried from frame to frame, the cold level
probed, the sweep passes, and what the run shares (RunContext): the context, its log and its summary."""
from __future__ import annotations

import signal
import time
from collections import deque
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from . import media, probe
from .config import Config
from .errors import Interrupted, NSTError, StopFlag
from .events import FrameDone, Notice, Reference
from .flow import Motion, MotionAnalyser, long_term_offsets, warp
from .job import Job, Summary
from .losses import TemporalTarget
from .optimise import Plan, Result, quality
from .stylist import Stylist
from .temporal import Level, Weight, later_plan, pass_on
from .tensors import to_tensor
from .workdir import FrameRecord, WorkDir


MULTIPASS_BLEND = 0.5  # delta of Ruder et al.'s multi-pass initialisation


@dataclass
class RunContext:
    """What every shot of a run shares, set up once by run() (or run_shot() in another process)."""

    job: Job
    cfg: Config
    source: probe.MediaInfo
    size: tuple[int, int]                # (W, H) of the frames optimised
    fps: Fraction
    device: torch.device
    styles: list[np.ndarray]
    init_image: np.ndarray | None
    work: WorkDir | None
    summary: Summary
    emit: Callable[[Any], None]
    stop: StopFlag | None = None
    first_frame: np.ndarray | None = None  # frame 0's input (decoded even when it was finished)
    _stylist: Stylist | None = None
    _earlier_log: list[FrameRecord] | None = None

    def stylist(self, frame: np.ndarray) -> Stylist:
        """The one Stylist of the run. --original-colors matches the styles to frame 0's luminance, also when a
        resumed run's (or a shot's) first frame to stylise is a later one, so every way gives the same frames."""
        if self._stylist is None:
            first = self.first_frame if self.first_frame is not None else frame
            self._stylist = Stylist(self.cfg, self.device, self.styles, first, init_image=self.init_image,
                                    emit=self.emit)
        return self._stylist

    def earlier_log(self) -> list[FrameRecord]:
        """The work directory's log as this run found it (read once: every resumed shot looks into it)."""
        if self._earlier_log is None:
            self._earlier_log = self.work.read_log() if self.work is not None else []
        return self._earlier_log

    def check_stop(self, done: int) -> None:
        if self.stop is not None and self.stop.signum is not None:
            name = signal.Signals(self.stop.signum).name
            where = f" in {self.work.path}" if self.work else ""
            raise Interrupted(self.stop.signum, f"stopped by {name} after {done} frames; they are saved{where}. "
                                                "Run the same command again to resume")

    def open_sink(self):
        return media.open_sink(self.job.output, self.size, self.fps, source=self.source, codec=self.cfg.codec,
                               crf=self.cfg.crf, keep_size=self.cfg.keep_size, overwrite=self.job.overwrite)

    def record(self, index: int, result: Result, seconds: float, cut: bool, pass_number: int,
               reliable: float | None, probe: float | None = None, *, burn_in: bool = False,
               contrast: float | None = None) -> None:
        if burn_in:  # a chunk's burn-in frame: logged as such, not one of the run's frames (the previous chunk's is)
            if self.work is not None:
                self.work.log(FrameRecord(index, 1, result.iterations, result.losses, round(seconds, 4),
                                          converged=result.converged, probe=probe, burn_in=True,
                                          temporal_scale=result.temporal_scale, relaxed=result.relaxed))
            return
        s = self.summary
        s.stylised += 1
        s.iterations.append(result.iterations)
        history = result.history if self.job.keep_histories else [result.history[0], result.history[-1]]
        if pass_number == 1:
            s.histories[index] = history
            s.losses[index] = result.losses
        else:
            s.pass_histories.append((pass_number, index, history))
        if index == 0 and pass_number == 1:
            s.first_frame_seconds = seconds
        elif not cut:
            s.later_frame_seconds.append(seconds)
            s.early_stops += int(result.converged and pass_number == 1)
            if pass_number == 1:
                s.relaxed += int(result.relaxed > 0)
                s.temporal_scales.append(result.temporal_scale)
        if cut and index > 0 and pass_number == 1:
            s.cuts.append(index)
        if self.work is not None:
            self.work.log(FrameRecord(index, pass_number, result.iterations, result.losses, round(seconds, 4), cut,
                                      result.converged, reliable, probe, contrast, result.temporal_scale,
                                      result.relaxed))
        self.emit(FrameDone(index, self.source.frames, result.iterations, result.losses, seconds, cut,
                            pass_number=pass_number, reliable=reliable, temporal_scale=result.temporal_scale))


class Shot:
    """A run of consecutive frames that starts cold (frame 0 or a scene cut) and carries nothing across its
    ends: warm starts, temporal targets (long-term ones included), the level later frames are judged against
    and the multi-pass sweeps all stay inside it. Frames come in order through add(); finish() runs the sweep
    passes. A shot needs only the run's context and its own frames, so it can be stylised in another process
    (run_shot) with the same result as in the sequential run."""

    def __init__(self, ctx: RunContext, start: int, *, keep_from: int | None = None, end: int | None = None,
                 cut: bool | None = None):
        self.ctx, self.start, self.end = ctx, start, start   # frames start .. end - 1 so far
        # A chunk of a long shot (shots.Span) stylises burn-in frames start .. keep_from - 1 that are not kept.
        self.keep_from = start if keep_from is None else keep_from
        self.last = end                       # where the shot ends, where known (a unit); else the next logged cut
        self.cut_start = start > 0 and cut is not False   # its first frame is a scene cut (not frame 0, not a chunk's)
        keep = max(long_term_offsets(ctx.cfg.long_term)) if ctx.cfg.flow else 1
        self.history: deque[np.ndarray] = deque(maxlen=keep)   # recent results: offset j is history[-j]
        self.level, self.weight = Level(ctx.cfg), Weight(ctx.cfg)   # the temporal policy (temporal.py)
        self.sweeping = False                 # its sweep passes have begun: pass 1 must not be redone
        if ctx.work is not None and self.saved(start) is not None:  # an earlier run began this shot
            self._restore(ctx.work)

    def folder(self, index: int) -> Path | None:
        """Where frame `index` of this shot is saved: a burn-in frame in its chunk's folder, others in frames/."""
        return self.ctx.work.chunk_folder(self.keep_from) if index < self.keep_from else None

    def saved(self, index: int) -> Path | None:
        path = self.ctx.work.saved_path(index, self.folder(index))
        return path if path.exists() else None

    def load(self, index: int) -> np.ndarray | None:
        return self.ctx.work.load_frame(index, self.ctx.size, folder=self.folder(index))

    def owns(self, record: FrameRecord, last: int | None) -> bool:
        """A log record of this shot's frames (burn-in frames are logged as such: the frames of the previous chunk
        at the same indices are not this shot's); `last`: where the shot ends (None: not known)."""
        return (self.start <= record.index < (last if last is not None else 1 << 62)
                and record.burn_in == (record.index < self.keep_from))

    def redo_from(self, index: int) -> None:
        """The one resume rule: `index` is the first frame of the shot this run stylises, so the log's records of it
        and of the shot's frames after it (every pass) go, and the log reads as an uninterrupted run's."""
        self.ctx.work.drop_records(lambda record: self.owns(record, self.last) and record.index >= index)

    def _restore(self, work: WorkDir) -> None:
        """On a resume: the level the stopped run had reached in this shot (its last cold frame or reference,
        from the log), so the resumed frames stop exactly where an uninterrupted run's would."""
        last = self.last
        if last is None:
            last = min((r.index for r in self.ctx.earlier_log() if r.cut and r.index > self.start), default=None)
        carried = self.start
        for record in self.ctx.earlier_log():
            if record.pass_number != 1 or not self.owns(record, last) or self.saved(record.index) is None:
                continue
            if record.probe:  # (taken before its frame ran: no later frame has reached the level since)
                self.level.probed(record.index, record.probe)
                if record.reference or record.cut or record.index == self.start:
                    self.level.measure(record.losses, self.level.probe)
            if not record.reference and record.index >= carried:  # the latest saved frame's weight
                carried = record.index
                pass_on(self.level, self.weight, record.index, self.start, record.temporal_scale, record.relaxed,
                        record.converged, record.losses)
            if record.reference:
                self.level.remeasured()
                self.ctx.summary.references[record.index] = record.losses
        self.sweeping = work.pass_state(self.keep_from)[0] > 1

    def add(self, index: int, frame: np.ndarray, motions: list[Motion], finished: np.ndarray | None,
            submit: Callable[..., None] = lambda fn, *args: fn(*args)) -> np.ndarray:
        """Frame `index` (the next of the shot): `finished` when an earlier run saved it, else stylised now and
        saved to the work directory through `submit` (the writer thread, or a plain call)."""
        if finished is None:
            if self.sweeping:
                raise NSTError(f"frame {index} in {self.ctx.work.path} is damaged after pass 1; rerun with --restart")
            finished = self._stylise(index, frame, motions)
            if self.ctx.work is not None:
                folder = self.folder(index)
                submit(self.ctx.work.save_frame, index, finished, *([folder] if folder else []))
                if folder is None:
                    submit(self.ctx.work.save_preview, index, frame, finished)
                if self.ctx.cfg.passes > 1 and index >= self.keep_from:  # the sweeps read the inputs back
                    submit(self.ctx.work.save_input, index, frame)
        self.history.append(finished)
        self.end = index + 1
        return finished

    def _stylise(self, index: int, frame: np.ndarray, motions: list[Motion]) -> np.ndarray:
        ctx, cfg = self.ctx, self.ctx.cfg
        stylist = ctx.stylist(frame)
        content = to_tensor(frame, ctx.device)
        cut = index == self.start and self.cut_start
        cold = index == self.start or not cfg.warm_start
        burn_in = index < self.keep_from
        started = time.perf_counter()
        if cold:
            init, temporal = stylist.cold_start(content, index), []
        else:
            previous = {j: self.history[-j] for j in range(1, len(self.history) + 1)}
            init, temporal = stylist.warm_start(index, frame, previous, motions)
        # the cold level is probed on the shot's first frame and every probe_every frames after it (a single image,
        # or every frame cold, leaves no later frame to judge)
        probed = (cfg.quality_slack and cfg.warm_start and ctx.source.frames != 1
                  and self.level.due(index, self.start, cold))
        probe = self._probe(index, frame, content) if probed else None
        hw = tuple(content.shape[-2:])
        if not cold and self.level.value is not None and self.level.probe:  # the early stop must be earned
            plan = later_plan(cfg, hw, self.level, self.weight)
        else:
            plan = Plan.for_frame(cfg, hw, first=cold)
        job = ctx.job
        snapshot = job.snapshot if index == 0 and job.save_every else None
        finished, result = stylist.run(index, frame, init, plan, temporal,
                                       save_every=job.save_every if snapshot else 0, on_snapshot=snapshot)
        reliable = motions[0].reliable if motions and cfg.flow else None
        # the result's contrast against its input's: a collapse (a flat, washed-out frame) is flagged by the report
        contrast = round(float(finished.std()) / max(float(frame.std()), 1e-6), 4)
        ctx.record(index, result, time.perf_counter() - started, cut, 1, reliable, probe, burn_in=burn_in,
                   contrast=contrast)
        pass_on(self.level, self.weight, index, self.start, result.temporal_scale, result.relaxed, result.converged,
                result.losses)
        if cold and probe:
            self.level.measure(result.losses, probe)
        elif cfg.reference_every and index % cfg.reference_every == 0 and not burn_in:
            self._reference(index, frame, content, probe)
        return finished

    def _probe(self, index: int, frame: np.ndarray, content: torch.Tensor) -> float | None:
        """A short cold optimisation of this frame (not used in the output): its content + style, the scene's
        difficulty as the optimiser sees it. Becomes the shot's latest probe; None where it is zero."""
        ctx = self.ctx
        stylist = ctx.stylist(frame)
        iterations = min(ctx.cfg.probe_iterations, ctx.cfg.iterations)  # never longer than the cold frame it stands for
        plan = Plan(((tuple(content.shape[-2:]), iterations),), ctx.cfg.optimizer, ctx.cfg.step_size,
                    log_every=ctx.cfg.log_every)
        _, result = stylist.run(index, frame, stylist.cold_start(content, index), plan, [])
        ctx.summary.level_iterations += result.iterations
        self.level.probed(index, quality(result.losses) or None)
        return self.level.probe

    def _reference(self, index: int, frame: np.ndarray, content: torch.Tensor, probe: float | None) -> None:
        """Optimise this frame cold, as the shot's first frame was (not used in the output): the level the shot
        should still be at. Later frames are then judged against it (with this frame's probe, `probe` where it
        was just taken). It runs before the frame is handed to the writer, so a run killed during it redoes the
        frame and its reference on resume."""
        ctx = self.ctx
        started = time.perf_counter()
        stylist = ctx.stylist(frame)
        plan = Plan.for_frame(ctx.cfg, tuple(content.shape[-2:]), first=True)
        _, result = stylist.run(index, frame, stylist.cold_start(content, index), plan, [])
        ctx.summary.level_iterations += result.iterations
        if ctx.cfg.quality_slack:
            probe = probe or self._probe(index, frame, content)
            if probe:
                self.level.measure(result.losses, probe)
            self.level.remeasured()
        seconds = time.perf_counter() - started
        ctx.summary.references[index] = result.losses
        if ctx.work is not None:
            ctx.work.log(FrameRecord(index, 1, result.iterations, result.losses, round(seconds, 4), probe=probe,
                                     reference=True))
        ctx.emit(Reference(index, result.losses, result.iterations, seconds))

    def finish(self) -> None:
        """Passes 2..P over the shot's saved frames (Ruder et al. 2016's multi-pass): sweeps alternate direction;
        each frame starts from a blend of its current result and the warped result of the neighbour processed
        just before it, delta*c*warp(neighbour) + (1 - delta*c)*current, with the temporal loss towards that
        neighbour. Progress is kept per shot in the work directory."""
        ctx, cfg, work = self.ctx, self.ctx.cfg, self.ctx.work
        if cfg.passes == 1:
            return
        start_pass, done_in_start = work.pass_state(self.keep_from)
        start_pass = max(start_pass, 2)
        analyser = MotionAnalyser(cfg.replace(long_term=0))
        for pass_number in range(start_pass, cfg.passes + 1):
            forward = list(range(self.keep_from, self.end))
            order = forward if pass_number % 2 == 1 else forward[::-1]
            for position in range(done_in_start if pass_number == start_pass else 0, len(order)):
                index = order[position]
                ctx.check_stop(index)
                neighbour = order[position - 1] if position > 0 else None
                self._sweep_frame(index, neighbour, pass_number, analyser)
                work.set_pass_state(self.keep_from, pass_number, position + 1)
            work.set_pass_state(self.keep_from, pass_number + 1, 0)

    def _sweep_frame(self, index: int, neighbour: int | None, pass_number: int, analyser: MotionAnalyser) -> None:
        ctx, work, size = self.ctx, self.ctx.work, self.ctx.size
        frame, current = work.load_input(index, size), work.load_frame(index, size)
        if frame is None or current is None:
            raise NSTError(f"frame {index} in {work.path} is damaged; rerun with --restart")
        stylist = ctx.stylist(frame)
        started = time.perf_counter()
        init = stylist.space(to_tensor(current, ctx.device))
        temporal: list[TemporalTarget] = []
        cut = False
        if neighbour is not None:
            motion = analyser.pair(work.load_input(neighbour, size), frame)
            cut = motion.cut
            if not cut:
                warped = warp(stylist.space(to_tensor(work.load_frame(neighbour, size), ctx.device)), motion.backward)
                c = torch.from_numpy(motion.weights)[None, None].to(ctx.device)
                init = MULTIPASS_BLEND * c * warped + (1 - MULTIPASS_BLEND * c) * init
                temporal = [TemporalTarget(warped, c)]
        plan = Plan.for_frame(ctx.cfg, tuple(init.shape[-2:]), first=False, iterations=ctx.cfg.pass_iterations)
        finished, result = stylist.run(index, frame, init, plan, temporal)
        work.save_frame(index, finished)
        ctx.record(index, result, time.perf_counter() - started, cut, pass_number, None)


def note_damaged(ctx: RunContext, path: Path, index: int) -> None:
    """A saved frame that is there but cannot be used (it does not decode, or has another size) is named."""
    if path.exists():
        ctx.emit(Notice(f"frame {index + 1} saved in the work directory ({path.name}) is damaged: it and the frames "
                        "after it are stylised again"))
