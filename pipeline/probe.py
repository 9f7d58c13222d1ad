"""What an input is, before any frame is read: ffmpeg and ffprobe found and versioned, a video probed (size,
frame rate, frame count, audio, rotation, variable rate, alpha), a frame folder or an image inspected from its
headers. subprocess and OpenCV only; `media` reads and writes the frames themselves.

Sizes: MediaInfo and every function here give (width, height), as ffmpeg and image headers do; tensors
elsewhere are (H, W) (see GUIDE's conventions).
"""
from __future__ import annotations

import dataclasses
import functools
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import ffmpeg

from .config import parse_fraction
from .errors import ConfigError, MediaError

VIDEO_EXTS = (".mp4", ".mkv", ".mov", ".webm", ".m4v")
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
DEFAULT_FOLDER_FPS = Fraction(25)


# ---- ffmpeg discovery -------------------------------------------------------------------------------

def ffmpeg_exe() -> str:
    """$NST_FFMPEG, else `ffmpeg` on PATH (e.g. Debian's), else the binary shipped by imageio-ffmpeg."""
    if os.environ.get("NST_FFMPEG"):
        return os.environ["NST_FFMPEG"]
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception:  # ImportError, or its RuntimeError when the binary is missing
        raise MediaError("ffmpeg not found: install it (sudo apt-get install ffmpeg) or "
                         "pip install imageio-ffmpeg") from None


def file_url(path: str | Path) -> str:
    """A path as ffmpeg must be given it: `file:` first, so a name such as `pipe:0.mp4` or `http:x.mp4` is read
    as the file it is, never as a protocol."""
    return f"file:{path}"


def ffprobe_exe() -> str | None:
    """ffprobe beside ffmpeg or on PATH; None where only ffmpeg exists (imageio-ffmpeg ships no ffprobe).
    NST_FFPROBE= (empty) forces the ffmpeg-only path."""
    if "NST_FFPROBE" in os.environ:
        return os.environ["NST_FFPROBE"] or None
    sibling = Path(ffmpeg_exe()).with_name("ffprobe")
    if sibling.exists():
        return str(sibling)
    return shutil.which("ffprobe")


@functools.lru_cache(maxsize=None)
def _ffmpeg_version(exe: str) -> tuple[int, int]:
    """(major, minor) of an ffmpeg binary; git builds without a release number count as new."""
    result = subprocess.run([exe, "-version"], capture_output=True, text=True, errors="replace")
    match = re.search(r"ffmpeg version n?(\d+)\.(\d+)", result.stdout)
    return (int(match.group(1)), int(match.group(2))) if match else (99, 0)


def frame_rate_mode_option(mode: str) -> dict[str, str]:
    """`-fps_mode MODE` (ffmpeg 5.1 and newer) or the older `-vsync MODE`."""
    return {"fps_mode": mode} if _ffmpeg_version(ffmpeg_exe()) >= (5, 1) else {"vsync": mode}


# ---- what an input is ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class MediaInfo:
    kind: str                    # "video", "folder" or "image"
    path: Path
    width: int                   # as displayed (rotation applied)
    height: int
    fps: Fraction | None         # None for folders and images
    frames: int | None           # exact for folders/images, from the container (or estimated) for video
    has_audio: bool = False
    audio_codec: str | None = None
    rotation: int = 0
    vfr: bool = False
    alpha: bool = False          # frames have transparency (an image's or a folder's first frame; a video's pixel format)
    files: tuple[Path, ...] = field(default=(), repr=False)
    frames_exact: bool = False   # a video's frame count is the container's own (nb_frames), not estimated

    @property
    def size(self) -> tuple[int, int]:
        return self.width, self.height


def natural_key(path: Path) -> list:
    """Sort key so that frame2.png comes before frame10.png."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def is_image_path(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTS


EXR_UNREAD = ("{} OpenEXR, which this version does not read (its OpenCV has no EXR codec): convert the "
              "frames to 16-bit PNG or TIFF first, e.g. ffmpeg -i shot.%04d.exr -pix_fmt rgb48be shot.%04d.png")


def inspect_input(path: str | Path) -> MediaInfo:
    """Whatever INPUT is (video, frame folder or image), described without decoding it."""
    path = Path(path)
    if path.is_dir():
        return _inspect_folder(path)
    if path.suffix.lower() == ".exr":
        raise ConfigError(EXR_UNREAD.format(f"{path} is"))
    if is_image_path(path):
        height, width = _image_header(path)
        return MediaInfo("image", path, width, height, None, 1, files=(path,), alpha=has_transparency(path))
    return probe_video(path)


def _image_header(path: Path) -> tuple[int, int]:
    """(height, width) from the file header alone (Pillow opens lazily), so checking a folder of
    thousands of frames does not decode them."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return image.height, image.width
    except (UnidentifiedImageError, OSError, ValueError):
        raise MediaError(f"{path} is not a readable image") from None


