"""A run, from its checks to its output: everything is checked before anything is created (preflight.py),
then the frames are stylised, shot by shot (shot.py), either in one streaming loop here or as units of work on
an executor, and encoded with the input's audio and frame rate.

    decode (thread) -> motion: optical flow + consistency, one frame ahead (thread) -> optimise (here)
        -> save the frame to the work directory and feed the encoder (thread)

Frame 0 (and any scene cut) starts cold and runs `iterations`; every later frame starts from the
previous result warped along the optical flow (Ruder et al. 2016), keeps close to it where the flow is
reliable (temporal loss), and runs at most `frame_iterations`. Each finished frame is on disk before the
next starts, so a rerun of the same job continues from the first unfinished frame with the same result.
"""
from __future__ import annotations

import dataclasses
import os
import signal
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from . import media, probe, runtime, shots
from .config import Config
from .errors import ConfigError, Interrupted, NSTError, StopFlag, failure
from .events import Finishing, FrameDone, Notice, Started
from .executors import Inline, Unit, UnitEvent
from .files import (check_folder_writable, check_not_overwriting, check_work_dir, make_parent, reads_of,
                    remove_dead_partials, remove_if_empty, write_record, write_target)
from .flow import MotionAnalyser, MotionStream, flow_workers
from .job import Job, Summary, job_identity, output_record
from .preflight import check_disk, check_frame_size, check_memory, disk_full, prepare_notices
from .shot import RunContext, Shot, note_damaged
from .threads import Stage, Writer
from .workdir import WorkDir, default_work_dir


def _context(job: Job, cfg: Config, source: probe.MediaInfo, summary: Summary, emit: Callable[[Any], None],
             stop: StopFlag | None) -> RunContext:
    """What a run and each of its shots share: styles and init image read, device chosen, frame size and rate
    worked out, the work directory named (not opened)."""
    styles = [media.read_image(path) for path in job.styles]
    init_image = media.read_image(cfg.init) if cfg.init not in ("content", "noise") else None
    if source.kind == "image":
        cfg = cfg.replace(passes=1)  # nothing to sweep
    size = media.working_size(source.width, source.height, cfg.size)
    fps = cfg.fps or source.fps or probe.DEFAULT_FOLDER_FPS
    work = WorkDir(job.work_dir or default_work_dir(job.output)) if source.kind != "image" else None
    return RunContext(job, cfg, source, size, fps, runtime.select_device(cfg.device), styles, init_image, work,
                      summary, emit, stop)


def _identity(ctx: RunContext) -> dict[str, Any]:
    return job_identity(ctx.job, ctx.cfg, ctx.source)


def _first_frame(ctx: RunContext) -> np.ndarray:
    reader = media.FrameReader(ctx.source, ctx.size, ctx.fps)
    try:
        return next(iter(reader))
    finally:
        reader.close()


