"""Shared fixtures: seeded random VGG19 weights in a file (through the real --weights path), clips made
with ffmpeg's lavfi sources, and a CLI runner that sees what a user sees."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline import media, probe, video  # noqa: E402
from pipeline.config import Config  # noqa: E402
from pipeline.synthetic import MECHANICS_WEIGHTS, moving_clip, save_random_weights, write_frames  # noqa: E402

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(autouse=True)
def _isolated(tmp_path_factory, monkeypatch):
    """No test reads or writes the user's torch cache, none can download anything, and none changes the CPU
    thread count that the tests after it run with."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path_factory.getbasetemp() / "torch-home"))
    monkeypatch.delenv("NST_WEIGHTS", raising=False)
    monkeypatch.delenv("NST_FFMPEG", raising=False)
    monkeypatch.delenv("NST_FFPROBE", raising=False)
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)  # an in-process run with --threads sets it for the whole process


@pytest.fixture(scope="session")
def weights_file(tmp_path_factory) -> Path:
    return save_random_weights(tmp_path_factory.mktemp("weights") / "vgg19-random.pth", seed=0)


@pytest.fixture(scope="session")
def full_weights_file(tmp_path_factory) -> Path:
    return save_random_weights(tmp_path_factory.mktemp("weights") / "vgg19-full.pth", seed=0, full_model=True)


def ffmpeg(*args: str) -> None:
    subprocess.run([probe.ffmpeg_exe(), "-v", "error", "-y", *args], check=True)


def make_clip(path: Path, *, frames: int = 8, size: str = "96x64", rate: str = "30000/1001", audio: bool = True,
              extra: tuple[str, ...] = ()) -> Path:
    """A moving test pattern (testsrc2) with a sine tone, `frames` frames at `rate`."""
    args = ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}"]
    if audio:
        args += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"]
    args += ["-frames:v", str(frames), "-c:v", "libx264", "-pix_fmt", "yuv420p", *extra]
    if audio:
        args += ["-c:a", "aac", "-shortest"]
    ffmpeg(*args, str(path))
    return path


@pytest.fixture(scope="session")
def clip(tmp_path_factory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clips") / "clip.mp4")


@pytest.fixture(scope="session")
def style_image(tmp_path_factory) -> Path:
    rng = np.random.default_rng(1)
    stripes = np.zeros((80, 80, 3), np.uint8)
    stripes[::8] = (230, 80, 20)
    stripes[:, ::6] = (20, 60, 200)
    noisy = np.clip(stripes.astype(int) + rng.integers(0, 40, stripes.shape), 0, 255).astype(np.uint8)
    path = tmp_path_factory.mktemp("styles") / "style.png"
    media.write_image(path, noisy)
    return path


@pytest.fixture(scope="session")
def content_image(tmp_path_factory) -> Path:
    from pipeline.synthetic import texture

    path = tmp_path_factory.mktemp("images") / "content.png"
    media.write_image(path, texture(72, 96, seed=3))
    return path


FAST = ["--size", "64", "--iterations", "6", "--frame-iterations", "3", "--device", "cpu", "-q"]


@pytest.fixture
def cli():
    """Run nst-video in-process; returns click's Result (exit_code, stdout, stderr)."""
    import cli as cli_module

    runner = CliRunner()

    def run(*args, env: dict | None = None):
        return runner.invoke(cli_module.cli, [str(a) for a in args], env=env, catch_exceptions=False)

    return run


@pytest.fixture
def imageio_ffmpeg_only(monkeypatch):
    """Only the ffmpeg binary of imageio-ffmpeg, no ffprobe: the set-up of a machine without apt."""
    import imageio_ffmpeg

    monkeypatch.setenv("NST_FFMPEG", imageio_ffmpeg.get_ffmpeg_exe())
    monkeypatch.setenv("NST_FFPROBE", "")


def env_with(**values: str) -> dict:
    env = dict(os.environ)
    env.update(values)
    return env


# ---- real processes (resume, batch, workdir tests) ----------------------------------------------------
PROCESS_ARGS = ["--size", "64", "--iterations", "10", "--frame-iterations", "6", "--device", "cpu", "--seed", "5", "-q",
        "--content-weight", "1", "--style-weight", "1e5", "--tv-weight", "1", "--temporal-weight", "4e3"]


@pytest.fixture(scope="session")
def frames_dir(tmp_path_factory):
    return write_frames(moving_clip(frames=14, width=96, height=64).frames, tmp_path_factory.mktemp("clip") / "in")


def command(source, style, output, weights, *extra):
    return [sys.executable, str(ROOT / "cli.py"), str(source), str(style), str(output), "--weights", str(weights),
            *PROCESS_ARGS, *map(str, extra)]


def run(args, **kwargs):
    return subprocess.run(args, capture_output=True, text=True, timeout=600, **kwargs)


def frames_of(folder: Path) -> list[np.ndarray]:
    return [media.read_image(p) for p in sorted(folder.glob("*.png"))]


def killed_after(frames: int, args: list[str], work: Path) -> None:
    """Start a run in a real process and kill -9 it once `frames` frames are finished."""
    process = subprocess.Popen(args, stderr=subprocess.PIPE, text=True)
    wait_for_frames(work, frames, process)
    process.kill()
    process.wait()


def wait_for_frames(work: Path, count: int, process: subprocess.Popen, limit: float = 120) -> None:
    deadline = time.time() + limit
    while time.time() < deadline:
        if len(list((work / "frames").glob("*.png"))) >= count:
            return
        if process.poll() is not None:
            raise AssertionError(f"run ended early: {process.stderr.read()}")
        time.sleep(0.05)
    raise AssertionError("no frames appeared")


def batch_command(spec, weights, *extra):
    return [sys.executable, str(ROOT / "cli.py"), "batch", str(spec), "--weights", str(weights), *PROCESS_ARGS,
            *map(str, extra)]


@pytest.fixture
def tmpfs():
    """mount(folder, read_only=False): a tmpfs mounted there for the test (another filesystem, or a read-only
    one), unmounted after it; the test is skipped, saying why, where mounting is not allowed."""
    mounted = []

    def mount(folder: Path, read_only: bool = False) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        options = "size=16m" + (",ro" if read_only else "")
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True,
                                text=True)
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({result.stderr.strip() or 'mount failed'})")
        mounted.append(folder)
        return folder

    yield mount
    for folder in mounted:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