def _inspect_folder(path: Path) -> MediaInfo:
    files = sorted((p for p in path.iterdir() if p.is_file() and is_image_path(p)), key=natural_key)
    if not files:
        if any(p.suffix.lower() == ".exr" for p in path.iterdir()):
            raise ConfigError(EXR_UNREAD.format(f"{path} holds"))
        raise MediaError(f"{path} holds no images ({', '.join(IMAGE_EXTS)})")
    first = _image_header(files[0])
    for other in files[1:]:
        size = _image_header(other)
        if size != first:
            raise MediaError(f"frames differ in size: {files[0].name} is {first[1]}x{first[0]}, "
                             f"{other.name} is {size[1]}x{size[0]}")
    return MediaInfo("folder", path, first[1], first[0], None, len(files), files=tuple(files),
                     alpha=has_transparency(files[0]))


def has_transparency(path: Path) -> bool:
    """Whether an image has an alpha channel that is not fully opaque (decodes that one image)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
                alpha = image.convert("RGBA").getchannel("A")
                return alpha.getextrema()[0] < 255
    except (OSError, ValueError):
        return False
    return False


def probe_video(path: Path) -> MediaInfo:
    probe_bin = ffprobe_exe()
    info = _probe_ffprobe(path, probe_bin) if probe_bin else _probe_ffmpeg(path)
    if info.width < 2 or info.height < 2:
        raise MediaError(f"{path}: bad video size {info.width}x{info.height}")
    if not info.vfr:
        average = _variable_rate(path)
        if average is not None:
            frames = round(info.frames / info.fps * average) if info.frames else None
            info = dataclasses.replace(info, vfr=True, fps=average, frames=frames)
    return info


def _variable_rate(path: Path, packets: int = 240) -> Fraction | None:
    """The average frame rate if the first packets' timestamps are irregular (variable frame rate), else
    None. Containers such as Matroska report a nominal rate even when frames were dropped from the
    timeline; the timestamps tell. Read with ffmpeg's framecrc muxer, so ffmpeg alone suffices."""
    result = subprocess.run([ffmpeg_exe(), "-v", "error", "-nostdin", "-i", file_url(path), "-map", "0:v:0", "-c", "copy",
                             "-frames:v", str(packets), "-f", "framecrc", "-"], capture_output=True, text=True,
                            errors="replace")
    base = re.search(r"#tb 0: (\d+)/(\d+)", result.stdout)
    stamps = sorted(int(line.split(",")[2]) for line in result.stdout.splitlines()
                    if line and not line.startswith("#") and len(line.split(",")) >= 4)
    if not base or len(stamps) < 4:
        return None
    deltas = [b - a for a, b in zip(stamps, stamps[1:]) if b > a]
    if not deltas:
        return None
    typical = sorted(deltas)[len(deltas) // 2]
    tolerance = max(1, typical * 0.05)  # timestamps rounded to the time base jitter by a tick
    if all(abs(d - typical) <= tolerance for d in deltas):
        return None
    seconds = (stamps[-1] - stamps[0]) * int(base.group(1)) / int(base.group(2))
    return parse_fraction((len(stamps) - 1) / seconds) if seconds > 0 else None


def _rate(text: str | None) -> Fraction | None:
    try:
        rate = Fraction(text) if text else None
    except (ValueError, ZeroDivisionError):
        return None
    return rate if rate and rate > 0 else None


def _probe_ffprobe(path: Path, probe_bin: str) -> MediaInfo:
    try:
        data = ffmpeg.probe(file_url(path), cmd=probe_bin)
    except ffmpeg.Error as exc:
        detail = last_line(exc.stderr.decode(errors="replace") if exc.stderr else "")
        raise MediaError(f"{path} is not a video or image ffmpeg can read ({detail})") from None
    streams = data.get("streams", [])
    videos = [s for s in streams if s.get("codec_type") == "video"
              and not s.get("disposition", {}).get("attached_pic")]
    if not videos:
        raise MediaError(f"{path} has no video stream")
    video = videos[0]
    audios = [s for s in streams if s.get("codec_type") == "audio"]
    real, avg = _rate(video.get("r_frame_rate")), _rate(video.get("avg_frame_rate"))
    fps = real or avg
    if fps is None:
        raise MediaError(f"{path}: cannot tell the frame rate of the video stream")
    vfr = bool(real and avg and abs(real - avg) / real > 0.001)
    if vfr:
        fps = parse_fraction(float(avg))
    rotation = 0
    for side in video.get("side_data_list", []) or []:
        if "rotation" in side:
            rotation = int(round(float(side["rotation"])))
    if not rotation and "rotate" in video.get("tags", {}):
        rotation = int(video["tags"]["rotate"])
    width, height = int(video.get("width", 0)), int(video.get("height", 0))
    if abs(rotation) % 180 == 90:
        width, height = height, width
    frames = int(video["nb_frames"]) if str(video.get("nb_frames", "")).isdigit() else None
    exact = bool(frames) and not vfr
    duration = video.get("duration") or _hms(video.get("tags", {}).get("DURATION")) or data.get("format", {}).get("duration")
    if vfr or not frames:
        frames = round(float(duration) * fps) if duration else None
    if frames == 0:
        raise MediaError(f"{path}: the video stream has no frames")
    alpha = bool(re.match(r"(yuva|gbrap|ya\d|rgba|bgra|argb|abgr)", video.get("pix_fmt", "")))
    return MediaInfo("video", path, width, height, fps, frames, bool(audios),
                     audios[0].get("codec_name") if audios else None, rotation, vfr, alpha, frames_exact=exact)


def _probe_ffmpeg(path: Path) -> MediaInfo:
    """Probe with ffmpeg alone by reading what `ffmpeg -i` prints (imageio-ffmpeg has no ffprobe)."""
    result = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", file_url(path)],
                            capture_output=True, text=True, errors="replace")
    text = result.stderr
    lines = text.splitlines()
    video_index = next((i for i, line in enumerate(lines)
                        if re.search(r"Stream #\S+.*: Video:", line) and "attached pic" not in line), None)
    if video_index is None:
        if "Input #0" in text and "Stream #" in text:
            raise MediaError(f"{path} has no video stream")
        raise MediaError(f"{path} is not a video or image ffmpeg can read ({last_line(text)})")
    video = lines[video_index]
    size = re.search(r", (\d+)x(\d+)", video)
    fps_match, tbr_match = re.search(r"([\d.]+) fps", video), re.search(r"([\d.]+)(k?) tbr", video)
    if not size or not (fps_match or tbr_match):
        raise MediaError(f"{path}: cannot read the video stream's size and frame rate")
    width, height = int(size.group(1)), int(size.group(2))
    avg = parse_fraction(fps_match.group(1)) if fps_match else None
    real = None
    if tbr_match:
        real = parse_fraction(float(tbr_match.group(1)) * (1000 if tbr_match.group(2) else 1))
    vfr = bool(avg and real and abs(real - avg) / real > 0.001)
    fps = avg or real
    rotation = 0
    for line in lines[video_index + 1:]:
        if re.match(r"\s*Stream #", line):
            break
        match = re.search(r"rotation of (-?[\d.]+) degrees", line)
        if match:
            rotation = int(round(float(match.group(1))))
    if abs(rotation) % 180 == 90:
        width, height = height, width
    duration = re.search(r"Duration: (\d+):(\d+):([\d.]+)", text)
    frames = None
    if duration:
        seconds = int(duration.group(1)) * 3600 + int(duration.group(2)) * 60 + float(duration.group(3))
        frames = round(seconds * fps) or None
    audio = re.search(r"Stream #\S+.*: Audio: (\w+)", text)
    return MediaInfo("video", path, width, height, fps, frames, bool(audio),
                     audio.group(1) if audio else None, rotation, vfr)


def _hms(text: str | None) -> float | None:
    """Matroska's per-stream DURATION tag, "00:00:00.266000000", in seconds."""
    match = re.fullmatch(r"(\d+):(\d+):([\d.]+)", text or "")
    return int(match.group(1)) * 3600 + int(match.group(2)) * 60 + float(match.group(3)) if match else None


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no details"