def run_shot(job: Job, cfg: Config, span: Any, *, events: Callable[[Any], None] | None = None,
             stop: StopFlag | None = None, node: str = "this machine") -> Summary:
    """Stylise one unit of a run in shots (shots.Span: a shot, or a chunk of a long one) into the job's work
    directory, which the run driving it holds open: exactly what the sequential loop does for that shot, sweep
    passes included, so units can be spread over processes and machines and the frames encoded after. Frames
    the work directory already holds are kept (a unit resumes). Runs on the node that got the unit (`node`
    names it in errors)."""

    shots.visible({"input": job.input, **{f"style image {i + 1}": p for i, p in enumerate(job.styles)},
                   "weights": cfg.weights, "work directory": job.work_dir}, node)
    ctx = _context(job, cfg, probe.inspect_input(job.input), Summary(output=Path(job.output)),
                   events or (lambda event: None), stop)
    if ctx.work is None:
        raise ConfigError("a single image has no shots")
    ctx.work.attach(_identity(ctx))
    check_memory(ctx.device, ctx.size, ctx.cfg)  # this unit's device, before any work
    runtime.reset_peak_memory(ctx.device)
    if cfg.original_colors and span.start > 0:
        ctx.first_frame = _first_frame(ctx)
    shot = Shot(ctx, span.start, keep_from=span.keep_from, end=span.end, cut=span.cut)
    reader = media.FrameReader(ctx.source, ctx.size, ctx.fps, start=span.start)
    analyser = MotionAnalyser(ctx.cfg)
    redo: int | None = None     # the first frame stylised now: it and all after it are redone
    try:
        for index, frame in enumerate(reader, span.start):
            if index >= span.end:
                break
            if index == 0:
                ctx.first_frame = frame
            finished = shot.load(index) if redo is None else None
            if finished is None:
                ctx.check_stop(index - span.keep_from)
                if redo is None:  # the first frame stylised now: the log's records of it and all after it go
                    redo = index
                    note_damaged(ctx, ctx.work.saved_path(index, shot.folder(index)), index)
                    shot.redo_from(index)
            elif index >= span.keep_from:
                ctx.summary.resumed += 1
                ctx.emit(FrameDone(index, ctx.source.frames, 0, {}, 0.0, resumed=True))
            shot.add(index, frame, analyser(frame, needed=finished is None), finished)
        if shot.end < span.end:
            raise NSTError(f"{job.input} ended at frame {shot.end} of a shot that ran to frame {span.end}: "
                           "the input changed during the run; rerun with --restart")
        shot.finish()
    finally:
        reader.close()
    ctx.summary.frames = span.end - span.keep_from
    ctx.summary.flow_seconds, ctx.summary.flow_pairs = analyser.seconds, analyser.pairs
    ctx.summary.peak_memory = runtime.peak_memory(ctx.device)
    return ctx.summary


def _after_failure(error: BaseException, work: WorkDir | None, created: list[Path], output: Path) -> None:
    """A failed run leaves its finished frames to resume from, or nothing at all; a full disk is said so."""
    if work is None or work.discard_if_empty():  # nothing finished: nothing to resume, leave nothing behind
        remove_if_empty(created)
    if disk_full(error):
        if work is not None and work.path.exists():
            raise NSTError(f"disk full: {work.finished_count()} finished frames are kept in {work.path}; "
                           "free some space and rerun the same command to resume") from None
        raise NSTError(f"disk full while writing {output}: free some space and run the command again") from None


