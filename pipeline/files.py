"""Files, not frames: atomic writes, and the rules that keep every file of the user's safe.

- Every output is written under a temporary name beside its final path (same filesystem, so the rename is
  atomic) and renamed when complete; a failure removes the temporary.
- OUTPUT may never be, or hold, a file the run reads (INPUT, a STYLE image, the weights, the init image),
  however it is spelled: `./a.png`, `../x/a.png`, an absolute path, a symbolic link, a hard link.
- An output folder is replaced only when every numbered frame in it was written by nst-video (a marker file
  written with the frames records which); files of any other name are never removed.
- Temporary files of runs that died (SIGKILL, power loss) are removed by the next run of the same output,
  never those of a live process.
- Folders that outputs go in are created when the work starts, never by a command that is refused.
- A finished output knows what made it: the record of its job (the folder's marker, or a hidden sidecar
  `.NAME.nst-video.json` beside a video or image), so a rerun with other settings is not taken for done.

numpy-free and torch-free: only the standard library.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
from pathlib import Path
from typing import Iterable, Iterator, Mapping

from . import probe
from .config import Config
from .errors import ConfigError

FRAME_PATTERN = re.compile(r"\d{6}\.png")
FOLDER_MARKER = ".nst-video.json"   # in an output folder: the frames nst-video wrote there


def split_paths(value: str) -> tuple[Path, ...]:
    """Several paths separated by commas (STYLE), unless the whole value names a file: a comma in a file's name."""
    if Path(value).is_file():
        return (Path(value),)
    return tuple(Path(part.strip()) for part in value.split(",") if part.strip())


# ---- atomic writes ------------------------------------------------------------------------------------

def temp_sibling(path: Path, suffix: str = "") -> Path:
    """A temporary name beside `path` (same filesystem, so the final rename is atomic), tagged with our pid
    so that a later run can tell a dead run's leftovers from a live run's work."""
    path = Path(path)
    return path.with_name(f".{path.stem}.partial-{os.getpid()}{suffix or path.suffix}")


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic(path: str | Path, *, durable: bool = False) -> Iterator[Path]:
    """The one way a finished file appears: whatever is written to the yielded temporary name beside `path`
    is renamed to `path` when the block ends, and removed if it fails (a reader sees the old file or the new
    one, never half of one). `durable` fsyncs the file and its folder."""
    path = Path(path)
    make_parent(path)
    temp = temp_sibling(path)
    try:
        yield temp
        if durable:
            with open(temp, "rb+") as handle:
                os.fsync(handle.fileno())
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    if durable:
        fsync_dir(path.parent)


def write_file(path: str | Path, data: bytes, *, durable: bool = False) -> None:
    """Write `data` atomically (see atomic)."""
    with atomic(path, durable=durable) as temp:
        temp.write_bytes(data)


def write_json(path: str | Path, data: object, *, durable: bool = False, indent: int = 1) -> None:
    """JSON with sorted keys (stable files, easy diffs), written atomically; `durable` fsyncs file and folder."""
    write_file(path, json.dumps(data, indent=indent, sort_keys=True, default=str).encode(), durable=durable)


# ---- where outputs go ---------------------------------------------------------------------------------

def _existing_ancestor(path: Path) -> Path:
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_folder_writable(folder: str | Path, what: str = "output folder") -> None:
    """`folder` exists and is writable, or can be created (its nearest existing ancestor is a writable
    folder). Creates nothing: a refused command leaves nothing behind."""
    folder = Path(folder) if str(folder) else Path(".")
    ancestor = _existing_ancestor(folder)
    if not ancestor.is_dir():
        raise ConfigError(f"cannot create {what} {folder}: {ancestor} is a file")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        if ancestor == Path(os.path.abspath(folder)):
            raise ConfigError(f"{what} {folder} is not writable")
        raise ConfigError(f"cannot create {what} {folder}: {ancestor} is not writable")


