"""A job's work directory: everything a rerun needs to continue where a run stopped.

    job.json     format version, the job's identity (frame-affecting config, input, styles, weights) and hash
    frames/      each finished stylised frame, lossless PNG (also the warm-start state of the next frame)
    inputs/      decoded input frames at the working size (multi-pass only: later passes sweep backwards)
    passes.json  progress of passes after the first (multi-pass only)
    log.jsonl    one JSON line per optimised frame (FrameRecord): index, pass, iterations, losses, seconds, ..
    cuts.json    the scene cuts found by the motion pre-pass of a run in shots (see shots.py)
    chunks/N/    burn-in frames of the chunk of a long shot whose kept frames start at N (--max-shot-frames)
    run.jsonl    one JSON line per run-level event: started (settings, paths, device), warning, finished,
                 failed or stopped (with the one-line message), each with its time; read by `nst-video status`
    preview/     the latest finished frame beside its input, a small JPEG (for the report page)
    lock         held (flock) while a run uses the directory
    shared.lock  held for a moment by whoever changes log.jsonl or passes.json: the shots of one run may be
                 stylised by several processes at once, which append to the same log

Every file is written under a temporary name, fsynced and renamed, so a kill at any moment leaves either
the old file or the new one, never half of one. A frame file that does not decode is treated as missing.
"""
from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import shutil
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import cv2
import numpy as np

from .errors import ConfigError, WorkDirBusy, WorkDirError
from .files import write_file, write_json
from .media import FRAME_NAME, write_image

FORMAT = 2  # 2: the progress of sweep passes is kept per shot
CHUNKS = "chunks"
# Every name a run writes in its work directory: cleaning up removes these and nothing else, so a file the
# user put there (or a folder the user gave) survives.
OURS = ("job.json", "frames", "inputs", "passes.json", "log.jsonl", "cuts.json", CHUNKS, "run.jsonl", "preview",
        "lock", "shared.lock", ".write-test")


def holder(work: str | Path) -> int | None:
    """The pid a live run wrote into the work directory's lock, if any."""
    try:
        text = (Path(work) / "lock").read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def default_work_dir(output: str | Path) -> Path:
    """A hidden folder beside OUTPUT."""
    output = Path(output)
    return output.parent / f".{output.name.rstrip(os.sep) or 'output'}.nst-work"


