"""Frames in and out: videos through ffmpeg pipes, frame folders and single images through OpenCV.

numpy and subprocess only (no torch). A frame is an (H, W, 3) uint8 RGB array. Frames stream: a reader
yields one frame at a time from an ffmpeg process (an empty read is the end, a short read an error), a
writer feeds an ffmpeg encoder. Every writer produces its output under a temporary name beside OUTPUT and
renames it only when complete; on error the encoder is killed and the temporary output removed.
"""
from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import threading
from collections import deque
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterator

import cv2
import ffmpeg
import numpy as np

from .errors import ConfigError, MediaError
from .files import (FOLDER_MARKER, check_folder_writable, check_output_folder, frames_marker, make_parent, temp_sibling,
                    write_file, write_target)
from .probe import DEFAULT_FOLDER_FPS, IMAGE_EXTS, VIDEO_EXTS, MediaInfo, last_line, ffmpeg_exe, file_url, frame_rate_mode_option

FRAME_NAME = "{:06d}.png"


# ---- alpha ------------------------------------------------------------------------------------------

def read_alpha(path: str | Path) -> np.ndarray | None:
    """An image's alpha channel as (H, W) uint8, or None if it has none."""
    data = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if data is None or data.ndim != 3 or data.shape[2] != 4:
        return None
    alpha = data[:, :, 3]
    return (alpha / 257.0).round().astype(np.uint8) if alpha.dtype == np.uint16 else alpha.astype(np.uint8)


def attach_alpha(frame: np.ndarray, alpha: np.ndarray | None) -> np.ndarray:
    """RGB + an alpha channel resized to the frame's size -> (H, W, 4) RGBA; the frame itself without alpha."""
    if alpha is None:
        return frame
    return np.dstack([frame, resize(alpha, (frame.shape[1], frame.shape[0]))])


def working_size(width: int, height: int, size: int) -> tuple[int, int]:
    """(W, H) with the longest side `size` and both sides even (H.264 with yuv420p needs even sides)."""
    scale = size / max(width, height)
    return (max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2))


# ---- reading frames ---------------------------------------------------------------------------------

