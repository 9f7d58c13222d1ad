"""Every progress event a run or a batch sends, as plain dataclasses: the CLI's display, the JSON log and the
batch runner (in this process or from worker processes, through a queue) consume the same objects.

A run sends Started, then per frame Step (every `log_every` iterations) and FrameDone, Reference for each
sampled cold frame (--reference-every) and Notice for warnings. A batch sends JobStarted and JobDone around each
job; a batch in units (several devices, Ray) wraps its workers' FrameDone in JobProgress.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .probe import MediaInfo


@dataclass
class Started:
    total: int | None
    size: tuple[int, int]
    device: str
    resumed: int
    source: MediaInfo
    work_dir: Path | None


@dataclass
class Step:
    """A progress report, sent every `log_every` iterations (the only host synchronisation points)."""

    frame: int
    iteration: int
    iterations: int
    size: tuple[int, int]
    losses: dict[str, float]
    seconds: float


@dataclass
class FrameDone:
    index: int
    total: int | None
    iterations: int
    losses: dict[str, float]
    seconds: float
    cut: bool = False
    resumed: bool = False
    pass_number: int = 1
    reliable: float | None = None     # the share of pixels whose flow was reliable (logged)
    temporal_scale: float = 1.0       # the factor the frame's temporal weight ended at (relaxed to reach the level)


@dataclass
class Finishing:
    """A job's output is complete; its work directory is about to be removed (a report reads it a last time)."""
    work_dir: Path
    output: Path


@dataclass
class Notice:
    message: str


@dataclass
class Reference:
    """A sampled frame optimised cold (not used in the output): the level a later frame is judged against."""
    index: int
    losses: dict[str, float]
    iterations: int
    seconds: float


@dataclass
class JobStarted:
    job: int
    name: str
    device: str | None = None


@dataclass
class UnitsPlanned:
    """A batch in units has planned every job: the frames its units will make (one progress bar over all)."""
    frames: int


@dataclass
class JobProgress:
    """A frame finished by a batch worker in another process."""
    device: str
    frame: FrameDone


@dataclass
class JobDone:
    outcome: Any                      # jobfile.Outcome
    device: str | None = None
