"""A batch's jobs: read from a YAML jobs file or a glob of inputs, every job checked up front (nothing starts if
anything is wrong), and what became of each kept beside the jobs file for `status`. Light: no torch, so
`status` and `--serve` read a jobs file quickly.

    jobs:
      - input: clips/a.mp4
        style: styles/scream.jpg          # or a list of images
        output: out/a.mp4
        size: 768                          # any config key overrides the batch's settings for this job

Relative paths are relative to the jobs file.
"""
from __future__ import annotations

import glob
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import media, probe
from .config import Config, coerce_values, describe, load_yaml, yaml_error
from .errors import ConfigError, NSTError
from .events import JobDone
from .files import FOLDER_MARKER, check_not_overwriting, check_work_dir, foreign_files, reads_of, split_paths, write_json
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


def job_work_dir(job: BatchJob, work_dir: str | Path | None) -> Path:
    """A batch job's work directory: job-NNNN under the batch's --work-dir, or the default beside its OUTPUT."""
    return Path(work_dir) / f"job-{job.number:04d}" if work_dir else default_work_dir(job.output)


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