def check_file_output(path: str | Path, option: str) -> Path:
    """A file an option names for writing (a log, a plot, a JSON report): not a folder, and its folder
    exists or can be created. The one rule everywhere: missing folders of outputs are created, at the
    start of the work."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{option}: {path} is a folder; give a file name")
    check_folder_writable(path.parent, f"folder for {option}")
    return path


def make_parent(path: str | Path) -> list[Path]:
    """Create the folder an output goes in (after every check passed). Returns the folders it created,
    outermost first, so that a run which then fails with nothing to show can remove them again."""
    parent = Path(path).parent
    missing = []
    folder = parent
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create folder {parent}: {exc.strerror}") from None
    return missing[::-1]


def remove_if_empty(folders: Iterable[Path]) -> None:
    """Remove folders (innermost last in `folders`) that are still empty."""
    for folder in reversed(list(folders)):
        try:
            folder.rmdir()
        except OSError:
            return


# ---- never overwrite what is read ---------------------------------------------------------------------

def same_file(a: str | Path, b: str | Path) -> bool:
    """The same file or folder however spelled: symbolic links and `..` resolved, hard links by inode."""
    a, b = Path(a), Path(b)
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return Path(os.path.realpath(a)) == Path(os.path.realpath(b))


def _inside(path: Path, folder: Path) -> bool:
    real, container = Path(os.path.realpath(path)), Path(os.path.realpath(folder))
    return real != container and container in real.parents


def check_not_overwriting(output: str | Path, reads: Mapping[str, Iterable[str | Path]], *,
                          folder: bool, name: str = "OUTPUT") -> None:
    """Refuse an output that is a file the run reads or, for a folder output (replaced whole), holds one.

    `reads` maps a role ("INPUT", "STYLE", ...) to its paths; list an input folder's files with it."""
    output = Path(output)
    for role, paths in reads.items():
        for path in paths:
            path = Path(path)
            if same_file(output, path):
                raise ConfigError(f"{name} {output} is the {role} ({path}): it would be overwritten; "
                                  f"give another {name}")
            if folder and _inside(path, output):
                raise ConfigError(f"{name} folder {output} holds the {role} {path}, which writing the frames "
                                  f"there would destroy; give another {name}")


def _same_or_inside(path: Path, folder: Path) -> bool:
    return same_file(path, folder) or _inside(path, folder)


def check_work_dir(work: str | Path, output: str | Path, reads: Mapping[str, Iterable[str | Path]], *,
                   folder: bool) -> None:
    """A work directory holds our files only, and every one of them goes when the job is done: it may not be,
    hold or lie inside OUTPUT (or the folder OUTPUT goes in), nor be or hold a file the run reads."""
    work, output = Path(work), Path(output)
    if _same_or_inside(output, work):
        raise ConfigError(f"--work-dir {work} would hold OUTPUT {output}, which cleaning up the work directory "
                          "would delete; give a work directory of its own")
    if folder and _inside(work, output):
        raise ConfigError(f"--work-dir {work} lies inside the OUTPUT folder {output}; give a work directory "
                          "outside it")
    for role, paths in reads.items():
        for path in paths:
            if _same_or_inside(Path(path), work):
                raise ConfigError(f"--work-dir {work} holds the {role} {path}; give a work directory of its own")


def check_outside(path: str | Path, folder: str | Path, option: str, what: str) -> None:
    """A file an option writes (a log, a report) must not go inside a folder the run owns (`what`)."""
    if path and _same_or_inside(Path(path), Path(folder)):
        raise ConfigError(f"{option} {path} is inside the {what} {folder}, which the run manages (and removes); "
                          "give a path outside it")


def write_target(path: str | Path, name: str = "OUTPUT") -> Path:
    """Where an output is really written: through a symbolic link into its target (a render share mounted
    elsewhere), so the temporary file and the final rename happen on the target's own filesystem and the
    link stays a link. A link to a file not yet made is written through when the target's folder exists; a link
    into a missing folder, or a link loop, is refused (creates nothing)."""
    path = Path(path)
    if not path.is_symlink():
        return path
    try:
        os.stat(path)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise ConfigError(f"{name} {path} is a symbolic link that loops; give a real path") from None
        target = Path(os.path.realpath(path))
        if not target.parent.is_dir():
            raise ConfigError(f"{name} {path} is a symbolic link to {os.readlink(path)}, whose folder does not "
                              "exist; create the target's folder first or give another path") from None
    return Path(os.path.realpath(path))


# ---- output folders: know our own files ---------------------------------------------------------------

def frames_marker(count: int) -> bytes:
    return json.dumps({"writer": "nst-video", "frames": count}).encode()


def record_path(output: str | Path) -> Path:
    """Where OUTPUT's record is kept: inside a folder (its marker), beside a file (a hidden sidecar)."""
    target = Path(os.path.realpath(output))
    return target / FOLDER_MARKER if target.is_dir() else target.with_name(f".{target.name}.nst-video.json")


