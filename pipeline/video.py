"""The frame loop: the one place that knows media, flow, the model, the optimiser and the work directory.

    decode (thread) -> motion: optical flow + consistency, one frame ahead (thread) -> optimise (here)
        -> save the frame to the work directory and feed the encoder (thread)

Frame 0 (and any scene cut) starts cold and runs `iterations`; every later frame starts from the
previous result warped along the optical flow (Ruder et al. 2016), keeps close to it where the flow is
reliable (temporal loss), and runs at most `frame_iterations`. Each finished frame is on disk before the
next starts, so a rerun of the same job continues from the first unfinished frame with the same result.
"""
from __future__ import annotations

import dataclasses
import errno
import hashlib
import os
import shutil
import signal
import time
from collections import deque
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

from . import color, media, memory, probe, runtime, shots
from .config import MAX_SIZE, Config
from .errors import ConfigError, Interrupted, NSTError, NonFiniteLoss, StopFlag, failure
from .events import Finishing, FrameDone, Notice, Reference, Started
from .executors import Inline, Unit, UnitEvent
from .files import (check_folder_writable, check_not_overwriting, check_work_dir, make_parent, read_record, reads_of,
                    remove_dead_partials, remove_if_empty, write_record, write_target)
from .flow import Motion, MotionAnalyser, inpaint, long_term_offsets, long_term_weights, matched_fill, warp
from .losses import TemporalTarget, build_objective
from .optimise import Plan, Result, quality, stylise
from .tensors import noise_like, resize_image, to_frame, to_tensor
from .threads import Stage, Writer
from .vgg import weights_identity
from .workdir import WorkDir, default_work_dir, differences, identity_hash

MULTIPASS_BLEND = 0.5  # delta of Ruder et al.'s multi-pass initialisation


# ---- what goes in, what comes out ------------------------------------------------------------------

@dataclass(frozen=True)
class Job:
    input: Path
    styles: tuple[Path, ...]
    output: Path
    work_dir: Path | None = None
    keep_work: bool = False
    restart: bool = False
    save_every: int = 0                  # snapshot every N iterations of the first frame (0: never)
    snapshot: Callable[[int, np.ndarray, dict], None] | None = None
    keep_histories: bool = False         # every iteration's losses of every frame (for a loss plot)
    overwrite: bool = False              # an OUTPUT folder's numbered frames may be replaced though not ours


@dataclass
class Summary:
    output: Path
    frames: int = 0
    stylised: int = 0
    resumed: int = 0
    seconds: float = 0.0
    cuts: list[int] = field(default_factory=list)
    iterations: list[int] = field(default_factory=list)        # per stylised frame, in order
    first_frame_seconds: float | None = None
    later_frame_seconds: list[float] = field(default_factory=list)
    idle_fraction: float = 0.0
    peak_memory: int = 0
    warnings: list[str] = field(default_factory=list)
    # per frame: the losses at every iteration with Job.keep_histories, else at the first and last only
    histories: dict[int, list[dict[str, float]]] = field(default_factory=dict)
    pass_histories: list[tuple[int, int, list[dict[str, float]]]] = field(default_factory=list)  # passes 2.., in order
    work_dir: Path | None = None
    early_stops: int = 0                   # later frames whose stop was earned (at the level before the cap)
    relaxed: int = 0                       # later frames whose temporal weight was relaxed to reach the level
    temporal_scales: list[float] = field(default_factory=list)  # later frames' final temporal weight factor, in order
    losses: dict[int, dict[str, float]] = field(default_factory=dict)  # frame -> losses of the saved frame (pass 1)
    references: dict[int, dict[str, float]] = field(default_factory=dict)  # frame -> cold losses (--reference-every)
    level_iterations: int = 0              # evaluations spent measuring the cold level: probes and references
    shots: int = 0                         # a run in shots: the shots found by the pre-pass,
    units: int = 0                         # the units they made (chunks of long shots count apiece),
    prepass_seconds: float = 0.0           # and how long the pre-pass took (0: its cut list was kept)

    def merge(self, part: "Summary") -> None:
        """Add the figures of one unit of a run in shots (run_shot), taken in the order of the frames."""
        for name in ("stylised", "resumed", "early_stops", "relaxed", "level_iterations"):
            setattr(self, name, getattr(self, name) + getattr(part, name))
        self.iterations += part.iterations
        self.temporal_scales += part.temporal_scales
        self.later_frame_seconds += part.later_frame_seconds
        self.pass_histories += part.pass_histories
        self.warnings += [w for w in part.warnings if w not in self.warnings]
        for name in ("histories", "losses", "references"):
            getattr(self, name).update(getattr(part, name))
        if part.first_frame_seconds is not None:
            self.first_frame_seconds = part.first_frame_seconds
        self.peak_memory = max(self.peak_memory, part.peak_memory)

    def drift(self) -> list[tuple[int, float]]:
        """(frame, content + style of the frame / that of its cold reference) for every sampled frame."""
        out = []
        for index, reference in sorted(self.references.items()):
            if index in self.losses and quality(reference) > 0:
                out.append((index, quality(self.losses[index]) / quality(reference)))
        return out

    def all_histories(self) -> list[list[dict[str, float]]]:
        """Every stylised frame's history in the order they were optimised."""
        return [self.histories[i] for i in sorted(self.histories)] + [h for _, _, h in self.pass_histories]


