"""`nst-video status`: where every job stands, read from work directories and outputs only (it works from
another shell while a run goes on, and after it ended).

A job's state: running (a live run holds its work directory's lock), finished (its OUTPUT's record says
nst-video made it and the work directory is gone, or it logged `finished`), failed (its one-line error, from
the work directory or, for a job that failed before its first frame, the batch's results beside its jobs
file), stopped (by a signal, or killed: it logged a start and no end), or not started.
"""
from __future__ import annotations

import fcntl
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import probe
from .errors import ConfigError, NSTError
from .files import read_record
from .jobfile import job_work_dir, load_jobs, read_results
from .workdir import FORMAT, FrameRecord, default_work_dir, previews, read_json_lines, read_log

RECENT = 10  # frames over which the recent speed is measured


@dataclass
class JobStatus:
    name: str
    work_dir: str | None
    output: str | None
    input: str | None = None
    styles: list[str] = field(default_factory=list)
    state: str = "not started"      # running, finished, failed, stopped, not started
    message: str = ""               # the error of a failed job, the signal of a stopped one
    done: int = 0                   # frames finished
    total: int | None = None
    seconds_per_frame: float | None = None   # recent, wall clock (several workers make it smaller)
    eta_seconds: float | None = None
    cuts: list[int] = field(default_factory=list)
    device: str | None = None
    last_frame: int | None = None
    updated: float | None = None    # time of the latest record
    settings: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    frames: list[FrameRecord] = field(default_factory=list)       # pass-1 frame records, by index
    references: list[FrameRecord] = field(default_factory=list)   # cold references (--reference-every)
    preview: str | None = None      # path of the latest input/result JPEG

    def to_dict(self, *, detail: bool = False) -> dict[str, Any]:
        data = asdict(self)
        if not detail:
            for key in ("frames", "references", "settings", "preview"):
                data.pop(key)
        return data