def write_record(output: str | Path, record: Mapping[str, object]) -> None:
    """Record what made the finished OUTPUT (after it was renamed into place): the folder's marker gains it;
    a file's sidecar also keeps the file's size and time, so a file replaced by anyone else has no record."""
    path, target = record_path(output), Path(os.path.realpath(output))
    if target.is_dir():
        data = json.loads(path.read_text())
        data["made"] = dict(record)
    else:
        stat = target.stat()
        data = {"writer": "nst-video", "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns, "made": dict(record)}
    write_json(path, data)


def read_record(output: str | Path) -> dict | None:
    """The record of what made OUTPUT, or None when nst-video has none: no marker or sidecar, a file changed
    since, or a folder that holds files the marker does not list."""
    path, target = record_path(output), Path(os.path.realpath(output))
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("writer") != "nst-video" or not isinstance(data.get("made"), dict):
        return None
    if target.is_dir():
        return data["made"] if foreign_files(target) == ([], []) else None
    try:
        stat = target.stat()
    except OSError:
        return None
    return data["made"] if (stat.st_size, stat.st_mtime_ns) == (data.get("bytes"), data.get("mtime_ns")) else None


def foreign_files(folder: Path) -> tuple[list[str], list[str]]:
    """Files in an existing output folder that nst-video did not write: (other names, numbered frames
    that the folder's marker does not list)."""
    ours: set[str] = set()
    marker = folder / FOLDER_MARKER
    try:
        data = json.loads(marker.read_text())
        if isinstance(data, dict) and data.get("writer") == "nst-video" and isinstance(data.get("frames"), int):
            ours = {f"{i:06d}.png" for i in range(data["frames"])}
    except (OSError, ValueError):
        pass
    others, frames = [], []
    for entry in sorted(folder.iterdir()):
        if entry.name == FOLDER_MARKER:
            continue
        if FRAME_PATTERN.fullmatch(entry.name) and entry.is_file():
            if entry.name not in ours:
                frames.append(entry.name)
        else:
            others.append(entry.name)
    return others, frames


def check_output_folder(folder: Path, *, overwrite: bool) -> None:
    """An existing output folder may be replaced only if it holds nothing but frames we wrote (or, with
    `overwrite`, numbered frames of anyone's); a file of any other name is never removed."""
    if not folder.is_dir():
        return
    others, frames = foreign_files(folder)
    if others:
        raise ConfigError(f"output folder {folder} already holds other files ({others[0]}"
                          f"{', ...' if len(others) > 1 else ''}): give an empty or new folder")
    if frames and not overwrite:
        raise ConfigError(f"output folder {folder} holds frames nst-video did not write ({frames[0]}"
                          f"{', ...' if len(frames) > 1 else ''}): give an empty or new folder, "
                          "or --overwrite to replace them")


# ---- leftovers of dead runs ---------------------------------------------------------------------------

def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def partial_files(output: str | Path) -> list[tuple[Path, int]]:
    """Temporary files and folders of runs writing `output` (ours and others'), with their pids."""
    output = Path(output)
    folder = output.parent if str(output.parent) else Path(".")
    stem, suffix = output.stem, output.suffix
    pattern = re.compile(rf"\.{re.escape(stem)}\.partial-(\d+)(?:{re.escape(suffix)}|\.d)" if suffix
                         else rf"\.{re.escape(stem)}\.partial-(\d+)\.d")
    found = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return []
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match:
            found.append((entry, int(match.group(1))))
    return found


def remove_dead_partials(output: str | Path) -> list[Path]:
    """Remove the temporary outputs that runs of `output` left when they died; a live process's are kept."""
    removed = []
    for path, pid in partial_files(output):
        if _pid_alive(pid):
            continue
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def reads_of(input_path: Path, styles: tuple[Path, ...], cfg: Config) -> dict[str, list[Path]]:
    """Every file a job reads, by role: OUTPUT (and any other file it writes) may be none of them."""
    input_path = Path(input_path)
    reads: dict[str, list[Path]] = {"INPUT": [input_path]}
    if input_path.is_dir():
        reads["INPUT"] += [p for p in input_path.iterdir() if probe.is_image_path(p)]
    reads["STYLE"] = list(styles)
    if cfg.weights:
        reads["weights file"] = [Path(cfg.weights)]
    if cfg.init not in ("content", "noise"):
        reads["init image"] = [Path(cfg.init)]
    return reads