def identity_hash(identity: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


_IDENTITY_NAMES = {"size": "frame size", "input": "INPUT", "styles": "STYLE", "weights": "weights",
                   "fps": "frame rate", "init": "init image", "version_format": "format"}


def _text(value: Any) -> str:
    if isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return f"{value[0]}x{value[1]}"
    return json.dumps(value) if isinstance(value, (dict, list)) else str(value)


def _change(old: Any, new: Any) -> str:
    """`old -> new`, each cut to 24 characters where that still tells them apart (else the ends, else whole)."""
    a, b = _text(old), _text(new)
    for cut in (lambda t: t if len(t) <= 24 else t[:21] + "...", lambda t: t if len(t) <= 24 else "..." + t[-21:]):
        if cut(a) != cut(b):
            return f"{cut(a)} -> {cut(b)}"
    return f"{a} -> {b}"


def differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What changed between two job identities, each named once: config keys with old -> new values, then
    the job's other parts (INPUT, STYLE, frame size, ...)."""
    changed = []
    a, b = old.get("config", {}), new.get("config", {})
    for key in sorted(set(a) | set(b)):
        if a.get(key) != b.get(key):
            changed.append(f"{key} {_change(a.get(key), b.get(key))}")
    for key in sorted((set(old) | set(new)) - {"config"}):
        if old.get(key) == new.get(key):
            continue
        if key == "size" and "size" in a and a.get("size") != b.get("size"):
            continue  # the frame size follows from the size key, named above
        name = _IDENTITY_NAMES.get(key, key)
        changed.append(f"{name} {_change(old.get(key), new.get(key))}" if key in ("size", "fps")
                       else name)
    return changed


@dataclass
class FrameRecord:
    """One line of log.jsonl, the one schema of a frame's log: written by the run (shot.py), replayed by a resume,
    read by `status` and the report page. A frame of pass 1 or of a sweep pass, a chunk's burn-in frame (not one
    of the run's frames: the previous chunk's frame at that index is), or a cold reference beside a frame."""

    index: int
    pass_number: int = 1                 # "pass" in the file
    iterations: int = 0
    losses: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    cut: bool = False                    # the first frame of a shot after a scene cut
    converged: bool = False              # it stopped early (a later frame: at the level)
    reliable: float | None = None        # the share of its pixels the flow was trusted on
    probe: float | None = None           # the cold probe taken on it (temporal.Level)
    contrast: float | None = None        # its contrast against its input's
    temporal_scale: float = 1.0          # the factor its temporal weight ended at
    relaxed: int = 0                     # how many times that weight was relaxed
    time: float | None = None            # when it was logged
    burn_in: bool = False
    reference: bool = False

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["pass"] = data.pop("pass_number")
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FrameRecord | None:
        """A record from a log line (None where the line is not one: a foreign or older line without an index)."""
        if not isinstance(data, dict) or not isinstance(data.get("index"), int):
            return None
        known = {k: v for k, v in data.items() if k in FIELDS and v is not None}
        if "pass" in data:
            known["pass_number"] = data["pass"]
        return cls(**known)

    @property
    def quality(self) -> float:
        """Content + style."""
        return self.losses.get("content", 0.0) + self.losses.get("style", 0.0)


FIELDS = {f for f in FrameRecord.__dataclass_fields__ if f != "pass_number"}


def read_log(path: Path) -> tuple[list[FrameRecord], bool]:
    """The frame records of a log.jsonl, and whether a damaged line was skipped (a run killed mid-write)."""
    lines, damaged = read_json_lines(path)
    return [r for r in map(FrameRecord.from_json, lines) if r is not None], damaged


class WorkDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.frames = self.path / "frames"
        self.inputs = self.path / "inputs"
        self._lock_handle = None
        self._made = False   # this run (or the one that began the job) created the folder itself

    # -- opening ------------------------------------------------------------------------------------
    def open(self, identity: dict[str, Any], *, restart: bool = False) -> str | None:
        """Create, or reopen a directory of the same job. Refuses another job's or another version's
        directory that holds finished frames unless `restart` (which discards it); one without finished
        frames holds nothing to lose and is taken over. Returns a notice when it was taken over."""
        job_file = self.path / "job.json"
        notice = None
        if (self.path / "lock").is_file():
            self._lock()  # first: a directory a live run holds is neither taken over nor touched
        if not restart and job_file.exists() and self.finished_count() == 0:
            try:
                old = json.loads(job_file.read_text())
            except (OSError, ValueError):
                old = {}
            # Only a directory of this format: another version may keep its frames elsewhere.
            if old.get("format") == FORMAT and old.get("hash") != identity_hash(identity):
                restart = True
                notice = f"work directory {self.path} held no finished frame of another job: reused"
        if restart and self.path.exists():
            self._check_ours()
            made = self._made_by_us()
            self._remove_ours()
            self._made = made
        if job_file.exists():
            try:
                old = json.loads(job_file.read_text())
            except (OSError, ValueError):
                raise WorkDirError(f"work directory {self.path} is damaged (job.json unreadable); "
                                   "rerun with --restart to discard it") from None
            if old.get("format") != FORMAT:
                raise WorkDirError(f"work directory {self.path} was made by another version of nst-video "
                                   f"(format {old.get('format')}, this is {FORMAT}); rerun with --restart to discard it")
            if old.get("hash") != identity_hash(identity):
                changed = ", ".join(differences(old.get("identity", {}), identity)) or "the job"
                raise ConfigError(f"work directory {self.path} holds another job (changed: {changed}); "
                                  "rerun with --restart to discard its frames, or give another --work-dir")
        elif not restart and self.path.exists() and any(self.path.iterdir()):
            self._check_ours()
        try:
            if not self.path.exists():
                self._made = True
            self.frames.mkdir(parents=True, exist_ok=True)
            if not job_file.exists():
                write_json(job_file, {"format": FORMAT, "hash": identity_hash(identity), "identity": identity,
                                      "made_folder": bool(self._made)}, durable=True)
            probe = self.path / ".write-test"
            probe.write_text("ok")
            probe.unlink()
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EROFS, errno.EPERM):
                raise WorkDirError(f"work directory {self.path} is not writable ({exc.strerror})") from None
            raise WorkDirError(f"cannot use work directory {self.path}: {exc.strerror}") from None
        if not self.locked:
            self._lock()
        return notice

    def attach(self, identity: dict[str, Any]) -> None:
        """Use a directory that the run driving this process holds open (and locked): a shot stylised in a
        worker process or on another node. It must be the same job's."""
        try:
            old = json.loads((self.path / "job.json").read_text())
        except (OSError, ValueError):
            raise WorkDirError(f"work directory {self.path} is missing or damaged (job.json)") from None
        if old.get("format") != FORMAT or old.get("hash") != identity_hash(identity):
            changed = ", ".join(differences(old.get("identity", {}), identity)) or "the job"
            raise WorkDirError(f"work directory {self.path} holds another job (changed: {changed})")

    def _check_ours(self) -> None:
        if self.path.exists() and not (self.path / "job.json").exists() and any(self.path.iterdir()):
            raise ConfigError(f"{self.path} exists, is not empty and is not an nst-video work directory; "
                              "give an empty or new --work-dir")

    def _lock(self) -> None:
        self._lock_handle = open(self.path / "lock", "a+")
        try:
            fcntl.flock(self._lock_handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock_handle.close()
            self._lock_handle = None
            pid = holder(self.path)
            raise WorkDirBusy(f"another nst-video run{f' (pid {pid})' if pid else ''} is using {self.path}: "
                              "wait for it to end, or stop it first") from None
        self._lock_handle.seek(0)
        self._lock_handle.truncate()
        self._lock_handle.write(str(os.getpid()))
        self._lock_handle.flush()

    @property
    def locked(self) -> bool:
        """Whether this object holds the directory's lock."""
        return self._lock_handle is not None

    def _made_by_us(self) -> bool:
        try:
            return bool(json.loads((self.path / "job.json").read_text()).get("made_folder", True))
        except (OSError, ValueError):
            return self._made

    def _remove_ours(self) -> None:
        """Remove what runs wrote here (OURS) and nothing else; the lock goes last, then is released."""
        for name in OURS:
            if name == "lock":
                continue
            entry = self.path / name
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                try:
                    entry.unlink()
                except OSError:
                    pass
        (self.path / "lock").unlink(missing_ok=True)
        self.close()

    def close(self) -> None:
        if self._lock_handle is not None:
            fcntl.flock(self._lock_handle, fcntl.LOCK_UN)
            self._lock_handle.close()
            self._lock_handle = None

    def remove(self) -> None:
        """The job is done (or left nothing to resume): remove our files; the folder too if a run of this job
        created it and nothing else is in it."""
        made = self._made_by_us()
        self._remove_ours()
        if made:
            try:
                self.path.rmdir()
            except OSError:
                pass  # something that is not ours is in it: it stays

    # -- frames -------------------------------------------------------------------------------------
    def frame_path(self, index: int) -> Path:
        return self.frames / FRAME_NAME.format(index)

    def saved_path(self, index: int, folder: Path | None = None) -> Path:
        return (folder or self.frames) / FRAME_NAME.format(index)

    def load_frame(self, index: int, size: tuple[int, int] | None = None, *, folder: Path | None = None) -> np.ndarray | None:
        """A finished frame as RGB uint8, or None if it is missing, does not decode, or has the wrong size."""
        path = self.saved_path(index, folder)
        if not path.exists():
            return None
        data = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if data is None or (size is not None and (data.shape[1], data.shape[0]) != tuple(size)):
            return None
        return cv2.cvtColor(data, cv2.COLOR_BGR2RGB)

    def save_frame(self, index: int, frame: np.ndarray, folder: Path | None = None) -> None:
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
        write_image((folder or self.frames) / FRAME_NAME.format(index), frame, png_compression=1, durable=True)

    def chunk_folder(self, keep_from: int) -> Path:
        """Where the burn-in frames of the chunk whose kept frames start at `keep_from` go."""
        return self.path / CHUNKS / f"{keep_from:06d}"

    def save_input(self, index: int, frame: np.ndarray) -> None:
        self.inputs.mkdir(exist_ok=True)
        write_image(self.inputs / FRAME_NAME.format(index), frame, png_compression=1, durable=True)

    def load_input(self, index: int, size: tuple[int, int]) -> np.ndarray | None:
        return self.load_frame(index, size, folder=self.inputs)

    def finished_count(self) -> int:
        return sum(1 for _ in self.frames.glob("*.png")) if self.frames.is_dir() else 0

    def discard_if_empty(self) -> bool:
        """After a failed run: remove the directory if it holds no finished frame (nothing to resume), so a
        refused or failed command leaves nothing behind. True if removed."""
        if self.locked and (self.path / "job.json").exists() and self.finished_count() == 0:
            self.remove()
            return True
        self.close()  # never another process's directory: only the run holding the lock may remove it
        return False

    # -- progress of later passes and the per-frame log ---------------------------------------------
    def _passes(self) -> dict[str, list[int]]:
        path = self.path / "passes.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def pass_state(self, shot: int) -> tuple[int, int]:
        """(pass, frames done in it) of the shot starting at frame `shot`, for passes after the first; (1, 0)
        when none has started."""
        state = self._passes().get(str(shot))
        return (int(state[0]), int(state[1])) if state else (1, 0)

    @contextmanager
    def shared(self) -> Iterator[None]:
        """Exclusive use of the files every shot of a run changes (log.jsonl, passes.json), for a moment."""
        with open(self.path / "shared.lock", "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def set_pass_state(self, shot: int, pass_number: int, done: int) -> None:
        with self.shared():
            write_json(self.path / "passes.json", {**self._passes(), str(shot): [pass_number, done]}, durable=True)

    def log(self, record: FrameRecord) -> None:
        if record.time is None:
            record.time = round(time.time(), 3)
        with self.shared(), open(self.path / "log.jsonl", "a") as handle:
            handle.write(json.dumps(record.to_json(), sort_keys=True) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def read_log(self) -> list[FrameRecord]:
        return read_log(self.path / "log.jsonl")[0]

    def note(self, event: str, **data: Any) -> None:
        """A run-level event (started, warning, finished, failed, stopped) for `nst-video status`."""
        with self.shared(), open(self.path / "run.jsonl", "a") as handle:
            handle.write(json.dumps({"event": event, "time": round(time.time(), 3), **data}, default=str) + "\n")

    def save_preview(self, index: int, frame: np.ndarray, result: np.ndarray, height: int = 120) -> None:
        """The latest finished frame's input and result side by side, a small JPEG named by its index (shots in
        parallel finish frames out of order: the latest is the newest file); older previews go."""
        folder = self.path / "preview"
        folder.mkdir(exist_ok=True)
        width = max(1, round(frame.shape[1] * height / frame.shape[0]))
        pair = np.concatenate([cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA),
                               cv2.resize(result, (width, height), interpolation=cv2.INTER_AREA)], axis=1)
        ok, data = cv2.imencode(".jpg", cv2.cvtColor(pair, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 80])
        if ok:
            write_file(folder / f"{index:06d}.jpg", data.tobytes())
            for old in previews(self.path)[:-2]:  # the one before stays: a reader may have just picked it
                old.unlink(missing_ok=True)

    def drop_records(self, redone: Callable[[FrameRecord], bool]) -> None:
        """The one resume rule of the log: the records of frames that will be redone (those `redone` picks) go, so
        a resumed run's log reads as an uninterrupted run's."""
        with self.shared():
            records = [r for r in self.read_log() if not redone(r)]
            write_file(self.path / "log.jsonl", "".join(json.dumps(record.to_json(), sort_keys=True) + "\n"
                                                        for record in records).encode(), durable=True)


def read_json_lines(path: Path) -> tuple[list[dict[str, Any]], bool]:
    """The whole lines of a JSON-lines file, and whether a damaged line was skipped (a run killed mid-write)."""
    if not path.exists():
        return [], False
    records, damaged = [], False
    for line in path.read_text(errors="replace").splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:  # a line cut by a kill
            damaged = True
    return records, damaged


def previews(work: Path) -> list[Path]:
    """The preview JPEGs of a work directory, oldest first."""
    def age(path: Path) -> int:
        try:
            return path.stat().st_mtime_ns
        except OSError:
            return 0
    folder = Path(work) / "preview"
    return sorted(folder.glob("*.jpg"), key=age) if folder.is_dir() else []
