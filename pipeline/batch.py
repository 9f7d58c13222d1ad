"""Overnight batches: many jobs from a YAML file or a glob, validated up front, run in order on one device
or spread over several (one worker process per device, each taking whole jobs), resumable.

    jobs:
      - input: clips/a.mp4
        style: styles/scream.jpg          # or a list of images
        output: out/a.mp4
        size: 768                          # any config key overrides the batch's settings for this job

Relative paths are relative to the jobs file. A job whose OUTPUT exists (and has no work directory left)
is finished and skipped on a rerun; an unfinished one resumes from its work directory.
"""
from __future__ import annotations

import glob
import multiprocessing
import os
import queue
import signal
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from . import media, probe
from .config import Config, ConfigError, NSTError, coerce_values, load_yaml, yaml_error
from .events import FrameDone, JobDone, JobProgress, JobStarted, WorkerExit
from .files import FOLDER_MARKER, check_not_overwriting, foreign_files
from .workdir import default_work_dir

JOB_FIELDS = ("input", "style", "output")


@dataclass
class BatchJob:
    number: int
    input: Path
    styles: tuple[Path, ...]
    output: Path
    overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.input.name


@dataclass
class Outcome:
    job: BatchJob
    status: str                  # done, skipped, failed, stopped
    frames: int = 0
    seconds: float = 0.0
    message: str = ""
    device: str = ""


def _as_paths(value: Any, base: Path) -> list[Path]:
    paths = [Path(str(v)).expanduser() for v in (value if isinstance(value, list) else [value])]
    return [path if path.is_absolute() else (base / path).expanduser() for path in paths]


def load_jobs(spec: str, *, style: str | None = None, out_dir: str | None = None,
              base_config: Config | None = None) -> list[BatchJob]:
    """Jobs from a YAML jobs file or a glob of inputs. Every problem in every job is collected and raised
    together (ConfigError, one line per problem), so nothing starts if anything is wrong."""
    errors: list[str] = []
    jobs: list[BatchJob] = []
    path = Path(spec)
    if path.suffix.lower() in (".yaml", ".yml") or path.is_file():
        if not path.is_file():
            raise ConfigError(f"jobs file {spec} does not exist")
        try:
            data = load_yaml(path.read_text())
        except yaml.YAMLError as error:
            raise ConfigError(f"{spec} is not valid YAML: {yaml_error(error)}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{spec} is not a YAML text file") from None
        if not isinstance(data, dict) or not isinstance(data.get("jobs"), list) or not data["jobs"]:
            raise ConfigError(f"{spec} must hold a top-level `jobs:` list with at least one job")
        unknown_top = sorted(set(data) - {"jobs"})
        if unknown_top:
            errors.append(f"unknown top-level key{'s' if len(unknown_top) > 1 else ''} {', '.join(unknown_top)}")
        base = path.parent
        for number, raw in enumerate(data["jobs"], start=1):
            if not isinstance(raw, dict):
                errors.append(f"job {number}: must be a mapping with input, style and output")
                continue
            missing = [k for k in JOB_FIELDS if k not in raw]
            if missing:
                errors.append(f"job {number}: missing {', '.join(missing)}")
                continue
            try:
                overrides = coerce_values({k: v for k, v in raw.items() if k not in JOB_FIELDS}, f"job {number}")
            except ConfigError as error:
                errors.append(str(error))
                overrides = {}
            jobs.append(BatchJob(number, _as_paths(raw["input"], base)[0], tuple(_as_paths(raw["style"], base)),
                                 _as_paths(raw["output"], base)[0], overrides))
    else:
        matches = sorted(glob.glob(spec))
        if not matches:
            raise ConfigError(f"no file matches {spec!r} (give a jobs file ending in .yaml, or a glob)")
        if not style or not out_dir:
            raise ConfigError("a glob of inputs needs --style and --out-dir")
        for number, match in enumerate(matches, start=1):
            source = Path(match)
            output = Path(out_dir) / (source.name if source.is_dir() or source.suffix.lower() in probe.VIDEO_EXTS
                                      + probe.IMAGE_EXTS else f"{source.stem}.mp4")
            jobs.append(BatchJob(number, source, tuple(Path(s) for s in style.split(",")), output))
    errors += validate(jobs, base_config or Config())
    if errors:
        raise ConfigError(f"{len(errors)} problem{'s' if len(errors) > 1 else ''} in the batch, nothing started:\n  "
                          + "\n  ".join(errors))
    return jobs