class Run:
    """One job from its checks to its output. Constructing it checks everything that can be checked (nothing is
    created); start() creates the output's folder and opens the work directory; then either stream() runs the
    sequential frame loop, or units() plans the shots for workers (run_shot) and assemble() encodes what they
    made; finish() cleans up and returns the summary, and fail() leaves finished frames to resume from, or
    nothing at all."""

    def __init__(self, job: Job, cfg: Config, *, events: Callable[[Any], None] | None = None,
                 stop: StopFlag | None = None):
        self.started = time.perf_counter()
        self.job, self.output, self.events = job, Path(job.output), events or (lambda event: None)
        self.where: str | None = None     # where the frames are made, for `status` (the device, or the executor)
        self.opened = False
        source = probe.inspect_input(job.input)
        if cfg.init not in ("content", "noise") and not Path(cfg.init).is_file():
            raise ConfigError(f"--init must be content, noise or an image file; {cfg.init} does not exist")
        output = self.output
        reads = reads_of(job.input, job.styles, cfg)
        folder = media.output_kind(output) == "folder"
        check_not_overwriting(output, reads, folder=folder)
        media.check_output_fits(source, output)
        media.check_writable(output, overwrite=job.overwrite)
        if source.kind != "image":  # every path relation before any work: the work directory is removed at the end
            work_path = job.work_dir or default_work_dir(output)
            check_work_dir(work_path, output, reads, folder=folder)
            check_folder_writable(work_path, "work directory")
        if cfg.style_blend is not None and len(cfg.style_blend) != len(job.styles):
            raise ConfigError(f"--style-blend has {len(cfg.style_blend)} weights for {len(job.styles)} style images")
        self.ctx = ctx = _context(job, cfg, source, Summary(output=output), self.emit, stop)
        check_frame_size(source, ctx.size, ctx.cfg)
        check_memory(ctx.device, ctx.size, ctx.cfg)
        if media.output_kind(output) == "video":
            media.check_encoder(ctx.cfg.codec, ctx.cfg.crf, output)
        work = ctx.work
        check_disk(work.path if work else None, output, ctx.size, source.frames, ctx.cfg.passes,
                   work.finished_count() if work else 0)
        self.identity = _identity(ctx)
        self.created: list[Path] = []
        self.spans: list[Any] = []

    def emit(self, event: Any) -> None:
        """Every event of the run goes to the caller; warnings are also kept in the work directory."""
        if isinstance(event, Notice) and self.opened:
            self.ctx.work.note("warning", message=event.message)
        self.events(event)

    def _note_started(self) -> None:
        ctx, defaults = self.ctx, Config().to_dict()
        settings = {k: v for k, v in ctx.cfg.to_dict().items() if v != defaults[k] and k not in ("weights",)}
        ctx.work.note("started", pid=os.getpid(), input=str(self.job.input), output=str(self.output),
                      styles=[str(p) for p in self.job.styles], frames=ctx.source.frames,
                      size=list(ctx.size), device=self.where or str(ctx.device), settings=settings,
                      resumed=ctx.work.finished_count())

    def in_shots(self, workers: int) -> bool:
        """Whether this job runs as units: long shots are chunked (max_shot_frames), or its shots go to several
        workers (shots: auto)."""
        cfg = self.ctx.cfg
        return self.ctx.work is not None and (cfg.max_shot_frames > 0 or (cfg.shots == "auto" and workers > 1))

    def start(self) -> None:
        """Every check passed: from here on, things are created."""
        ctx, emit, work = self.ctx, self.emit, self.ctx.work
        runtime.reset_peak_memory(ctx.device)
        self.created = make_parent(self.output)
        try:
            if work is not None:
                taken_over = work.open(self.identity, restart=self.job.restart)
                self.opened = True
                ctx.summary.work_dir = work.path
                self._note_started()
                if taken_over:
                    emit(Notice(taken_over))
            for message in prepare_notices(ctx.source, self.output, ctx.cfg):
                ctx.summary.warnings.append(message)
                emit(Notice(message))
            removed = remove_dead_partials(write_target(self.output))  # after the work directory's lock: no live run of the job is left
            if removed:
                emit(Notice(f"removed {len(removed)} temporary file{'s' if len(removed) > 1 else ''} left by earlier "
                            f"runs that died ({', '.join(p.name for p in removed)})"))
        except BaseException as error:
            self.fail(error)
            raise

    def stream(self) -> None:
        _stream(self.ctx)

    def units(self) -> Iterator[Any]:
        """The spans still to stylise, handed out as the motion pre-pass finds each shot's end (or from the cut list
        an earlier run kept); every span of the job, in order, is in self.spans once the iteration is over."""
        ctx, work = self.ctx, self.ctx.work
        scan = shots.CutScan(work, self.identity, ctx.source, ctx.size, ctx.fps, ctx.cfg, self.emit, _logged_cuts(ctx))
        self.spans = []
        total = scan.frames if scan.cached else ctx.source.frames
        self.emit(Started(total, ctx.size, str(ctx.device), work.finished_count(), ctx.source, work.path))
        for start, end in scan:
            for span in shots.plan_shot(start, end, ctx.cfg):
                self.spans.append(span)
                if shots.span_done(work, span, ctx.cfg.passes):
                    ctx.summary.resumed += span.end - span.keep_from  # a whole unit an earlier run did
                else:
                    yield span
        self.frames = scan.frames
        for message in scan.warnings:
            ctx.summary.warnings.append(message)
            self.emit(Notice(message))
        ctx.summary.shots = len(scan.cuts) + 1
        ctx.summary.units = len(self.spans)
        ctx.summary.prepass_seconds = scan.seconds

    def assemble(self, results: list[Summary]) -> None:
        """Every unit done: their figures merged into the run's summary, the chunks' seams crossfaded, the frames
        encoded in order (with the input's audio and frame rate)."""
        ctx, work, summary = self.ctx, self.ctx.work, self.ctx.summary
        for part in results:  # in the order of the frames
            summary.merge(part)
        summary.cuts = sorted(s.start for s in self.spans if s.start > 0 and s.cut)
        summary.frames = self.frames
        for span in self.spans:
            if span.burn_in:
                shots.crossfade(work, span, ctx.size)
        _encode_saved(ctx, self.frames)

    def finish(self) -> Summary:
        ctx, work, summary = self.ctx, self.ctx.work, self.ctx.summary
        write_record(self.output, output_record(self.identity, ctx.cfg, self.output))  # before the work directory goes
        if work is not None:
            work.note("finished", frames=summary.frames, seconds=round(time.perf_counter() - self.started, 2))
            self.events(Finishing(work.path, self.output))  # the last look at the work directory (a report)
            if self.job.keep_work:
                work.close()
            else:
                work.remove()
                summary.work_dir = None
        summary.seconds = time.perf_counter() - self.started
        summary.peak_memory = max(summary.peak_memory, runtime.peak_memory(ctx.device))
        return summary

    def fail(self, error: BaseException) -> None:
        if self.opened and self.ctx.work.path.exists():
            state, message = failure(error)
            self.ctx.work.note(state, message=message.splitlines()[0] if message else "")
        _after_failure(error, self.ctx.work, self.created, self.output)