def _locked(work: Path) -> bool:
    """Whether a live run holds the work directory (its lock is taken)."""
    try:
        handle = os.open(work / "lock", os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(handle)  # closing drops a lock we took
    return False


def _speed(frames: list[FrameRecord]) -> float | None:
    """Seconds per finished frame over the latest RECENT frames, by the wall clock."""
    times = sorted(r.time for r in frames if r.time)[-RECENT:]
    if len(times) >= 2 and times[-1] > times[0]:
        return (times[-1] - times[0]) / (len(times) - 1)
    recent = [r.seconds for r in frames[-RECENT:] if r.seconds]
    return sum(recent) / len(recent) if recent else None


def read_work_dir(work: Path, name: str | None = None, output: Path | None = None) -> JobStatus:
    """The status of the job whose work directory is `work`."""
    job = _job_file(work)
    notes, damaged_notes = read_json_lines(work / "run.jsonl")
    log, damaged_log = read_log(work / "log.jsonl")
    started = next((n for n in reversed(notes) if n.get("event") == "started"), {})
    status = JobStatus(name or Path(started.get("input", job.get("identity", {}).get("input", {}).get("path", work))).name,
                       str(work), started.get("output") or (str(output) if output else None),
                       started.get("input"), started.get("styles", []), settings=started.get("settings", {}),
                       device=started.get("device"), total=started.get("frames"))
    cuts = json.loads((work / "cuts.json").read_text()).get("frames") if (work / "cuts.json").exists() else None
    status.total = status.total or cuts
    frames = {}
    for record in log:
        if record.burn_in or record.pass_number != 1:
            continue
        if record.reference:
            status.references.append(record)
        else:
            frames[record.index] = record
    status.frames = [frames[i] for i in sorted(frames)]
    status.cuts = [r.index for r in status.frames if r.cut]
    frame_dir = work / "frames"
    status.done = sum(1 for _ in frame_dir.glob("*.png")) if frame_dir.is_dir() else 0
    if status.frames:
        status.last_frame = max(frames)
    status.warnings = [n["message"] for n in notes if n.get("event") == "warning"]
    if damaged_notes or damaged_log:
        status.warnings.append("a log ends in a damaged line (a run killed while writing it): the rest was read")
    times = [n["time"] for n in notes if n.get("time")] + [r.time for r in log if r.time]
    status.updated = max(times) if times else None
    ending = next((n for n in reversed(notes) if n.get("event") in ("started", "finished", "failed", "stopped")), {})
    if _locked(work):
        status.state = "running"
    elif ending.get("event") in ("finished", "failed", "stopped"):
        status.state, status.message = ending["event"], ending.get("message", "")
    elif started or status.done:
        # In the numbers users see (the progress bar's, a video's): the first frame is frame 1.
        last = (f" at frame {status.last_frame + 1}{f' of {status.total}' if status.total else ''}"
                if status.last_frame is not None else "")
        status.state, status.message = "stopped", f"killed{last}: run the same command again to resume"
    status.seconds_per_frame = _speed(status.frames)
    if status.state == "running" and status.total and status.seconds_per_frame:
        status.eta_seconds = max(0, status.total - status.done) * status.seconds_per_frame
    latest = previews(work)
    status.preview = str(latest[-1]) if latest else None
    return status


def _job_file(work: Path) -> dict[str, Any]:
    try:
        job = json.loads((work / "job.json").read_text())
    except FileNotFoundError:
        raise NSTError(f"{work} is not an nst-video work directory (it has no job.json)") from None
    except (OSError, ValueError):
        raise NSTError(f"{work}: job.json is damaged") from None
    if job.get("format", 0) > FORMAT:
        raise NSTError(f"{work} was made by a newer nst-video (work directory format {job['format']}, this "
                       f"version reads up to {FORMAT}); use that version's `nst-video status`")
    return job


def _finished_output(name: str, output: Path, result: dict[str, Any] | None = None) -> JobStatus:
    """A job whose work directory is gone: finished if its OUTPUT's record says nst-video made it, unless a later
    batch result (`result`, kept beside the jobs file) says what happened since; not started otherwise."""

    status = JobStatus(name, None, str(output))
    made = output.exists() and read_record(output) is not None
    updated = output.stat().st_mtime if made else None
    if result is not None and result.get("output") == os.path.realpath(output) and (updated is None or result["time"] > updated):
        state = {"done": "finished"}.get(result.get("status"), result.get("status"))
        if state in ("finished", "failed", "stopped"):
            status.state, status.message, status.updated = state, result.get("message", ""), result["time"]
            return status
    if made:
        status.state, status.updated = "finished", updated
        try:
            info = probe.inspect_input(output)
            status.done = status.total = info.frames
        except NSTError:
            pass
    elif output.exists():
        status.message = "OUTPUT exists, but nst-video has no record of making it"
    return status


def statuses(paths: list[str], *, work_dir: str | None = None) -> list[JobStatus]:
    """Every job the paths name: a work directory, an OUTPUT (its work directory beside it), or a jobs file
    (each of its jobs; `work_dir`: the batch's --work-dir)."""
    out = []
    for text in paths:
        path = Path(text)
        if (path / "job.json").exists():
            out.append(read_work_dir(path))
        elif path.suffix.lower() in (".yaml", ".yml") and path.is_file():
            results = read_results(path)
            for job in load_jobs(str(path)):
                work = job_work_dir(job, work_dir)
                status = (read_work_dir(work, job.name, job.output) if (work / "job.json").exists()
                          else _finished_output(job.name, job.output, results.get(str(job.number))))
                status.input = status.input or str(job.input)
                status.styles = status.styles or [str(s) for s in job.styles]
                out.append(status)
        elif (default_work_dir(path) / "job.json").exists():
            out.append(read_work_dir(default_work_dir(path), output=path))
        elif path.exists() and read_record(path) is not None:
            out.append(_finished_output(path.name, path))
        else:
            what = ("it does not exist" if not path.exists() else
                    f"it is a {'folder' if path.is_dir() else 'file'} nst-video has no record of making")
            raise ConfigError(f"{text} is no work directory, output or jobs file of nst-video ({what}; expected a "
                              "work directory with job.json, the OUTPUT of a run, or a JOBS.yaml)")
    return out


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def table(jobs: list[JobStatus]) -> str:
    rows = [("job", "frames", "s/frame", "ETA", "cuts", "device", "state")]
    for job in jobs:
        frames = f"{job.done}/{job.total}" if job.total else str(job.done)
        state = job.state + (f": {job.message}" if job.message and job.state in ("failed", "stopped") else "")
        rows.append((job.name, frames, f"{job.seconds_per_frame:.2f}" if job.seconds_per_frame else "-",
                     _duration(job.eta_seconds), str(len(job.cuts)), job.device or "-", state))
    widths = [max(len(r[i]) for r in rows) for i in range(6)]
    return "\n".join("  ".join(c.ljust(widths[i]) for i, c in enumerate(r[:6])) + "  " + r[6] for r in rows)


def as_json(jobs: list[JobStatus]) -> str:
    return json.dumps({"time": round(time.time(), 3), "jobs": [j.to_dict() for j in jobs]}, indent=1)