CUTS = [4, 8]


ONE_THREAD = ["--threads", "1", "--iterations", "6", "--frame-iterations", "3"]  # CPU bits depend on the thread count


def _three_shot_video(folder: Path) -> Path:
    """12 frames, scene cuts at 4 and 8 (three different scenes panning), 24000/1001 fps, with a tone."""
    frames = []
    for seed in (0, 7, 13):
        frames += moving_clip(frames=4, width=96, height=64, seed=seed).frames
    folder.mkdir(parents=True, exist_ok=True)
    for index, frame in enumerate(frames):
        media.write_image(folder / f"f{index:03d}.png", frame)
    path = folder / "three-shots.mp4"
    ffmpeg("-framerate", "24000/1001", "-i", str(folder / "f%03d.png"), "-f", "lavfi", "-i",
           "sine=frequency=440:sample_rate=44100", "-c:v", "libx264", "-crf", "12", "-pix_fmt", "yuv420p",
           "-c:a", "aac", "-shortest", str(path))
    return path


@pytest.fixture(scope="session")
def three_shots(tmp_path_factory) -> Path:
    return _three_shot_video(tmp_path_factory.mktemp("three-shots"))


@pytest.fixture(scope="session")
def sequential(three_shots, tmp_path_factory, weights_file, style_image) -> list[np.ndarray]:
    """The reference: one frame loop over the whole video, one thread."""
    out = tmp_path_factory.mktemp("sequential") / "out"
    result = run(command(three_shots, style_image, out, weights_file, *ONE_THREAD))
    assert result.returncode == 0, result.stderr
    return frames_of(out)


def same_frames(a: list[np.ndarray], b: list[np.ndarray]) -> None:
    assert len(a) == len(b) == 12
    for index, (x, y) in enumerate(zip(a, b)):
        assert np.array_equal(x, y), f"frame {index} differs (max {np.abs(x.astype(int) - y).max()})"


def small(weights_file, **changes) -> Config:
    values = dict(weights=str(weights_file), size=64, iterations=12, frame_iterations=4, device="cpu",
                  tolerance=0.0, quality_slack=0.0, probe_iterations=10,  # no stop, no extension: exact counts
                  **MECHANICS_WEIGHTS)
    values.update(changes)
    return Config(**values)


def run_job(source, style, output, cfg, **job):
    events = []
    summary = video.run(video.Job(Path(source), (Path(style),), Path(output), **job), cfg, events=events.append)
    return summary, events


@pytest.fixture(scope="session")
def synthetic_frames(tmp_path_factory):
    clip = moving_clip(frames=5, width=96, height=64)
    return write_frames(clip.frames, tmp_path_factory.mktemp("synthetic") / "frames")