def run(job: Job, cfg: Config, *, events: Callable[[Any], None] | None = None,
        stop: StopFlag | None = None, executor: Any = None) -> Summary:
    """Stylise INPUT into OUTPUT. Raises NSTError subclasses with one-line messages. Everything that can be
    checked is checked before anything is created, so a refused command leaves nothing behind. With an
    `executor` (executors.py) of several workers, or long shots to chunk, the shots go to its workers as units."""
    this = Run(job, cfg, events=events, stop=stop)
    this.where = executor.describe() if executor is not None else None
    this.start()
    try:
        workers = executor.workers if executor is not None else 1
        if this.in_shots(workers):
            results = _run_spans(executor or Inline(), job, this.ctx.cfg, this.units(), this.emit, stop)
            if len(this.spans) == 1 and workers > 1:
                this.emit(Notice("the video has no scene cut: one shot, so one device worked and the others waited; "
                                 "--max-shot-frames N splits long shots into chunks that run in parallel"))
            this.assemble(results)
        else:
            this.stream()
    except BaseException as error:
        this.fail(error)
        raise
    return this.finish()


def shot_work(unit: Unit, cfg: Config, emit: Callable[[Any], None], stop: StopFlag | None, node: str) -> Summary:
    """A span's unit, wherever it landed (executors.execute): its shot's frames, saved in the work directory."""
    return run_shot(unit.job, cfg, unit.span, events=emit, stop=stop, node=node)


def _run_spans(executor: Any, job: Job, cfg: Config, spans: Iterator[Any], emit: Callable[[Any], None],
               stop: StopFlag | None) -> list[Summary]:
    """The spans of one job as units on `executor`: each span's summary, in order; the first failure raises its
    message, a stop raises Interrupted once every worker has stopped (their frames are saved)."""
    job = dataclasses.replace(job, snapshot=None, work_dir=job.work_dir or default_work_dir(job.output))
    config = cfg.to_dict()
    units = (Unit((0, span.keep_from), shot_work, job, config, span, span.end - span.keep_from) for span in spans)
    results = executor.run(units, lambda message: emit(message.event) if isinstance(message, UnitEvent) else None,
                           lambda result: None, stop)
    failed = [r for r in results if r.status == "failed"]
    if failed:
        raise NSTError(failed[0].message + (f" (and {len(failed) - 1} more units failed)" if len(failed) > 1 else ""))
    if any(r.status == "stopped" for r in results):
        signum = stop.signum if stop is not None and stop.signum is not None else signal.SIGTERM
        raise Interrupted(signum, f"stopped by {signal.Signals(signum).name}; the finished frames are saved in "
                                  f"{job.work_dir}. Run the same command again to resume")
    return [r.value for r in results]


def _logged_cuts(ctx: RunContext) -> set[int]:
    """Frames an earlier run of the job found to be scene cuts (the shots of its finished frames)."""
    return {r.index for r in ctx.earlier_log() if r.pass_number == 1 and r.cut}