def validate(jobs: list[BatchJob], base_config: Config) -> list[str]:
    """Every problem of every job: missing files, an output that is (or would destroy) a file this job or
    another job reads, two jobs writing one output, settings that do not fit."""
    from .video import reads_of

    errors = []
    seen: dict[Path, int] = {}
    for job in jobs:
        prefix = f"job {job.number} ({job.name})"
        if not job.input.exists():
            errors.append(f"{prefix}: input {job.input} does not exist")
        for style in job.styles:
            if not style.is_file():
                errors.append(f"{prefix}: style {style} {'is a folder' if style.is_dir() else 'does not exist'}")
        resolved = job.output.resolve()
        if resolved in seen:
            errors.append(f"{prefix}: output {job.output} is also the output of job {seen[resolved]}")
        seen[resolved] = job.number
        try:
            folder = media.output_kind(job.output) == "folder"
            cfg = base_config.replace(**job.overrides)
            if cfg.style_blend is not None and len(cfg.style_blend) != len(job.styles):
                errors.append(f"{prefix}: style_blend has {len(cfg.style_blend)} weights for {len(job.styles)} styles")
            check_not_overwriting(job.output, reads_of(job.input, job.styles, cfg), folder=folder)
            for other in jobs:
                if other is not job:
                    check_not_overwriting(job.output, {f"INPUT of job {other.number}": [other.input],
                                                       f"STYLE of job {other.number}": list(other.styles)},
                                          folder=folder)
        except NSTError as error:
            errors.append(f"{prefix}: {error}")
    return errors


def is_finished(job: BatchJob, work_dir: Path | None = None) -> bool:
    """OUTPUT exists and no work directory is left (the job's own, or the default beside OUTPUT): the job
    completed. An output folder must also be ours (its marker lists every frame in it)."""
    if not job.output.exists() or (work_dir or default_work_dir(job.output)).exists():
        return False
    if job.output.is_dir():
        return (job.output / FOLDER_MARKER).exists() and foreign_files(job.output) == ([], [])
    return True


# ---- running ----------------------------------------------------------------------------------------

def parse_devices(text: str | None) -> list[str]:
    """`0,1` -> cuda:0, cuda:1; `cpu,cpu` -> two CPU workers; checked against what exists."""
    import torch

    if not text:
        return []
    devices = []
    for part in text.split(","):
        part = part.strip()
        if part == "cpu":
            devices.append("cpu")
        elif part.removeprefix("cuda:").isdigit():
            index = int(part.removeprefix("cuda:"))
            available = torch.cuda.device_count() if torch.cuda.is_available() else 0
            if index >= available:
                raise ConfigError(f"--devices: there is no GPU {index} (this machine has {available})")
            devices.append(f"cuda:{index}")
        else:
            raise ConfigError(f"--devices: {part!r} is neither a GPU number nor cpu")
    return devices


def run_one(job: BatchJob, base_config: Config, options: dict[str, Any], events: Callable[[Any], None],
            stop: Any, device: str | None = None) -> Outcome:
    from . import video

    cfg = base_config.replace(**job.overrides, **({"device": device} if device else {}))
    work_dir = Path(options["work_dir"]) / f"job-{job.number:04d}" if options.get("work_dir") else None
    if not options.get("restart") and is_finished(job, work_dir):
        return Outcome(job, "skipped", message="output exists", device=cfg.device)
    spec = video.Job(job.input, job.styles, job.output, work_dir, options.get("keep_work", False),
                     options.get("restart", False), overwrite=options.get("overwrite", False))
    try:
        summary = video.run(spec, cfg, events=events, stop=stop)
    except video.Interrupted as error:
        return Outcome(job, "stopped", message=str(error), device=cfg.device)
    except NSTError as error:
        return Outcome(job, "failed", message=str(error), device=cfg.device)
    except Exception as error:  # one broken job must not end the batch
        return Outcome(job, "failed", message=f"{type(error).__name__}: {error}", device=cfg.device)
    return Outcome(job, "done", summary.frames, summary.seconds, device=cfg.device)


