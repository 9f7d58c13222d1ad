"""The checks made before a run creates anything: the frame size against VGG19 and memory, the disks against
the frames and the output, and what the user should know before the work starts."""
from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import torch

from . import media, memory, probe, runtime
from .config import MAX_SIZE, Config
from .errors import ConfigError, NSTError


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


def disk_full(error: BaseException) -> bool:
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