# ---- the stylist: one frame, cold or warm ----------------------------------------------------------

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


# ---- the job ---------------------------------------------------------------------------------------

def _input_identity(source: probe.MediaInfo) -> dict[str, Any]:
    paths = source.files if source.kind != "video" else (source.path,)
    stats = [os.stat(p) for p in paths]
    return {"kind": source.kind, "path": str(Path(source.path).resolve()), "count": len(paths),
            "bytes": sum(s.st_size for s in stats), "mtime": max(s.st_mtime_ns for s in stats),
            "names": hashlib.sha256("\n".join(Path(p).name for p in paths).encode()).hexdigest()[:16]}


def _file_digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _bytes(count: float) -> str:
    """A size in the unit that shows it: 512 KB, 3.4 MB, 12.0 GB."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count:.0f} bytes"


def check_disk(work: Path | None, output: Path, size: tuple[int, int], frames: int | None, passes: int,
               resumed: int = 0) -> None:
    """Refuse to start when the work directory and OUTPUT would not fit on their disks. Lossless PNG of a
    stylised frame is about 0.6 of its raw size; the final video is far smaller than the frames. Folders
    that do not exist yet are measured at their nearest existing ancestor."""
    if not frames:
        return
    raw = size[0] * size[1] * 3
    needs: dict[Path, float] = {}
    out_dir = _existing(output if media.output_kind(output) == "folder" else output.parent)
    remaining = max(0, frames - resumed)
    if work is not None:
        work_root = _existing(work)
        needs[work_root] = needs.get(work_root, 0) + raw * 0.6 * remaining * (2 if passes > 1 else 1)
    out_bytes = raw * 0.6 * frames if media.output_kind(output) == "folder" else raw * 0.05 * frames + 1e6
    needs[out_dir] = needs.get(out_dir, 0) + out_bytes
    for folder, need in needs.items():
        try:
            free = shutil.disk_usage(folder).free
        except OSError:
            continue
        same = [f for f in needs if f != folder and _same_device(f, folder)]
        total = need + sum(needs[f] for f in same)
        if free < total:
            raise NSTError(f"not enough disk space in {folder}: this job needs about {_bytes(total)}, "
                           f"{_bytes(free)} free")


def _existing(path: Path) -> Path:
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_memory(device: torch.device, size: tuple[int, int], cfg: Config) -> None:
    """Refuse a frame size that cannot fit, before any work, naming the size that does."""
    budget = runtime.available_memory(device)
    need = memory.peak_bytes(size[1], size[0], cfg)
    if budget is None or need <= 0.9 * budget:
        return
    fits = memory.largest_fitting_size(size[1], size[0], cfg, int(0.9 * budget))
    advice = f"use --size {fits} or less" if fits >= 32 else "free memory first"
    if cfg.optimizer == "lbfgs":
        advice += ", or --optimizer adam (it keeps no L-BFGS history)"
    raise NSTError(f"a {size[0]}x{size[1]} frame needs about {need / 2**30:.1f} GiB, but only "
                   f"{budget / 2**30:.1f} GiB are free on {device}: {advice}")


def _same_device(a: Path, b: Path) -> bool:
    try:
        return os.stat(a).st_dev == os.stat(b).st_dev
    except OSError:
        return False


def _disk_full(error: BaseException) -> bool:
    return (isinstance(error, OSError) and error.errno == errno.ENOSPC) or "No space left" in str(error)


def check_frame_size(source: probe.MediaInfo, size: tuple[int, int], cfg: Config) -> None:
    """Refuse frames too small on their shortest side for the deepest VGG19 layer used (its poolings would
    leave nothing), naming the minimum and the --size that reaches it."""
    minimum, layer = cfg.min_side()
    if min(size) >= minimum:
        return
    longest, shortest = max(source.width, source.height), min(source.width, source.height)
    needed = -(-minimum * longest // max(1, shortest))
    where = f"INPUT is {source.width}x{source.height} px, so its frames would be {size[0]}x{size[1]} at --size {cfg.size}"
    if needed <= min(MAX_SIZE, max(cfg.size, longest) * 4):
        raise ConfigError(f"{where}; VGG19 needs at least {minimum} px on the shortest side for {layer}: "
                          f"use --size {needed + needed % 2} or more")
    raise ConfigError(f"{where}; VGG19 needs at least {minimum} px on the shortest side for {layer}, which no "
                      "--size reaches: crop or pad the input")


def prepare_notices(source: probe.MediaInfo, output: Path, cfg: Config) -> list[str]:
    """What the user should know before the work starts: an odd size made even, an alpha channel dropped."""
    notices = []
    if cfg.keep_size and media.output_kind(output) == "video":
        even = media.output_size(source, output)
        if even != (source.width, source.height):
            notices.append(f"--keep-size: INPUT is {source.width}x{source.height}, but a video needs even sides: "
                           f"OUTPUT is {even[0]}x{even[1]}")
    if source.alpha and not media.alpha_kept(source, output):
        notices.append(f"INPUT has an alpha channel (transparency), which {output.name} cannot hold: it is dropped "
                       "(write PNG, TIFF or WebP images, or a frame folder, to keep it"
                       + (")" if source.kind != "video" else "; videos are read without alpha)"))
    return notices


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


def job_identity(job: Job, cfg: Config, source: probe.MediaInfo) -> dict[str, Any]:
    """What makes a work directory's frames this job's: any change means they cannot be reused."""
    if source.kind == "image":
        cfg = cfg.replace(passes=1)  # as the run's context has it
    size = media.working_size(source.width, source.height, cfg.size)
    fps = cfg.fps or source.fps or probe.DEFAULT_FOLDER_FPS
    return {"version_format": 1, "config": cfg.frames_dict(), "input": _input_identity(source),
            "styles": [_file_digest(p) for p in job.styles], "weights": weights_identity(cfg.weights),
            "size": list(size), "fps": f"{fps.numerator}/{fps.denominator}",
            "init": cfg.init if cfg.init in ("content", "noise") else _file_digest(Path(cfg.init))}


def _identity(ctx: RunContext) -> dict[str, Any]:
    return job_identity(ctx.job, ctx.cfg, ctx.source)


def output_record(identity: dict[str, Any], cfg: Config, output: Path) -> dict[str, Any]:
    """What a finished OUTPUT keeps of the job that made it: the job, and the settings of the file itself."""
    kept = ("codec", "crf", "keep_size") if media.output_kind(output) == "video" else ("keep_size",)
    return {"job": identity_hash(identity), "identity": identity, "output": {k: getattr(cfg, k) for k in kept}}


def made_otherwise(job: Job, cfg: Config) -> str | None:
    """Why the finished OUTPUT of `job` is not what `job` would make now (None: its record says it is)."""
    made = read_record(job.output)
    if made is None:
        return "nst-video has no record of making it"
    source = probe.inspect_input(job.input)
    now = output_record(job_identity(job, cfg, source), cfg, Path(job.output))
    if made.get("job") == now["job"] and made.get("output") == now["output"]:
        return None
    changed = differences(made.get("identity", {}), now["identity"]) if made.get("job") != now["job"] else []
    before = made.get("output") or {}
    changed += [f"{key} {before.get(key)} -> {value}" for key, value in now["output"].items() if before.get(key) != value]
    return f"it was made with other settings (changed: {', '.join(changed) or 'the job'})"


def _note_damaged(ctx: RunContext, path: Path, index: int) -> None:
    """A saved frame that is there but cannot be used (it does not decode, or has another size) is named."""
    if path.exists():
        ctx.emit(Notice(f"frame {index + 1} saved in the work directory ({path.name}) is damaged: it and the frames "
                        "after it are stylised again"))


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
                    _note_damaged(ctx, ctx.work.saved_path(index, shot.folder(index)), index)
                    ctx.work.drop_records(lambda record: shot.owns(record, span.end) and record["index"] >= index)
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
    ctx.summary.peak_memory = runtime.peak_memory(ctx.device)
    return ctx.summary


def _after_failure(error: BaseException, work: WorkDir | None, created: list[Path], output: Path) -> None:
    """A failed run leaves its finished frames to resume from, or nothing at all; a full disk is said so."""
    if work is None or work.discard_if_empty():  # nothing finished: nothing to resume, leave nothing behind
        remove_if_empty(created)
    if _disk_full(error):
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
    _earlier_log: list[dict[str, Any]] | None = None

    def stylist(self, frame: np.ndarray) -> Stylist:
        """The one Stylist of the run. --original-colors matches the styles to frame 0's luminance, also when a
        resumed run's (or a shot's) first frame to stylise is a later one, so every way gives the same frames."""
        if self._stylist is None:
            first = self.first_frame if self.first_frame is not None else frame
            self._stylist = Stylist(self.cfg, self.device, self.styles, first, init_image=self.init_image,
                                    emit=self.emit)
        return self._stylist

    def earlier_log(self) -> list[dict[str, Any]]:
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
                self.work.log({"index": index, "pass": 1, "burn_in": True, "iterations": result.iterations,
                               "losses": result.losses, "seconds": round(seconds, 4), "probe": probe,
                               "temporal_scale": result.temporal_scale, "relaxed": result.relaxed,
                               "converged": result.converged})
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
            self.work.log({"index": index, "pass": pass_number, "iterations": result.iterations,
                           "losses": result.losses, "seconds": round(seconds, 4), "cut": cut,
                           "converged": result.converged, "reliable": reliable, "probe": probe,
                           "contrast": contrast, "temporal_scale": result.temporal_scale,
                           "relaxed": result.relaxed, "time": round(time.time(), 3)})
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
        # The level the shot reached cold, per unit of probe: the content and style terms of the latest cold
        # optimisation (its first frame, a reference) over content + style of a short cold run on the same frame
        # (_probe); `level` is their sum. A later frame is judged against it times the latest probe (one every
        # probe_every frames): what cold optimisation would reach on the scene as it is now (see
        # Config.probe_every for the measurements), and with Config.term_slack against each term apart.
        self.terms: tuple[float, float] | None = None
        self.probe: float | None = None
        self.probed_at: int | None = None     # the frame of the latest probe
        self.reached = False                  # a later frame reached the level since it was last measured
        self.reprobe = False                  # the next frame is probed: the last missed a stale level (_note_miss)
        # Where the next later frame's temporal weight starts (optimise.Plan.relax; see _carry), so the weight
        # follows what the frames need and does not run away (measured: carrying the factor as it was ratcheted it
        # down to 1e-8; carrying the relaxing of frames that never reached the level, to 1e-10).
        self.temporal_scale = 1.0
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

    def owns(self, record: dict[str, Any], last: int | None) -> bool:
        """A log record of this shot's pass-1 frames (burn-in frames are logged as such: the frames of the
        previous chunk at the same indices are not this shot's)."""
        index = record["index"]
        return (self.start <= index < (last if last is not None else 1 << 62)
                and bool(record.get("burn_in")) == (index < self.keep_from))

    def _restore(self, work: WorkDir) -> None:
        """On a resume: the level the stopped run had reached in this shot (its last cold frame or reference,
        from the log), so the resumed frames stop exactly where an uninterrupted run's would."""
        last = self.last
        if last is None:
            later = [r["index"] for r in self.ctx.earlier_log() if r.get("cut") and r["index"] > self.start]
            last = min(later, default=None)
        carried = self.start
        for record in self.ctx.earlier_log():
            if record.get("pass", 1) != 1 or not self.owns(record, last) or self.saved(record["index"]) is None:
                continue
            if record.get("probe"):  # (taken before its frame ran: no later frame has reached the level since)
                self.probe, self.probed_at, self.reached = record["probe"], record["index"], False
                if record.get("reference") or record.get("cut") or record["index"] == self.start:
                    self._set_level(record["losses"], self.probe)
            if not record.get("reference") and record["index"] >= carried:  # the latest saved frame's weight
                carried = record["index"]
                self._pass_on(record["index"], record.get("temporal_scale", 1.0), record.get("relaxed", 0),
                              bool(record.get("converged")), record.get("losses", {}))
            if record.get("reference"):
                self.reached = self.reprobe = False  # the level was measured again on this frame
                self.ctx.summary.references[record["index"]] = record["losses"]
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
        plan = Plan.for_frame(cfg, tuple(content.shape[-2:]), first=cold)
        # the cold level is probed on the shot's first frame and every probe_every frames after it (a single image,
        # or every frame cold, leaves no later frame to judge)
        probed = (cfg.quality_slack and cfg.warm_start and ctx.source.frames != 1
                  and (cold or self.reprobe or (cfg.probe_every and (index - self.start) % cfg.probe_every == 0)))
        probe = self._probe(index, frame, content) if probed else None
        if not cold and self.level is not None and self.probe:  # the early stop must be earned
            terms = tuple(t * self.probe * cfg.term_slack for t in self.terms) if cfg.term_slack else None
            plan = dataclasses.replace(plan, quality_target=self.level * self.probe * cfg.quality_slack,
                                       term_targets=terms,
                                       extend_to=round(cfg.frame_iterations * cfg.frame_extension),
                                       temporal_scale=self.temporal_scale, relax=cfg.temporal_relax,
                                       relax_every=cfg.relax_every, relax_floor=cfg.temporal_floor)
        job = ctx.job
        snapshot = job.snapshot if index == 0 and job.save_every else None
        finished, result = stylist.run(index, frame, init, plan, temporal,
                                       save_every=job.save_every if snapshot else 0, on_snapshot=snapshot)
        reliable = motions[0].reliable if motions and cfg.flow else None
        # the result's contrast against its input's: a collapse (a flat, washed-out frame) is flagged by the report
        contrast = round(float(finished.std()) / max(float(frame.std()), 1e-6), 4)
        ctx.record(index, result, time.perf_counter() - started, cut, 1, reliable, probe, burn_in=burn_in,
                   contrast=contrast)
        self._pass_on(index, result.temporal_scale, result.relaxed, result.converged, result.losses)
        if cold and probe:
            self._set_level(result.losses, probe)
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
        self.probe, self.probed_at, self.reached = quality(result.losses) or None, index, False
        return self.probe

    @property
    def level(self) -> float | None:
        """The shot's cold level per unit of probe: content + style (None before it is measured)."""
        return None if self.terms is None else self.terms[0] + self.terms[1]

    def _set_level(self, losses: dict[str, float], probe: float) -> None:
        """The level of a cold optimisation with these `losses`, per unit of its frame's `probe`."""
        self.terms = (losses.get("content", 0.0) / probe, losses.get("style", 0.0) / probe)

    def _note_miss(self, index: int, reached: bool) -> None:
        """Whether the frame after `index` is probed again: `index` was a later frame that ended at its cap short
        of the level (not `reached`) where a frame since the latest probe had reached it, and that probe is at least
        reprobe_after frames old: the scene has moved away from the level (measured: see Config.reprobe_after).
        Where no later frame reached the level since it was measured, a miss says nothing of its age."""
        if index == self.start or self.level is None or self.probed_at is None:
            return
        after = self.ctx.cfg.reprobe_after
        self.reprobe = bool(after and not reached and self.reached and index - self.probed_at >= after)
        self.reached = self.reached or reached

    def _pass_on(self, index: int, scale: float, relaxed: int, reached: bool, losses: dict[str, float]) -> None:
        """What frame `index` leaves the next one, live and when a resume replays the log: its starting factor
        (_carry) and whether it is probed again (_note_miss)."""
        self._carry(scale, relaxed, reached, losses)
        self._note_miss(index, reached)

    def _carry(self, scale: float, relaxed: int, reached: bool, losses: dict[str, float]) -> None:
        """The next frame's starting factor: one step stronger than this frame ended, whether relaxing bought it
        the level or it ended at its cap short of it (Config.carry_misses; off, a frame that missed passes on the
        factor it started with, which holds the weight where frames cannot reach the level and lets their quality
        drift: measured there). And never below the factor at which the term (`losses`: the frame's, its temporal
        part at `scale`) would weigh relax_share of content + style: under that it no longer held the frame, so
        relaxing it was not what the frame needed, and carrying it on only weakens the next frame's hold."""
        cfg = self.ctx.cfg
        carried = scale / cfg.temporal_relax ** (1 if reached or cfg.carry_misses else relaxed)
        share = losses.get("temporal", 0.0) / max(quality(losses), 1e-30)
        if 0 < share < cfg.relax_share:
            carried = max(carried, scale * cfg.relax_share / share)
        self.temporal_scale = min(1.0, carried)

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
                self._set_level(result.losses, probe)
            self.reached = self.reprobe = False  # the level was just measured on this frame
        seconds = time.perf_counter() - started
        ctx.summary.references[index] = result.losses
        if ctx.work is not None:
            ctx.work.log({"index": index, "pass": 1, "reference": True, "iterations": result.iterations,
                          "losses": result.losses, "seconds": round(seconds, 4), "probe": probe})
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