def read_image(path: str | Path) -> np.ndarray:
    """Any image OpenCV reads (8/16-bit, grey, alpha) as (H, W, 3) uint8 RGB."""
    data = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if data is None:
        raise MediaError(f"{path} is not a readable image")
    if data.dtype == np.uint16:
        data = (data / 257.0).round().astype(np.uint8)
    elif data.dtype != np.uint8:
        data = (np.clip(data.astype(np.float32), 0, 1) * 255).round().astype(np.uint8)
    if data.ndim == 2:
        data = cv2.cvtColor(data, cv2.COLOR_GRAY2RGB)
    elif data.shape[2] == 4:
        data = cv2.cvtColor(data, cv2.COLOR_BGRA2RGB)
    else:
        data = cv2.cvtColor(data, cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(data)


def resize(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize to (W, H): area averaging when shrinking, bicubic when enlarging."""
    if (frame.shape[1], frame.shape[0]) == tuple(size):
        return frame
    shrinking = size[0] * size[1] < frame.shape[0] * frame.shape[1]
    return cv2.resize(frame, tuple(size), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC)


class _StderrDrain:
    """Reads a process's stderr in a thread (so a chatty ffmpeg never blocks on a full pipe), keeping the
    last lines and the frame count at which the first error line appeared."""

    def __init__(self, stream, frame_counter: Callable[[], int]):
        self.lines: deque[str] = deque(maxlen=20)
        self.first_error_frame: int | None = None
        self.first_line = ""
        self.error_lines = 0
        self._counter = frame_counter
        self._thread = threading.Thread(target=self._run, args=(stream,), daemon=True)
        self._thread.start()

    def _run(self, stream) -> None:
        for raw in iter(stream.readline, b""):
            line = raw.decode(errors="replace").rstrip()
            if line:
                self.lines.append(line)
                self.error_lines += 1
                if self.first_error_frame is None:
                    self.first_error_frame = self._counter()
                    self.first_line = line
        stream.close()

    def join(self) -> None:
        self._thread.join(timeout=10)

    def last(self) -> str:
        return self.lines[-1] if self.lines else "no details"

    def first(self) -> str:
        """The first line ffmpeg wrote, without ffmpeg's `[decoder @ 0x...]` prefix: usually the cause."""
        return re.sub(r"^\[[^\]]*@ 0x[0-9a-f]+\]\s*", "", self.first_line) if self.first_line else "no details"


class FrameReader:
    """Frames of any input at a working size (W, H), streamed; use as an iterator, then `close()`."""

    def __init__(self, info: MediaInfo, size: tuple[int, int], fps: Fraction | None = None, *, start: int = 0):
        self.info, self.size, self.start = info, size, start  # frames before `start` are skipped, not delivered
        self.fps = fps if fps is not None else (info.fps or DEFAULT_FOLDER_FPS)
        self.frames_read = start
        self.warnings: list[str] = []
        self._process: subprocess.Popen | None = None
        self._drain: _StderrDrain | None = None

    def __iter__(self) -> Iterator[np.ndarray]:
        if self.info.kind == "video":
            yield from self._video_frames()
        else:
            for path in self.info.files[self.start:]:
                yield resize(read_image(path), self.size)
                self.frames_read += 1

    def _video_frames(self) -> Iterator[np.ndarray]:
        width, height = self.size
        stream = ffmpeg.input(file_url(self.info.path)).video
        resample = self.info.vfr or (self.info.fps is not None and self.fps != self.info.fps)
        if resample:  # constant rate: ffmpeg duplicates/drops to the new rate, and we report it
            stream = stream.filter("fps", fps=f"{self.fps.numerator}/{self.fps.denominator}")
        if self.start:  # a shot in another process: the frames before it are decoded (exactly) but not scaled or sent
            stream = stream.filter("select", f"gte(n,{self.start})")
        shrinking = width * height < self.info.width * self.info.height
        stream = stream.filter("scale", width, height, flags="area" if shrinking else "bicubic")
        # Every decoded frame exactly once: without passthrough, ffmpeg pads a stream whose first timestamp
        # is not zero (common in Matroska) with a duplicated frame.
        mode = frame_rate_mode_option("cfr" if resample else "passthrough")
        args = (stream.output("pipe:", format="rawvideo", pix_fmt="rgb24", **mode)
                .global_args("-nostdin", "-hide_banner", "-loglevel", "error")
                .compile(cmd=ffmpeg_exe()))
        self._process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self._drain = _StderrDrain(self._process.stderr, lambda: self.frames_read)
        frame_bytes = width * height * 3
        try:
            while True:
                data = self._process.stdout.read(frame_bytes)
                if not data:
                    break
                if len(data) != frame_bytes:
                    raise MediaError(f"{self.info.path}: frame {self.frames_read} is truncated "
                                     f"({len(data)} of {frame_bytes} bytes)")
                yield np.frombuffer(data, np.uint8).reshape(height, width, 3)
                self.frames_read += 1
            code = self._process.wait()
            self._drain.join()
            if self.frames_read == self.start:
                detail = f" (ffmpeg: {self._drain.first()})" if self._drain.lines else ""
                raise MediaError(f"{self.info.path}: no frame could be decoded{detail}")
            if code != 0:
                raise MediaError(f"{self.info.path}: decoding failed after frame {self.frames_read} "
                                 f"({self._drain.last()})")
            expected = self.info.frames or 0
            short = expected - self.frames_read
            if self._drain.error_lines and not resample and short > (0 if self.info.frames_exact else 1):
                # damage ffmpeg could not conceal: the rest of the clip is lost, and a shorter output is no result
                raise MediaError(f"{self.info.path} is damaged: only its first {self.frames_read} of {expected} frames "
                                 f"could be decoded (ffmpeg: {self._drain.first()}); the last good frame is frame "
                                 f"{self.frames_read} (counting from 1). Repair or re-export the input")
            if self._drain.error_lines:
                self.warnings.append(
                    f"{self.info.path}: the decoder reported damaged data from about frame "
                    f"{self._drain.first_error_frame} ({self._drain.last()}); ffmpeg concealed it")
            if resample:
                kind = "variable frame rate input" if self.info.vfr else "input"
                self.warnings.append(f"{kind} resampled to a constant {float(self.fps):.3f} fps by duplicating "
                                     f"or dropping frames: about {self.info.frames} became {self.frames_read}")
        finally:
            self.close()

    def close(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        if self._process is not None:
            self._process.stdout.close()
        if self._drain is not None:
            self._drain.join()


# ---- writing frames ---------------------------------------------------------------------------------

def output_kind(path: str | Path) -> str:
    """"video", "image" or "folder", from OUTPUT's form."""
    text = str(path)
    path = Path(path)
    if path.is_dir() or text.endswith(os.sep):
        return "folder"
    suffix = path.suffix.lower()
    if suffix in VIDEO_EXTS:
        return "video"
    if suffix in IMAGE_EXTS:
        return "image"
    if not suffix:
        return "folder"
    raise ConfigError(f"unknown output extension {suffix!r}: use a video ({', '.join(VIDEO_EXTS)}), "
                      f"an image ({', '.join(IMAGE_EXTS)}) or a folder")


def check_writable(path: str | Path, *, overwrite: bool = False) -> None:
    """OUTPUT can be written: its folder exists or can be created, and an existing output folder holds only
    frames nst-video wrote there (with `overwrite`, numbered frames of anyone's). A symbolic link is checked
    (and later written) through to its target. Creates nothing."""
    target = write_target(path)
    kind = output_kind(path)
    if kind != "folder" and target.is_dir():
        raise ConfigError(f"OUTPUT {target} is a folder")
    if kind == "folder" and target.exists() and not target.is_dir():
        raise ConfigError(f"OUTPUT {target} is a file, not a folder")
    check_folder_writable(target.parent)
    if kind == "folder":
        check_output_folder(target, overwrite=overwrite)


def write_image(path: str | Path, frame: np.ndarray, *, png_compression: int = 3, durable: bool = False) -> None:
    """Write an RGB (or RGBA) frame atomically (temporary name, optional fsync, rename)."""
    path = Path(path)
    suffix = path.suffix.lower()
    params = [cv2.IMWRITE_PNG_COMPRESSION, png_compression] if suffix == ".png" else []
    if suffix in (".jpg", ".jpeg"):
        params = [cv2.IMWRITE_JPEG_QUALITY, 95]
    order = cv2.COLOR_RGBA2BGRA if frame.ndim == 3 and frame.shape[2] == 4 else cv2.COLOR_RGB2BGR
    ok, encoded = cv2.imencode(suffix, cv2.cvtColor(np.ascontiguousarray(frame), order), params)
    if not ok:
        raise MediaError(f"cannot encode {path.name} as {suffix}")
    write_file(path, encoded.tobytes(), durable=durable)


_CODECS = {  # name: (ffmpeg encoder, extra output options, containers it may go in)
    "h264": ("libx264", {"preset": "medium", "pix_fmt": "yuv420p"}, (".mp4", ".m4v", ".mov", ".mkv")),
    "h265": ("libx265", {"preset": "medium", "pix_fmt": "yuv420p", "tag:v": "hvc1"}, (".mp4", ".m4v", ".mov", ".mkv")),
    "vp9": ("libvpx-vp9", {"b:v": 0, "row-mt": 1, "pix_fmt": "yuv420p"}, (".webm", ".mkv", ".mp4")),
    "prores": ("prores_ks", {"profile:v": 3, "pix_fmt": "yuv422p10le"}, (".mov", ".mkv")),
    "ffv1": ("ffv1", {"pix_fmt": "yuv444p", "level": 3}, (".mkv",)),
}
_AUDIO_COPY = {
    ".mp4": {"aac", "mp3", "alac", "ac3", "eac3"}, ".m4v": {"aac", "mp3", "ac3"},
    ".mov": {"aac", "mp3", "alac", "ac3", "pcm_s16le", "pcm_s24le"}, ".webm": {"opus", "vorbis"},
}


def resolve_codec(codec: str, path: Path) -> str:
    """The codec name for OUTPUT: `auto` picks H.264 (VP9 for .webm); a known codec must suit the container."""
    suffix = path.suffix.lower()
    if codec == "auto":
        return "vp9" if suffix == ".webm" else "h264"
    if codec in _CODECS and suffix not in _CODECS[codec][2]:
        raise ConfigError(f"codec {codec} cannot go in a {suffix} file (use {', '.join(_CODECS[codec][2])})")
    return codec


def _encoder_options(codec: str, crf: int, suffix: str) -> tuple[str, dict]:
    """(ffmpeg encoder, output options) of a resolved codec name for a container."""
    encoder, options, _ = _CODECS.get(codec, (codec, {"pix_fmt": "yuv420p"}, ()))
    options = dict(options)
    if codec in ("h264", "h265", "vp9") or codec not in _CODECS:
        options["crf"] = crf
    if suffix in (".mp4", ".m4v", ".mov"):
        options["movflags"] = "+faststart"
    return encoder, options


@functools.lru_cache(maxsize=None)
def _encoder_problem(exe: str, codec: str, crf: int, suffix: str) -> str | None:
    """Encode two tiny frames into a throwaway file of OUTPUT's container with the options a run would use:
    None if that works, else ffmpeg's last line. About 0.1 s, so a bad --codec is found before any work."""
    import tempfile

    encoder, options = _encoder_options(codec, crf, suffix)
    with tempfile.TemporaryDirectory(prefix="nst-codec-") as folder:
        args = (ffmpeg.input("color=c=gray:s=64x64:r=25:d=0.08", format="lavfi")
                .output(str(Path(folder) / f"probe{suffix}"), vcodec=encoder, **options)
                .global_args("-nostdin", "-hide_banner", "-loglevel", "error", "-y")
                .compile(cmd=exe))
        result = subprocess.run(args, capture_output=True, text=True, errors="replace")
        return None if result.returncode == 0 else last_line(result.stderr)


def check_encoder(codec: str, crf: int, path: str | Path) -> str:
    """The codec OUTPUT will be written with, checked against the container and this ffmpeg build before any
    work starts (one-line ConfigError otherwise)."""
    path = Path(path)
    resolved = resolve_codec(codec, path)
    problem = _encoder_problem(ffmpeg_exe(), resolved, crf, path.suffix.lower())
    if problem is not None:
        known = "h264, h265, vp9, prores, ffv1, or an encoder `ffmpeg -encoders` lists"
        if "Unknown encoder" in problem or "not found" in problem.lower():
            raise ConfigError(f"--codec {codec}: this ffmpeg has no such encoder (use {known})")
        raise ConfigError(f"--codec {codec} cannot write a {path.suffix.lower()} file with this ffmpeg ({problem})")
    return resolved


class VideoWriter:
    """An owned ffmpeg encoder fed raw RGB frames through stdin, muxing the audio of `audio_from`."""

    def __init__(self, path: str | Path, frame_size: tuple[int, int], fps: Fraction, *, codec: str = "auto",
                 crf: int = 18, out_size: tuple[int, int] | None = None, audio_from: MediaInfo | None = None):
        self.path = Path(path)
        self.frame_size = frame_size
        make_parent(self.path)
        self.temp = temp_sibling(self.path)
        self.frames_written = 0
        encoder, options = _encoder_options(resolve_codec(codec, self.path), crf, self.path.suffix.lower())
        width, height = frame_size
        video = ffmpeg.input("pipe:", format="rawvideo", pix_fmt="rgb24", s=f"{width}x{height}",
                             framerate=f"{fps.numerator}/{fps.denominator}").video
        if out_size and tuple(out_size) != tuple(frame_size):
            video = video.filter("scale", out_size[0], out_size[1], flags="lanczos")
        streams = [video]
        if audio_from is not None and audio_from.has_audio:
            streams.append(ffmpeg.input(file_url(audio_from.path)).audio)
            suffix = self.path.suffix.lower()
            copyable = suffix == ".mkv" or audio_from.audio_codec in _AUDIO_COPY.get(suffix, set())
            options["acodec"] = "copy" if copyable else ("libopus" if suffix == ".webm" else "aac")
            if not copyable:
                options["b:a"] = "192k"
        args = (ffmpeg.output(*streams, file_url(self.temp), vcodec=encoder, r=f"{fps.numerator}/{fps.denominator}",
                              **options)
                .global_args("-nostdin", "-hide_banner", "-loglevel", "error", "-y")
                .compile(cmd=ffmpeg_exe()))
        self._process = subprocess.Popen(args, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
        self._drain = _StderrDrain(self._process.stderr, lambda: self.frames_written)

    def write(self, frame: np.ndarray) -> None:
        if (frame.shape[1], frame.shape[0]) != tuple(self.frame_size):
            raise MediaError(f"frame {self.frames_written} is {frame.shape[1]}x{frame.shape[0]}, "
                             f"the encoder expects {self.frame_size[0]}x{self.frame_size[1]}")
        try:
            self._process.stdin.write(np.ascontiguousarray(frame, dtype=np.uint8).tobytes())
        except (BrokenPipeError, ValueError):
            self._process.wait()
            self._drain.join()
            self.abort()
            raise MediaError(f"the encoder for {self.path.name} stopped at frame {self.frames_written} "
                             f"({self._drain.last()})") from None
        self.frames_written += 1

    def close(self) -> None:
        """Finish the file and move it to its name; raises (and cleans up) if ffmpeg failed."""
        try:
            self._process.stdin.close()
        except BrokenPipeError:
            pass
        code = self._process.wait()
        self._drain.join()
        if code != 0 or not self.temp.exists():
            self.abort()
            raise MediaError(f"encoding {self.path.name} failed ({self._drain.last()})")
        os.replace(self.temp, self.path)

    def abort(self) -> None:
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        self.temp.unlink(missing_ok=True)


class FolderWriter:
    """Frames as %06d.png in a temporary folder beside OUTPUT, renamed to OUTPUT when complete, with a marker
    listing them (so a later run knows they are ours). With `alpha_from` (the input's frame files), each
    frame keeps its input frame's alpha channel."""

    def __init__(self, path: str | Path, out_size: tuple[int, int] | None = None, *,
                 alpha_from: tuple[Path, ...] = (), overwrite: bool = False):
        self.path = Path(path)
        self.out_size = out_size
        self.alpha_from, self.overwrite = alpha_from, overwrite
        make_parent(self.path)
        self.temp = temp_sibling(self.path, suffix=".d")
        shutil.rmtree(self.temp, ignore_errors=True)
        self.temp.mkdir(parents=True)
        self.frames_written = 0

    def write(self, frame: np.ndarray) -> None:
        if self.out_size:
            frame = resize(frame, self.out_size)
        if self.frames_written < len(self.alpha_from):
            frame = attach_alpha(frame, read_alpha(self.alpha_from[self.frames_written]))
        write_image(self.temp / FRAME_NAME.format(self.frames_written), frame)
        self.frames_written += 1

    def close(self) -> None:
        write_file(self.temp / FOLDER_MARKER, frames_marker(self.frames_written))
        if self.path.is_dir():
            # Checked again: files may have appeared in OUTPUT while the run lasted. Only our frames (or, with
            # --overwrite, numbered frames) are ever replaced; the old folder goes aside first, so OUTPUT is
            # never missing.
            check_output_folder(self.path, overwrite=self.overwrite)
            old = temp_sibling(self.path, suffix=".old")
            os.replace(self.path, old)
            os.replace(self.temp, self.path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(self.temp, self.path)

    def abort(self) -> None:
        shutil.rmtree(self.temp, ignore_errors=True)


class ImageWriter:
    """A single image, written when closed (with `alpha`, the input's alpha channel, for PNG, TIFF, WebP)."""

    def __init__(self, path: str | Path, out_size: tuple[int, int] | None = None, *, alpha: np.ndarray | None = None):
        self.path = Path(path)
        self.out_size = out_size
        self.alpha = alpha
        self.frame: np.ndarray | None = None
        self.frames_written = 0

    def write(self, frame: np.ndarray) -> None:
        if self.frame is not None:
            raise MediaError(f"{self.path.name} is an image but the input has more than one frame: "
                             "give a video or folder as OUTPUT")
        self.frame = attach_alpha(resize(frame, self.out_size) if self.out_size else frame, self.alpha)
        self.frames_written += 1

    def close(self) -> None:
        if self.frame is None:
            raise MediaError(f"no frame to write to {self.path.name}")
        write_image(self.path, self.frame)

    def abort(self) -> None:
        self.frame = None


ALPHA_EXTS = (".png", ".tif", ".tiff", ".webp")


def alpha_kept(source: MediaInfo, output: str | Path) -> bool:
    """Whether OUTPUT keeps INPUT's alpha channel: image and folder inputs into PNG, TIFF or WebP images and
    frame folders (PNG); videos are encoded without alpha."""
    kind = output_kind(output)
    if not source.alpha or source.kind == "video":
        return False
    return kind == "folder" or (kind == "image" and Path(output).suffix.lower() in ALPHA_EXTS)


def open_sink(path: str | Path, frame_size: tuple[int, int], fps: Fraction, *, source: MediaInfo,
              codec: str = "auto", crf: int = 18, keep_size: bool = False, overwrite: bool = False):
    """The writer OUTPUT's form asks for. `keep_size` scales back to the input's size (even sides for video);
    the input's alpha channel is kept where OUTPUT can hold it (see `alpha_kept`). A symbolic link is written
    through: the output goes into its target, on the target's filesystem, and the link stays."""
    kind = output_kind(path)
    path = write_target(path)
    out_size = None
    if keep_size:
        out_size = output_size(source, path)
    if kind == "video":
        return VideoWriter(path, frame_size, fps, codec=codec, crf=crf, out_size=out_size,
                           audio_from=source if source.kind == "video" else None)
    keep_alpha = alpha_kept(source, path)
    if kind == "folder":
        return FolderWriter(path, out_size, alpha_from=source.files if keep_alpha else (), overwrite=overwrite)
    return ImageWriter(path, out_size, alpha=read_alpha(source.path) if keep_alpha else None)


def output_size(source: MediaInfo, path: str | Path) -> tuple[int, int]:
    """The size `keep_size` gives: the input's, made even for a video OUTPUT (H.264 with yuv420p needs it)."""
    if output_kind(path) == "video":
        return max(2, source.width // 2 * 2), max(2, source.height // 2 * 2)
    return source.width, source.height


def check_output_fits(source: MediaInfo, output: str | Path) -> None:
    """An image OUTPUT needs a one-frame INPUT."""
    if output_kind(output) == "image" and source.kind != "image" and (source.frames or 0) != 1:
        raise ConfigError(f"OUTPUT {Path(output).name} is an image but INPUT has "
                          f"{source.frames if source.frames else 'many'} frames: give a video or folder as OUTPUT")
