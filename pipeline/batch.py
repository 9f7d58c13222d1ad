"""Overnight batches: many jobs from a YAML file or a glob, validated up front, run in order on one device
or as units of work on several devices (a worker process per device) or a Ray cluster, resumable: the shots of
every job are spread over the workers, and each job is encoded once its last shot is done.

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
import json
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from . import media, probe
from .config import Config, ConfigError, NSTError, coerce_values, describe, load_yaml, yaml_error
from .events import Finishing, FrameDone, JobDone, JobProgress, JobStarted, Notice, UnitsPlanned
from .files import FOLDER_MARKER, check_not_overwriting, check_work_dir, foreign_files, split_paths, write_json
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


def _path_problem(raw: dict[str, Any]) -> str | None:
    """input and output are paths, style a path or a list of them: checked by type before any is formatted."""
    for key in ("input", "output"):
        if not isinstance(raw[key], str) or not raw[key].strip():
            return f"{key} must be a path, not {describe(raw[key])}"
    styles = raw["style"] if isinstance(raw["style"], list) else [raw["style"]]
    if not styles or not all(isinstance(s, str) and s.strip() for s in styles):
        return f"style must be a path or a list of paths, not {describe(raw['style'])}"
    return None


def _as_paths(value: Any, base: Path) -> list[Path]:
    paths = [Path(str(v)).expanduser() for v in (value if isinstance(value, list) else [value])]
    return [path if path.is_absolute() else (base / path).expanduser() for path in paths]


MAX_JOBS_FILE = 4 << 20   # bytes: about 20,000 jobs; a larger file is refused before it is parsed


def is_jobs_file(spec: str | Path) -> bool:
    """A jobs file, not a glob of inputs: a name ending in .yaml or .yml, or any existing file."""
    return Path(spec).suffix.lower() in (".yaml", ".yml") or Path(spec).is_file()


def load_jobs(spec: str, *, style: str | None = None, out_dir: str | None = None,
              base_config: Config | None = None, work_dir: str | Path | None = None) -> list[BatchJob]:
    """Jobs from a YAML jobs file or a glob of inputs. Every problem in every job is collected and raised
    together (ConfigError, one line per problem), so nothing starts if anything is wrong."""
    errors: list[str] = []
    jobs: list[BatchJob] = []
    path = Path(spec)
    if is_jobs_file(spec):
        if not path.is_file():
            raise ConfigError(f"jobs file {spec} does not exist")
        if path.stat().st_size > MAX_JOBS_FILE:
            raise ConfigError(f"jobs file {spec} is {path.stat().st_size / 2**20:.0f} MiB; at most "
                              f"{MAX_JOBS_FILE >> 20} MiB is read (split it into several batches)")
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
            problem = _path_problem(raw)
            if problem:
                errors.append(f"job {number}: {problem}")
                continue
            try:
                overrides = coerce_values({k: v for k, v in raw.items() if k not in JOB_FIELDS}, f"job {number}")
            except ConfigError as error:
                errors.append(str(error) if str(error).startswith(f"job {number}") else f"job {number}: {error}")
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
            jobs.append(BatchJob(number, source, split_paths(style), output))
    errors += validate(jobs, base_config or Config(), work_dir)
    if errors:
        raise ConfigError(f"{len(errors)} problem{'s' if len(errors) > 1 else ''} in the batch, nothing started:\n  "
                          + "\n  ".join(errors))
    return jobs


def _keys(path: Path) -> list[Any]:
    """What identifies a file however it is spelled: its real path, and its inode where it exists (hard links)."""
    keys: list[Any] = [os.path.realpath(path)]
    try:
        stat = os.stat(path)
        keys.append((stat.st_dev, stat.st_ino))
    except OSError:
        pass
    return keys


def validate(jobs: list[BatchJob], base_config: Config, work_dir: str | Path | None = None) -> list[str]:
    """Every problem of every job: missing files, an output that is (or would destroy) a file this job or
    another job reads, two jobs writing one output, a work directory that would hold an output, settings that do
    not fit. Linear in the jobs: every read path is indexed once, with its folders."""
    from .video import reads_of

    errors = []
    seen: dict[str, int] = {}
    reads: dict[Any, list[tuple[int, str, Path]]] = {}     # a read file -> (job, role, path), at most two jobs
    holders: dict[str, list[tuple[int, str, Path]]] = {}   # a folder holding a read file -> the same
    for job in jobs:
        for role, path in [("INPUT", job.input), *(("STYLE", style) for style in job.styles)]:
            entry = (job.number, f"{role} of job {job.number}", path)
            for key in _keys(path):
                if len(reads.setdefault(key, [])) < 2 and all(e[0] != job.number for e in reads[key]):
                    reads[key].append(entry)
            for folder in Path(os.path.realpath(path)).parents:
                found = holders.setdefault(str(folder), [])
                if len(found) < 2 and all(e[0] != job.number for e in found):
                    found.append(entry)
    for job in jobs:
        prefix = f"job {job.number} ({job.name})"
        if not job.input.exists():
            errors.append(f"{prefix}: input {job.input} does not exist")
        for style in job.styles:
            if not style.is_file():
                errors.append(f"{prefix}: style {style} {'is a folder' if style.is_dir() else 'does not exist'}")
        resolved = os.path.realpath(job.output)
        if resolved in seen:
            errors.append(f"{prefix}: output {job.output} is also the output of job {seen[resolved]}")
        seen[resolved] = job.number
        try:
            folder = media.output_kind(job.output) == "folder"
            cfg = base_config.replace(**job.overrides)
            if cfg.style_blend is not None and len(cfg.style_blend) != len(job.styles):
                errors.append(f"{prefix}: style_blend has {len(cfg.style_blend)} weights for {len(job.styles)} styles")
            own = reads_of(job.input, job.styles, cfg)
            check_not_overwriting(job.output, own, folder=folder)
            hits = [e for key in _keys(job.output) for e in reads.get(key, ())]
            hits += holders.get(resolved, []) if folder else []
            for number, role, path in hits:
                if number != job.number:
                    check_not_overwriting(job.output, {role: [path]}, folder=folder)
            if media.output_kind(job.output) != "image":
                check_work_dir(job_work_dir(job, work_dir), job.output, own, folder=folder)
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


def job_work_dir(job: BatchJob, work_dir: str | Path | None) -> Path:
    """A batch job's work directory: job-NNNN under the batch's --work-dir, or the default beside its OUTPUT."""
    return Path(work_dir) / f"job-{job.number:04d}" if work_dir else default_work_dir(job.output)


def _spec(job: BatchJob, options: dict[str, Any], cfg: Config) -> Any:
    """The video.Job of a batch job, or None when its output is finished, made by this very job, and a rerun
    skips it. A finished output made otherwise (other settings, or not by nst-video) is refused unless
    --overwrite (redo it) or --restart."""
    from . import video

    work_dir = job_work_dir(job, options.get("work_dir"))
    spec = video.Job(job.input, job.styles, job.output, work_dir, options.get("keep_work", False),
                     options.get("restart", False), overwrite=options.get("overwrite", False))
    if not options.get("restart") and is_finished(job, work_dir):
        why = video.made_otherwise(spec, cfg)
        if why is None:
            return None
        if not options.get("overwrite"):
            raise ConfigError(f"OUTPUT {job.output} exists, but {why}: give --overwrite to make it again")
    return spec


def run_one(job: BatchJob, base_config: Config, options: dict[str, Any], events: Callable[[Any], None],
            stop: Any, device: str | None = None) -> Outcome:
    from . import video

    cfg = base_config.replace(**job.overrides, **({"device": device} if device else {}))
    try:
        spec = _spec(job, options, cfg)
        if spec is None:
            return Outcome(job, "skipped", message="output exists", device=cfg.device)
        summary = video.run(spec, cfg, events=events, stop=stop)
    except Exception as error:  # one broken job must not end the batch
        status, message = video.failure(error)
        return Outcome(job, status, message=message, device=cfg.device)
    return Outcome(job, "done", summary.frames, summary.seconds, device=cfg.device)


def run_batch(jobs: list[BatchJob], devices: list[str], base_config: Config, options: dict[str, Any],
              events: Callable[[Any], None], stop: Any, executor: Any = None) -> list[Outcome]:
    """Every job, on one device in this process (in order; `events` gets JobStarted, the run's own events and
    JobDone for each), or as units on an executor (several devices, or Ray: run_units). Jobs not started
    because of a stop are reported as such."""
    if executor is None and len(devices) > 1:
        from .executors import Pool

        executor = Pool(devices, base_config.threads)
    if executor is not None:
        return run_units(jobs, base_config, options, events, stop, executor)
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


class _Pending:
    """A job of a batch in units whose shots are out on the executor; the driver holds its work directory."""

    def __init__(self, job: BatchJob, run: Any, spans: list[Any]):
        self.job, self.run, self.left = job, run, {span.keep_from for span in spans}
        self.results: dict[int, Any] = {}
        self.problem: tuple[str, str] | None = None   # (status, message) of the first unit that failed or stopped

    def finish(self, device: str) -> Outcome:
        from . import video

        job, run = self.job, self.run
        try:
            if self.problem is not None:
                raise (NSTError(self.problem[1]) if self.problem[0] == "failed" else
                       video.Interrupted(signal.SIGTERM, self.problem[1]))
            run.assemble([self.results[key] for key in sorted(self.results)])
            summary = run.finish()
        except video.Interrupted as error:
            run.fail(error)
            return Outcome(job, "stopped", message=str(error), device=device)
        except NSTError as error:
            run.fail(error)
            return Outcome(job, "failed", message=str(error), device=device)
        return Outcome(job, "done", summary.frames, summary.seconds, device=device)


def _prepare(job: BatchJob, base_config: Config, options: dict[str, Any], executor: Any,
             emit: Callable[[Any], None]) -> tuple[Any, list[Any]] | Outcome:
    """A job's units: its shots (the driver opens its work directory and runs the cut pre-pass), or the whole job
    (an image, or shots: off) for a worker to run from start to end."""
    from . import executors, video

    cfg = base_config.replace(**job.overrides)
    try:
        spec = _spec(job, options, cfg)
        if spec is None:
            return Outcome(job, "skipped", message="output exists")
        run = video.Run(spec, cfg, events=emit)
        run.where = executor.describe()
        if not run.in_shots(executor.workers):
            return None, [executors.Unit((job.number, 0), job, base_config.to_dict(), frames=run.ctx.source.frames or 0,
                                         options=options)]
        run.start()
        try:
            spans = list(run.units())  # the job's pre-pass, before its shots are handed out
        except BaseException as error:
            run.fail(error)
            raise
    except NSTError as error:
        return Outcome(job, "failed", message=str(error))
    config = run.ctx.cfg.to_dict()
    units = [executors.Unit((job.number, span.keep_from), spec, config, span, span.end - span.keep_from)
             for span in spans]
    return _Pending(job, run, spans), units


def run_units(jobs: list[BatchJob], base_config: Config, options: dict[str, Any], events: Callable[[Any], None],
              stop: Any, executor: Any) -> list[Outcome]:
    """Every (job, shot) unit of the batch on one executor: each job's shots are stylised wherever the executor
    places them, and the job is encoded here as soon as its last unit is done."""
    from .executors import UnitEvent, UnitStarted

    outcomes: dict[int, Outcome] = {}
    pending: dict[int, _Pending] = {}
    units = []
    by_number = {job.number: job for job in jobs}
    for job in jobs:
        if stop.signum is not None:
            outcomes[job.number] = Outcome(job, "stopped", message="not started")
            continue
        prepared = _prepare(job, base_config, options, executor,
                            lambda event: events(event) if isinstance(event, Notice | Finishing) else None)
        if isinstance(prepared, Outcome):
            outcomes[job.number] = prepared
            events(JobDone(prepared))
            continue
        holder, job_units = prepared
        if holder is not None:
            if not job_units:  # every shot was finished by an earlier run: only the encode is left
                outcomes[job.number] = holder.finish("-")
                events(JobDone(outcomes[job.number]))
                continue
            pending[job.number] = holder
        units += job_units

    events(UnitsPlanned(sum(unit.frames for unit in units)))

    def on_event(message: Any) -> None:
        number, first = message.key
        if isinstance(message, UnitStarted):
            name = by_number[number].name + (f" from frame {first}" if number in pending else "")
            events(JobStarted(number, name, message.device))
        elif isinstance(message, UnitEvent) and isinstance(message.event, FrameDone):
            events(JobProgress(message.device, message.event))
        elif isinstance(message, UnitEvent) and isinstance(message.event, Notice):
            holder = pending.get(number)
            (holder.run.emit if holder is not None else events)(message.event)  # kept in the job's work directory

    def on_done(result: Any) -> None:
        number, first = result.key
        holder = pending.get(number)
        if holder is None:  # a whole job
            outcome = result.value if result.status == "done" else Outcome(
                by_number[number], result.status, message=result.message, device=result.device)
            outcomes[number] = outcome
            events(JobDone(outcome, result.device))
            return
        holder.left.discard(first)
        if result.status == "done":
            holder.results[first] = result.value
        elif holder.problem is None:
            holder.problem = (result.status, result.message)
        if not holder.left:
            outcomes[number] = holder.finish(result.device)
            events(JobDone(outcomes[number], result.device))

    executor.run(units, on_event, on_done, stop)
    for number, holder in pending.items():  # units a stop kept from starting
        if number not in outcomes:
            holder.problem = holder.problem or ("stopped", "not started")
            outcomes[number] = holder.finish("-")
    return [outcomes[job.number] for job in jobs]


# ---- the batch's results, beside its jobs file -----------------------------------------------------------

def results_path(jobs_file: str | Path) -> Path:
    """Where a batch keeps what became of each job of JOBS.yaml (hidden, beside it), for `status`."""
    path = Path(jobs_file)
    return path.with_name(f".{path.name}.nst-batch.json")


def read_results(jobs_file: str | Path) -> dict[str, dict[str, Any]]:
    """Job number (as text) -> its last outcome: status, message, output, time. Empty when none is kept."""
    try:
        data = json.loads(results_path(jobs_file).read_text())
    except (OSError, ValueError):
        return {}
    jobs = data.get("jobs") if isinstance(data, dict) and data.get("writer") == "nst-video" else None
    return {k: v for k, v in jobs.items() if isinstance(v, dict)} if isinstance(jobs, dict) else {}


class Results:
    """An event sink that keeps each finished job's outcome beside the jobs file (rewritten atomically as each
    job ends), so the morning after, `status JOBS.yaml` says what happened to jobs that never made a frame."""

    def __init__(self, jobs_file: str | Path):
        self.path, self.jobs = results_path(jobs_file), read_results(jobs_file)

    def __call__(self, event: Any) -> None:
        if isinstance(event, JobDone) and event.outcome.status != "skipped":
            outcome = event.outcome
            self.jobs[str(outcome.job.number)] = {"status": outcome.status, "message": outcome.message,
                                                  "output": os.path.realpath(outcome.job.output),
                                                  "time": round(time.time(), 3)}
            try:
                write_json(self.path, {"writer": "nst-video", "jobs": self.jobs})
            except OSError:
                pass  # a read-only folder of jobs: the batch itself goes on, status knows less


def summary_table(outcomes: list[Outcome]) -> str:
    rows = [("job", "input", "device", "frames", "seconds", "status")]
    for o in outcomes:
        status = o.status + (f": {o.message}" if o.status == "failed" else "")
        rows.append((str(o.job.number), o.job.name, o.device or "-", str(o.frames) if o.frames else "-",
                     f"{o.seconds:.1f}" if o.seconds else "-", status))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    return "\n".join("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(r[:5])) + "  " + r[5] for r in rows)

