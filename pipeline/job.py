"""What a run is asked to do (Job) and what it reports (Summary), and what makes a job itself: its identity,
which a work directory and a finished OUTPUT keep, so frames and outputs made otherwise are never taken for its own.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from . import media, probe
from .config import Config
from .files import read_record
from .optimise import quality
from .vgg import weights_identity
from .workdir import differences, identity_hash


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
    idle_fraction: float = 0.0            # of the frame loop's time, the optimiser waiting for decode, flow or write
    flow_seconds: float = 0.0              # optical flow computed, summed over its threads,
    flow_pairs: int = 0                    # for this many frame pairs
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
        for name in ("stylised", "resumed", "early_stops", "relaxed", "level_iterations", "flow_seconds", "flow_pairs"):
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


def _input_identity(source: probe.MediaInfo) -> dict[str, Any]:
    paths = source.files if source.kind != "video" else (source.path,)
    stats = [os.stat(p) for p in paths]
    return {"kind": source.kind, "path": str(Path(source.path).resolve()), "count": len(paths),
            "bytes": sum(s.st_size for s in stats), "mtime": max(s.st_mtime_ns for s in stats),
            "names": hashlib.sha256("\n".join(Path(p).name for p in paths).encode()).hexdigest()[:16]}


def _file_digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


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