def _logged_cuts(ctx: RunContext) -> set[int]:
    """Frames an earlier run of the job found to be scene cuts (the shots of its finished frames)."""
    return {r["index"] for r in ctx.earlier_log() if r.get("pass", 1) == 1 and r.get("cut")}


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
                _note_damaged(ctx, work.frame_path(index), index)
        if finished is None and index > 0 and not motions:  # its flow was skipped (it looked finished)
            fallback = MotionAnalyser(cfg)
            fallback.history.extend(inputs)
            motions = fallback(frame)
        if index == 0 or (index in cuts if finished is not None else bool(motions) and motions[0].cut):
            if shot is not None and cfg.passes > 1:
                writer.flush()  # the sweeps read the shot's saved frames and inputs
                shot.finish()
            shot = Shot(ctx, index)
        if finished is not None:
            ctx.summary.resumed += 1
            ctx.emit(FrameDone(index, ctx.source.frames, 0, {}, 0.0, resumed=True))
        else:
            ctx.check_stop(index)
            if work is not None and not trimmed:  # the first frame this run stylises: later records go
                work.trim_log(index)
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
    analyser = MotionAnalyser(cfg)

    def motions_ahead(items: Iterator[tuple[int, np.ndarray]]):
        for index, frame in items:  # frames already finished need no flow, except the one before the first to redo
            yield index, frame, analyser(frame, needed=index >= resume_from)

    decoded = Stage(enumerate(reader), depth=4, name="decode")
    analysed = Stage(motions_ahead(iter(decoded)), depth=2, name="flow")
    writer = Writer(depth=4)
    sink = ctx.open_sink() if cfg.passes == 1 else None
    loop_start = time.perf_counter()
    try:
        count, shot = _frames(ctx, analysed, writer, sink, resume_from, max(analyser.offsets))
        writer.close()
        if shot is not None:  # the last shot's sweeps
            shot.finish()
        for message in reader.warnings:
            ctx.summary.warnings.append(message)
            ctx.emit(Notice(message))
        ctx.summary.frames = count
        wall = time.perf_counter() - loop_start
        ctx.summary.idle_fraction = min(1.0, (analysed.waited + writer.waited) / wall) if wall > 0 else 0.0
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