def _frames(ctx: RunContext, analysed: Iterator, writer, sink, resume_from: int,
            keep: int) -> tuple[int, Shot | None]:
    """Pass 1 in order: frames an earlier run finished are loaded, the others stylised, each in its shot; a
    shot's sweep passes run when the next shot begins (the last one's are left to the caller). Returns the
    number of frames and the last shot."""
    cfg, work = ctx.cfg, ctx.work
    cuts = _logged_cuts(ctx)
    inputs: deque[np.ndarray] = deque(maxlen=keep)  # recent input frames (for a frame redone late)
    shot: Shot | None = None
    redo = trimmed = False
    count = 0
    for index, frame, motions in analysed:
        count = index + 1
        if index == 0:
            ctx.first_frame = frame
        finished = None
        if work is not None and not redo and index < resume_from:
            finished = work.load_frame(index, ctx.size)
            redo = finished is None   # damaged or missing: this frame and all after it are redone
            if redo:
                note_damaged(ctx, work.frame_path(index), index)
        if finished is None and index > 0 and not motions:  # its flow was skipped (it looked finished)
            fallback = MotionAnalyser(cfg)
            fallback.history.extend(inputs)
            motions = fallback(frame)
        if shots.starts_shot(index, motions, cuts if finished is not None else None):
            if shot is not None and cfg.passes > 1:
                writer.flush()  # the sweeps read the shot's saved frames and inputs
                shot.finish()
            shot = Shot(ctx, index)
        if finished is not None:
            ctx.summary.resumed += 1
            ctx.emit(FrameDone(index, ctx.source.frames, 0, {}, 0.0, resumed=True))
        else:
            ctx.check_stop(index)
            if work is not None and not trimmed:  # the first frame this run stylises: its records and later go
                shot.redo_from(index)
                trimmed = True
        result = shot.add(index, frame, motions, finished, writer.submit)
        if sink is not None:
            writer.submit(sink.write, result)
        inputs.append(frame)
    return count, shot


def _stream(ctx: RunContext) -> None:
    """The sequential run: decode -> motion (one frame ahead) -> each shot's frames in order, its sweep passes
    when it ends -> encode. With one pass, every frame goes to the encoder as it finishes; with several, the
    saved frames are encoded at the end."""
    cfg, work = ctx.cfg, ctx.work
    resume_from = 0
    if work is not None:
        while work.frame_path(resume_from).exists():
            resume_from += 1
    ctx.emit(Started(ctx.source.frames, ctx.size, str(ctx.device), resume_from, ctx.source,
                     work.path if work else None))
    reader = media.FrameReader(ctx.source, ctx.size, ctx.fps)
    # frames already finished need no flow, except the one before the first to redo
    motions = MotionStream(cfg, flow_workers(ctx.device.type), needed=lambda index: index >= resume_from)
    decoded = Stage(enumerate(reader), depth=4, name="decode")
    analysed = Stage(motions(iter(decoded)), depth=2, name="flow")
    writer = Writer(depth=4)
    sink = ctx.open_sink() if cfg.passes == 1 else None
    loop_start = time.perf_counter()
    try:
        count, shot = _frames(ctx, analysed, writer, sink, resume_from, max(motions.offsets))
        writer.close()
        if shot is not None:  # the last shot's sweeps
            shot.finish()
        for message in reader.warnings:
            ctx.summary.warnings.append(message)
            ctx.emit(Notice(message))
        ctx.summary.frames = count
        wall = time.perf_counter() - loop_start
        ctx.summary.idle_fraction = min(1.0, (analysed.waited + writer.waited) / wall) if wall > 0 else 0.0
        ctx.summary.flow_seconds, ctx.summary.flow_pairs = motions.seconds, motions.pairs
        if sink is None:
            _encode_saved(ctx, count)
        else:
            sink.close()
    except BaseException:
        try:  # frames already finished are kept, whatever stopped the run
            writer.close()
        except BaseException:
            pass
        if sink is not None:
            sink.abort()
        raise
    finally:
        analysed.close()
        decoded.close()
        reader.close()


def _encode_saved(ctx: RunContext, count: int) -> None:
    """Encode frames 0 .. count - 1 from the work directory, in order."""
    sink = ctx.open_sink()
    try:
        for index in range(count):
            frame = ctx.work.load_frame(index, ctx.size)
            if frame is None:
                raise NSTError(f"frame {index} in {ctx.work.path} is missing or damaged; rerun with --restart")
            sink.write(frame)
    except BaseException:
        sink.abort()
        raise
    sink.close()
