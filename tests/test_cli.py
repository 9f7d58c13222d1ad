"""The command line as users meet it: every flag works, bad input is one line and a non-zero exit code, and
nothing appears at OUTPUT unless the run succeeded."""
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from pipeline import media
from tests.conftest import FAST, ffmpeg


def one_line_error(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ") and "Traceback" not in result.stderr
    return lines[0]


def nothing_written(folder: Path, output: Path) -> None:
    assert not output.exists()
    assert not [p for p in folder.iterdir() if p.name.startswith(f".{output.stem}.partial")]


# ---- help and version ---------------------------------------------------------------------------------

def test_help_lists_every_option_and_examples(cli):
    result = cli("--help")
    assert result.exit_code == 0
    for option in ["--config", "--size", "--iterations", "--frame-iterations", "--content-weight", "--style-weight",
                   "--tv-weight", "--temporal-weight", "--style-scale", "--style-blend", "--optimizer", "--lr", "--init",
                   "--pooling", "--original-colors", "--device", "--weights", "--seed", "--fps", "--crf", "--codec",
                   "--keep-size", "--quiet", "--debug", "--version", "--no-flow", "--long-term", "--passes",
                   "--precision", "--work-dir", "--keep-work", "--restart", "--log", "--save-every", "--loss-plot"]:
        assert option in result.stdout, option
    assert "Examples:" in result.stdout and "nst-video clip.mp4 scream.jpg out.mp4" in result.stdout
    for command in ["eval", "weights", "config", "batch", "bench", "reconstruct", "sweep"]:
        assert f"\n  {command}" in result.stdout, command


def test_version(cli):
    from pipeline import __version__

    result = cli("--version")
    assert result.exit_code == 0 and __version__ in result.stdout


# ---- bad input ----------------------------------------------------------------------------------------

def _text_as_video(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("this is not a video")
    return path


def _audio_only(tmp_path):
    path = tmp_path / "audio.mp4"
    ffmpeg("-f", "lavfi", "-i", "sine", "-t", "0.5", str(path))
    return path


def _truncated(tmp_path, clip):
    path = tmp_path / "truncated.mp4"
    data = clip.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _empty_folder(tmp_path):
    path = tmp_path / "empty"
    path.mkdir()
    (path / "readme.txt").write_text("no frames here")
    return path


def _mixed_sizes(tmp_path):
    path = tmp_path / "mixed"
    path.mkdir()
    media.write_image(path / "1.png", np.zeros((20, 30, 3), np.uint8))
    media.write_image(path / "2.png", np.zeros((22, 30, 3), np.uint8))
    return path


@pytest.mark.parametrize("make_input, message, code", [
    (_text_as_video, "not a video or image ffmpeg can read", 1),
    (_audio_only, "has no video stream", 1),
    (_empty_folder, "holds no images", 1),
    (_mixed_sizes, "frames differ in size", 1),
])
def test_bad_inputs(cli, tmp_path, weights_file, style_image, make_input, message, code):
    out = tmp_path / "out.mp4"
    result = cli(make_input(tmp_path), style_image, out, "--weights", weights_file, *FAST)
    assert result.exit_code == code
    assert message in one_line_error(result)
    nothing_written(tmp_path, out)


def test_truncated_video(cli, tmp_path, weights_file, style_image, clip):
    out = tmp_path / "out.mp4"
    result = cli(_truncated(tmp_path, clip), style_image, out, "--weights", weights_file, *FAST)
    assert result.exit_code == 1 and "truncated.mp4" in one_line_error(result)
    nothing_written(tmp_path, out)


def test_missing_input_and_style_are_usage_errors(cli, tmp_path, weights_file, style_image, clip):
    out = tmp_path / "out.mp4"
    result = cli(tmp_path / "nope.mp4", style_image, out, "--weights", weights_file)
    assert result.exit_code == 2 and "does not exist" in one_line_error(result)
    result = cli(clip, tmp_path / "nope.jpg", out, "--weights", weights_file)
    assert result.exit_code == 2 and "nope.jpg does not exist" in one_line_error(result)
    result = cli(clip, f"{style_image},{tmp_path / 'gone.png'}", out, "--weights", weights_file)
    assert result.exit_code == 2 and "gone.png does not exist" in one_line_error(result)
    nothing_written(tmp_path, out)


def test_style_that_is_not_an_image(cli, tmp_path, weights_file, clip):
    style = tmp_path / "style.jpg"
    style.write_text("not an image")
    out = tmp_path / "out.mp4"
    result = cli(clip, style, out, "--weights", weights_file, *FAST)
    assert result.exit_code == 1 and "style.jpg is not a readable image" in one_line_error(result)
    nothing_written(tmp_path, out)


@pytest.mark.parametrize("args, message", [
    (["--size", "16"], "size must be between 32 and 8192"),
    (["--size", "100000"], "size must be between 32 and 8192"),
    (["--style-blend", "0.7,0.3"], "--style-blend has 2 weights for 1 style images"),
    (["--content-weight", "-1"], "content_weight must not be negative"),
    (["--style-weight", "-5"], "style_weight must not be negative"),
    (["--device", "cuda"], "no CUDA device"),
    (["--device", "tpu"], "unknown device"),
    (["--optimizer", "sgd"], "Invalid value for '--optimizer'"),
    (["--fps", "fast"], "fps: expected a frame rate"),
    (["--init", "missing.png"], "--init must be content, noise or an image file"),
    (["--config", "nosuchpreset"], "unknown config 'nosuchpreset'"),
])
def test_bad_options_are_usage_errors(cli, tmp_path, weights_file, style_image, clip, args, message):
    if args == ["--device", "cuda"]:
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA")
    out = tmp_path / "out.mp4"
    result = cli(clip, style_image, out, "--weights", weights_file, *FAST, *args)
    assert result.exit_code == 2 and message in one_line_error(result)
    nothing_written(tmp_path, out)


def test_unknown_config_key(cli, tmp_path, weights_file, style_image, clip):
    config = tmp_path / "my.yaml"
    config.write_text("size: 64\nstyle_wieght: 3\n")
    out = tmp_path / "out.mp4"
    result = cli(clip, style_image, out, "--weights", weights_file, "--config", config)
    assert result.exit_code == 2 and "unknown key style_wieght" in one_line_error(result)


def test_unknown_output_extension_and_unwritable_output(cli, tmp_path, weights_file, style_image, clip):
    result = cli(clip, style_image, tmp_path / "out.xyz", "--weights", weights_file, *FAST)
    assert result.exit_code == 2 and "unknown output extension '.xyz'" in one_line_error(result)
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    result = cli(clip, style_image, blocker / "out.mp4", "--weights", weights_file, *FAST)
    assert result.exit_code == 2 and "cannot create output folder" in one_line_error(result)


def test_read_only_output_folder(cli, tmp_path, weights_file, style_image, clip):
    import os

    if os.geteuid() == 0:
        pytest.skip("root writes anywhere")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    result = cli(clip, style_image, locked / "out.mp4", "--weights", weights_file, *FAST)
    assert result.exit_code == 2 and "not writable" in one_line_error(result)


def test_video_into_a_single_image_is_refused(cli, tmp_path, weights_file, style_image, clip):
    result = cli(clip, style_image, tmp_path / "out.png", "--weights", weights_file, *FAST)
    assert result.exit_code == 2 and "give a video or folder as OUTPUT" in one_line_error(result)


def test_weights_file_that_is_not_vgg19(cli, tmp_path, style_image, clip):
    bad = tmp_path / "model.pth"
    bad.write_bytes(b"\x00" * 100)
    out = tmp_path / "out.mp4"
    result = cli(clip, style_image, out, "--weights", bad, *FAST)
    assert result.exit_code == 1 and "is not a VGG19 state dict" in one_line_error(result)
    nothing_written(tmp_path, out)


def test_weights_through_the_environment(cli, tmp_path, weights_file, style_image, content_image):
    out = tmp_path / "out.png"
    result = cli(content_image, style_image, out, *FAST, env={"NST_WEIGHTS": str(weights_file)})
    assert result.exit_code == 0 and out.exists()


def test_debug_shows_the_traceback(cli, tmp_path, weights_file, clip):
    style = tmp_path / "style.jpg"
    style.write_text("not an image")
    result = cli(clip, style, tmp_path / "o.mp4", "--weights", weights_file, *FAST, "--debug")
    assert result.exit_code == 1 and "Traceback" in result.stderr


# ---- every kind of input to every kind of output -----------------------------------------------------

def test_image_to_image_keep_size_and_determinism(cli, tmp_path, weights_file, style_image, content_image):
    first, second, big = tmp_path / "a.png", tmp_path / "b.png", tmp_path / "big.jpg"
    for out in (first, second):
        assert cli(content_image, style_image, out, "--weights", weights_file, *FAST, "--seed", "3").exit_code == 0
    assert media.read_image(first).shape == (48, 64, 3)
    assert np.array_equal(media.read_image(first), media.read_image(second))  # same seed, same result on CPU
    assert cli(content_image, style_image, big, "--weights", weights_file, *FAST, "--keep-size").exit_code == 0
    assert media.read_image(big).shape == (72, 96, 3)
    assert not list(tmp_path.glob(".*partial*"))


def test_video_to_video_keeps_rate_and_audio(cli, tmp_path, weights_file, style_image, clip):
    out = tmp_path / "out.mp4"
    result = cli(clip, style_image, out, "--weights", weights_file, *FAST)
    assert result.exit_code == 0, result.stderr
    info = media.probe_video(out)
    assert info.frames == 8 and info.fps == Fraction(30000, 1001) and info.has_audio
    assert (info.width, info.height) == (64, 42)
    assert not list(tmp_path.glob(".out.mp4.nst-work"))  # work directory removed after success


def test_folder_to_video_with_fps_and_video_to_folder(cli, tmp_path, weights_file, style_image, clip):
    frames = tmp_path / "frames"
    assert cli(clip, style_image, frames, "--weights", weights_file, *FAST).exit_code == 0
    assert sorted(p.name for p in frames.iterdir()) == [f"{i:06d}.png" for i in range(8)]
    out = tmp_path / "from_frames.mkv"
    assert cli(frames, style_image, out, "--weights", weights_file, *FAST, "--fps", "12", "--crf", "30",
               "--codec", "h264").exit_code == 0
    info = media.probe_video(out)
    assert info.fps == 12 and not info.has_audio


def test_image_to_video_and_folder(cli, tmp_path, weights_file, style_image, content_image):
    assert cli(content_image, style_image, tmp_path / "still.mp4", "--weights", weights_file, *FAST).exit_code == 0
    assert media.probe_video(tmp_path / "still.mp4").frames == 1
    assert cli(content_image, style_image, tmp_path / "dir", "--weights", weights_file, *FAST).exit_code == 0
    assert [p.name for p in (tmp_path / "dir").iterdir()] == ["000000.png"]


def test_style_blend_original_colors_init_and_optimizer_options(cli, tmp_path, weights_file, style_image,
                                                                content_image):
    other = tmp_path / "other.png"
    media.write_image(other, np.full((50, 40, 3), (30, 200, 90), np.uint8))
    base = ["--weights", weights_file, *FAST]
    runs = {
        "blend": [f"{style_image},{other}", "--style-blend", "0.7,0.3"],
        "colors": [style_image, "--original-colors"],
        "noise": [style_image, "--init", "noise", "--pooling", "avg"],
        "image": [style_image, "--init", other],
        "adam": [style_image, "--optimizer", "adam", "--lr", "0.05", "--tv-weight", "0", "--style-scale", "0.5",
                 "--content-weight", "1", "--style-weight", "100"],
        "paper": [style_image, "--config", "gatys2016", "--precision", "fp32", "--iterations", "4"],
    }
    outputs = {}
    for name, args in runs.items():
        out = tmp_path / f"{name}.png"
        result = cli(content_image, args[0], out, *base, *args[1:])
        assert result.exit_code == 0, (name, result.stderr)
        outputs[name] = media.read_image(out).astype(np.float32)
    content = media.resize(media.read_image(content_image), (64, 48)).astype(np.float32)

    def chroma(rgb):
        import cv2

        return cv2.cvtColor(rgb.astype(np.uint8), cv2.COLOR_RGB2YCrCb)[..., 1:].astype(np.float32)
    # luminance-only transfer keeps the content's colours far closer than plain transfer does
    assert np.abs(chroma(outputs["colors"]) - chroma(content)).mean() < 3.0
    assert len({o.tobytes() for o in outputs.values()}) == len(outputs)


def test_quiet_prints_nothing_and_log_writes_json_lines(cli, tmp_path, weights_file, style_image, clip):
    import json

    log = tmp_path / "run.jsonl"
    result = cli(clip, style_image, tmp_path / "out.mp4", "--weights", weights_file, *FAST, "--log", log)
    assert result.exit_code == 0 and result.stderr == "" and result.stdout == ""
    events = [json.loads(line) for line in log.read_text().splitlines()]
    assert events[0]["event"] == "started" and events[-1]["event"] == "finished"
    assert [e["index"] for e in events if e["event"] == "frame"] == list(range(8))


def test_summary_line_without_quiet(cli, tmp_path, weights_file, style_image, clip):
    args = [a for a in FAST if a != "-q"]
    result = cli(clip, style_image, tmp_path / "out.mp4", "--weights", weights_file, *args)
    assert result.exit_code == 0
    assert "8 frames in" in result.stderr and "s/frame" in result.stderr


def test_config_command_prints_the_resolved_config(cli, tmp_path):
    import yaml

    result = cli("config", "--config", "fast", "--size", "200", "--no-flow")
    values = yaml.safe_load(result.stdout)
    assert result.exit_code == 0 and values["size"] == 200 and values["flow"] is False


def test_weights_command_reports_where_it_looks(cli, tmp_path, weights_file, monkeypatch):
    result = cli("weights")
    assert result.exit_code == 0 and "missing: run `nst-video weights download`" in result.stdout
    result = cli("weights", "--weights", weights_file)
    assert result.exit_code == 0 and "a valid VGG19 state dict" in result.stdout
    bad = tmp_path / "bad.pth"
    bad.write_text("nope")
    result = cli("weights", "--weights", bad)
    assert result.exit_code == 1 and "is not a VGG19 state dict" in one_line_error(result)


def test_weights_download_offline_fails_with_one_line(cli, monkeypatch):
    import urllib.request

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    monkeypatch.setattr("torch.hub.urlopen", offline, raising=False)
    result = cli("weights", "download", "-q")
    assert result.exit_code == 1 and "downloading https://download.pytorch.org" in one_line_error(result)


def test_without_weights_the_run_says_how_to_get_them(cli, tmp_path, style_image, content_image, monkeypatch):
    import urllib.request

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    monkeypatch.setattr("torch.hub.urlopen", offline, raising=False)
    out = tmp_path / "out.png"
    result = cli(content_image, style_image, out, *FAST)
    assert result.exit_code == 1 and "nst-video weights download" in one_line_error(result)
    assert not out.exists()


@pytest.mark.parametrize("args", [
    ["--no-flow"],
    ["--flow", "--long-term", "1", "--temporal-weight", "10"],
    ["--passes", "2", "--config", "{passes_yaml}"],
    ["--scales", "32", "--scale-iterations", "2", "--tolerance", "0.01"],
])
def test_video_flags(cli, tmp_path, weights_file, style_image, clip, args):
    (tmp_path / "passes.yaml").write_text("pass_iterations: 2\n")
    args = [a.format(passes_yaml=tmp_path / "passes.yaml") for a in args]
    out = tmp_path / "out.mkv"
    result = cli(clip, style_image, out, "--weights", weights_file, *FAST, *args)
    assert result.exit_code == 0, result.stderr
    assert sum(1 for _ in media.FrameReader(media.inspect_input(out), (32, 22))) == 8


def test_work_dir_and_keep_work(cli, tmp_path, weights_file, style_image, clip):
    work = tmp_path / "state"
    result = cli(clip, style_image, tmp_path / "out.mp4", "--weights", weights_file, *FAST, "--work-dir", work,
                 "--keep-work")
    assert result.exit_code == 0, result.stderr
    assert len(list((work / "frames").glob("*.png"))) == 8 and (work / "job.json").exists()
    assert len((work / "log.jsonl").read_text().splitlines()) == 8


def test_bad_multiscale_options(cli, tmp_path, weights_file, style_image, clip):
    result = cli(clip, style_image, tmp_path / "o.mp4", "--weights", weights_file, *FAST, "--scales", "48,32",
                 "--scale-iterations", "1,1")
    assert result.exit_code == 2 and "ascending" in one_line_error(result)
    result = cli(clip, style_image, tmp_path / "o.mp4", "--weights", weights_file, *FAST, "--scales", "a,b")
    assert result.exit_code == 2 and "scales: expected" in one_line_error(result)
