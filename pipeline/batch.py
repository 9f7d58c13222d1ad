"""Overnight batches run: the jobs of a jobs file (jobfile.py) in order on one device, or as units of work on
several devices (a worker process per device) or a Ray cluster, resumable: the shots of every job are spread
over the workers, and each job is encoded once its last shot is done. A job whose OUTPUT exists, made by this
very job, is finished and skipped on a rerun; an unfinished one resumes from its work directory.
"""
from __future__ import annotations

import signal
from typing import Any, Callable

from . import video
from .config import Config
from .errors import ConfigError, Interrupted, NSTError, failure
from .events import Finishing, FrameDone, JobDone, JobProgress, JobStarted, Notice, UnitsPlanned
from .executors import Pool, Unit, UnitEvent, UnitStarted
from .job import Job, made_otherwise
from .jobfile import BatchJob, Outcome, is_finished, job_work_dir


# ---- running ----------------------------------------------------------------------------------------


def _spec(job: BatchJob, options: dict[str, Any], cfg: Config) -> Any:
    """The Job of a batch job, or None when its output is finished, made by this very job, and a rerun
    skips it. A finished output made otherwise (other settings, or not by nst-video) is refused unless
    --overwrite (redo it) or --restart."""
    work_dir = job_work_dir(job, options.get("work_dir"))
    spec = Job(job.input, job.styles, job.output, work_dir, options.get("keep_work", False),
                     options.get("restart", False), overwrite=options.get("overwrite", False))
    if not options.get("restart") and is_finished(job, work_dir):
        why = made_otherwise(spec, cfg)
        if why is None:
            return None
        if not options.get("overwrite"):
            raise ConfigError(f"OUTPUT {job.output} exists, but {why}: give --overwrite to make it again")
    return spec


def run_one(job: BatchJob, base_config: Config, options: dict[str, Any], events: Callable[[Any], None],
            stop: Any, device: str | None = None) -> Outcome:
    """One whole job; `device`: the device of the worker it landed on, which wins over a `device:` of its own."""
    cfg = base_config.replace(**{**job.overrides, **({"device": device} if device else {})})
    try:
        spec = _spec(job, options, cfg)
        if spec is None:
            return Outcome(job, "skipped", message="output exists", device=cfg.device)
        summary = video.run(spec, cfg, events=events, stop=stop)
    except Exception as error:  # one broken job must not end the batch
        status, message = failure(error)
        return Outcome(job, status, message=message, device=cfg.device)
    return Outcome(job, "done", summary.frames, summary.seconds, device=cfg.device)


def job_work(unit: Unit, cfg: Config, emit: Callable[[Any], None], stop: Any, node: str) -> Outcome:
    """A whole job's unit, wherever it landed (executors.execute): run from start to end, encode included."""
    return run_one(unit.job, cfg, unit.options, emit, stop, cfg.device)

def run_batch(jobs: list[BatchJob], devices: list[str], base_config: Config, options: dict[str, Any],
              events: Callable[[Any], None], stop: Any, executor: Any = None) -> list[Outcome]:
    """Every job, on one device in this process (in order; `events` gets JobStarted, the run's own events and
    JobDone for each), or as units on an executor (several devices, or Ray: run_units). Jobs not started
    because of a stop are reported as such."""
    if executor is None and len(devices) > 1:
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
        job, run = self.job, self.run
        try:
            if self.problem is not None:
                raise (NSTError(self.problem[1]) if self.problem[0] == "failed" else
                       Interrupted(signal.SIGTERM, self.problem[1]))
            run.assemble([self.results[key] for key in sorted(self.results)])
            summary = run.finish()
        except Interrupted as error:
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
    cfg = base_config.replace(**job.overrides)
    try:
        spec = _spec(job, options, cfg)
        if spec is None:
            return Outcome(job, "skipped", message="output exists")
        run = video.Run(spec, cfg, events=emit)
        run.where = executor.describe()
        if not run.in_shots(executor.workers):
            return None, [Unit((job.number, 0), job_work, job, base_config.to_dict(), frames=run.ctx.source.frames or 0,
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
    units = [Unit((job.number, span.keep_from), video.shot_work, spec, config, span, span.end - span.keep_from)
             for span in spans]
    return _Pending(job, run, spans), units


def run_units(jobs: list[BatchJob], base_config: Config, options: dict[str, Any], events: Callable[[Any], None],
              stop: Any, executor: Any) -> list[Outcome]:
    """Every (job, shot) unit of the batch on one executor: each job's shots are stylised wherever the executor
    places them, and the job is encoded here as soon as its last unit is done."""
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


def summary_table(outcomes: list[Outcome]) -> str:
    rows = [("job", "input", "device", "frames", "seconds", "status")]
    for o in outcomes:
        status = o.status + (f": {o.message}" if o.status == "failed" else "")
        rows.append((str(o.job.number), o.job.name, o.device or "-", str(o.frames) if o.frames else "-",
                     f"{o.seconds:.1f}" if o.seconds else "-", status))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    return "\n".join("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(r[:5])) + "  " + r[5] for r in rows)