def _worker(device: str, threads: int, jobs: "multiprocessing.Queue", results: "multiprocessing.Queue",
            base: dict, options: dict) -> None:
    """One process per device: takes whole jobs until the queue is empty or a stop is asked for."""
    import torch

    from . import video
    from .config import config_from_dict

    torch.set_num_threads(threads)
    stop = video.StopFlag()

    def handle(signum: int, frame: Any) -> None:
        if stop.signum is not None:
            raise KeyboardInterrupt
        stop.request(signum)

    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGTERM, handle)
    base_config = config_from_dict(base)

    def events(event: Any) -> None:
        if isinstance(event, FrameDone):
            results.put(JobProgress(device, event))

    while stop.signum is None:
        try:
            job = jobs.get_nowait()
        except queue.Empty:
            break
        results.put(JobStarted(job.number, job.name, device))
        try:
            outcome = run_one(job, base_config, options, events, stop, device)
        except KeyboardInterrupt:
            outcome = Outcome(job, "stopped", message="aborted", device=device)
        except BaseException as error:  # report, never die silently
            outcome = Outcome(job, "failed", message=f"{type(error).__name__}: {error}", device=device)
            traceback.print_exc()
        results.put(JobDone(outcome, device))
    results.put(WorkerExit(device))


def run_batch(jobs: list[BatchJob], devices: list[str], base_config: Config, options: dict[str, Any],
              events: Callable[[Any], None], stop: Any) -> list[Outcome]:
    """Every job, on one device in this process (in order; `events` gets JobStarted, the run's own events and
    JobDone for each) or spread over one worker process per device (run_parallel). Jobs not started because
    of a stop are reported as such."""
    if len(devices) > 1:
        return run_parallel(jobs, devices, base_config, options, events, stop)
    device = devices[0] if devices else None
    outcomes = []
    for job in jobs:
        if stop.signum is not None:
            outcomes.append(Outcome(job, "stopped", message="not started"))
            continue
        events(JobStarted(job.number, job.name, device))
        outcome = run_one(job, base_config, options, events, stop, device)
        events(JobDone(outcome, device))
        outcomes.append(outcome)
    return outcomes


def run_parallel(jobs: list[BatchJob], devices: list[str], base_config: Config, options: dict[str, Any],
                 report: Callable[[Any], None], stop: Any) -> list[Outcome]:
    """Run jobs on one worker process per device; `report` receives their events in the parent."""
    context = multiprocessing.get_context("spawn")
    job_queue, results = context.Queue(), context.Queue()
    for job in jobs:
        job_queue.put(job)
    cpus = os.cpu_count() or 1
    cpu_workers = sum(1 for d in devices if d == "cpu")
    threads = max(1, cpus // max(1, cpu_workers))
    workers = [context.Process(target=_worker, args=(d, threads, job_queue, results, base_config.to_dict(), options),
                               daemon=False, name=f"nst-video-{d}") for d in devices]
    for worker in workers:
        worker.start()
    outcomes: list[Outcome] = []
    running = len(workers)
    forwarded = False
    while running:
        if stop.signum is not None and not forwarded:  # a SIGTERM sent to the parent alone reaches the workers
            forwarded = True
            for worker in workers:
                if worker.is_alive():
                    os.kill(worker.pid, stop.signum)
        try:
            message = results.get(timeout=0.5)
        except queue.Empty:
            if not any(w.is_alive() for w in workers):
                break
            continue
        if isinstance(message, JobDone):
            outcomes.append(message.outcome)
        elif isinstance(message, WorkerExit):
            running -= 1
        report(message)
    for worker in workers:
        worker.join()
    done = {o.job.number for o in outcomes}
    for job in jobs:  # jobs no worker reached (stopped early) are reported as not started
        if job.number not in done:
            outcomes.append(Outcome(job, "stopped", message="not started"))
    return sorted(outcomes, key=lambda o: o.job.number)


def summary_table(outcomes: list[Outcome]) -> str:
    rows = [("job", "input", "device", "frames", "seconds", "status")]
    for o in outcomes:
        status = o.status + (f": {o.message}" if o.status == "failed" else "")
        rows.append((str(o.job.number), o.job.name, o.device or "-", str(o.frames) if o.frames else "-",
                     f"{o.seconds:.1f}" if o.seconds else "-", status))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    return "\n".join("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(r[:5])) + "  " + r[5] for r in rows)

