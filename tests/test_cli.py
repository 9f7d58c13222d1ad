"""The command line as users meet it: every flag works, bad input is one line and a non-zero exit code, and
nothing appears at OUTPUT unless the run succeeded."""
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from pipeline import media, probe
from pipeline.events import FrameDone
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
    (["--lr", "nan"], "lr must be a finite number, not nan"),
    (["--content-weight", "inf"], "content_weight must be a finite number, not inf"),
    (["--style-blend", "nan"], "style_blend must be a finite number"),
    (["--style-blend", "a"], "style_blend: expected comma-separated numbers, got 'a'"),
    (["--tolerance", "nan"], "tolerance must be a finite number"),
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


def test_a_style_file_with_a_comma_in_its_name(cli, tmp_path, weights_file, style_image, content_image):
    style = tmp_path / "Monet, Water Lilies.png"
    style.write_bytes(style_image.read_bytes())
    result = cli(content_image, style, tmp_path / "out.png", "--weights", weights_file, *FAST)
    assert result.exit_code == 0, result.stderr
    result = cli(content_image, f"{style},{style_image}", tmp_path / "two.png", "--weights", weights_file, *FAST)
    assert result.exit_code == 2 and "Monet does not exist" in result.stderr  # commas still separate otherwise


def test_an_exr_input_is_refused_before_any_work(cli, tmp_path, weights_file, style_image):
    plate = tmp_path / "plate.exr"
    plate.write_bytes(b"\x76\x2f\x31\x01" + bytes(60))  # OpenEXR's magic number
    frames = tmp_path / "frames"
    frames.mkdir()
    (frames / "shot.1001.exr").write_bytes(plate.read_bytes())
    for source in (plate, frames):
        result = cli(source, style_image, tmp_path / "out.mp4", "--weights", weights_file, *FAST)
        assert result.exit_code == 2 and "OpenEXR, which this version does not read" in one_line_error(result)
    assert not (tmp_path / "out.mp4").exists()


def test_video_to_video_keeps_rate_and_audio(cli, tmp_path, weights_file, style_image, clip):
    out = tmp_path / "out.mp4"
    result = cli(clip, style_image, out, "--weights", weights_file, *FAST)
    assert result.exit_code == 0, result.stderr
    info = probe.probe_video(out)
    assert info.frames == 8 and info.fps == Fraction(30000, 1001) and info.has_audio
    assert (info.width, info.height) == (64, 42)
    assert not list(tmp_path.glob(".out.mp4.nst-work"))  # work directory removed after success


def test_folder_to_video_with_fps_and_video_to_folder(cli, tmp_path, weights_file, style_image, clip):
    frames = tmp_path / "frames"
    assert cli(clip, style_image, frames, "--weights", weights_file, *FAST).exit_code == 0
    assert sorted(p.name for p in frames.iterdir()) == [".nst-video.json"] + [f"{i:06d}.png" for i in range(8)]
    out = tmp_path / "from_frames.mkv"
    assert cli(frames, style_image, out, "--weights", weights_file, *FAST, "--fps", "12", "--crf", "30",
               "--codec", "h264").exit_code == 0
    info = probe.probe_video(out)
    assert info.fps == 12 and not info.has_audio


def test_image_to_video_and_folder(cli, tmp_path, weights_file, style_image, content_image):
    assert cli(content_image, style_image, tmp_path / "still.mp4", "--weights", weights_file, *FAST).exit_code == 0
    assert probe.probe_video(tmp_path / "still.mp4").frames == 1
    assert cli(content_image, style_image, tmp_path / "dir", "--weights", weights_file, *FAST).exit_code == 0
    assert sorted(p.name for p in (tmp_path / "dir").iterdir()) == [".nst-video.json", "000000.png"]


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
    assert all(0 < e["temporal_scale"] <= 1 for e in events if e["event"] == "frame")  # relaxed, and how far


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
    assert sum(1 for _ in media.FrameReader(probe.inspect_input(out), (32, 22))) == 8


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


# ---- nothing of the user's is ever lost (the contract in README's error section) ---------------------

def _spellings(tmp_path, target: Path) -> dict[str, str]:
    """OUTPUT names for `target` (which is in tmp_path/"in"): relative, ./, .., absolute, symlink, hard link."""
    import os

    os.symlink(target.name, target.with_name(f"link{target.suffix}"))
    names = {"relative": f"in/{target.name}", "dot": f"./in/{target.name}", "dotdot": f"in/../in/{target.name}",
             "absolute": str(target), "symlink": f"in/link{target.suffix}"}
    if target.is_file():
        os.link(target, target.with_name(f"hard{target.suffix}"))
        names["hardlink"] = f"in/hard{target.suffix}"
    return names


@pytest.mark.parametrize("spelling", ["relative", "dot", "dotdot", "absolute", "symlink", "hardlink"])
def test_output_that_is_the_input_or_style_is_refused(cli, tmp_path, weights_file, style_image, content_image,
                                                      clip, monkeypatch, spelling):
    folder = tmp_path / "in"
    folder.mkdir()
    image, video, style = folder / "a.png", folder / "v.mp4", folder / "s.png"
    for source, copy in ((content_image, image), (clip, video), (style_image, style)):
        copy.write_bytes(source.read_bytes())
    monkeypatch.chdir(tmp_path)
    for target, args in ((image, ["in/a.png", "in/s.png"]), (video, ["in/v.mp4", "in/s.png"]),
                         (style, ["in/a.png", "in/s.png"])):
        before = target.read_bytes()
        name = _spellings(tmp_path, target)[spelling]
        result = cli(*args, name, "--weights", weights_file, *FAST)
        assert result.exit_code == 2, result.stderr
        role = "STYLE" if target == style else "INPUT"
        assert f"is the {role}" in one_line_error(result)
        assert target.read_bytes() == before
        for extra in folder.glob("*"):
            if extra.name.startswith(("link", "hard")):
                extra.unlink()
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no work directory, no partial file


def test_a_frame_folder_given_as_input_and_output_is_refused(cli, tmp_path, weights_file, style_image, clip):
    frames = tmp_path / "frames"
    assert cli(clip, style_image, frames, "--weights", weights_file, *FAST).exit_code == 0
    before = {p.name: p.read_bytes() for p in frames.iterdir()}
    for spelling in (frames, f"{frames}/", tmp_path / "frames" / ".." / "frames"):
        result = cli(frames, style_image, spelling, "--weights", weights_file, *FAST)
        assert result.exit_code == 2 and "is the INPUT" in one_line_error(result)
    assert {p.name: p.read_bytes() for p in frames.iterdir()} == before
    result = cli(frames, style_image, tmp_path, "--weights", weights_file, *FAST)
    assert result.exit_code == 2 and "holds the INPUT" in one_line_error(result)


def test_foreign_numbered_frames_in_an_output_folder_survive(cli, tmp_path, weights_file, style_image, clip,
                                                             content_image):
    out = tmp_path / "o"
    out.mkdir()
    foreign = out / "000009.png"
    foreign.write_bytes(content_image.read_bytes())
    result = cli(clip, style_image, out, "--weights", weights_file, *FAST)
    assert result.exit_code == 2 and "did not write (000009.png)" in one_line_error(result)
    assert foreign.read_bytes() == content_image.read_bytes() and [p.name for p in out.iterdir()] == ["000009.png"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".o")]
    # our own earlier output is replaced without asking; a foreign frame only with --overwrite
    assert cli(clip, style_image, out, "--weights", weights_file, *FAST, "--overwrite").exit_code == 0
    assert not foreign.exists() and len(list(out.glob("*.png"))) == 8
    assert cli(clip, style_image, out, "--weights", weights_file, *FAST, "--frame-iterations", "2").exit_code == 0


def test_refused_commands_leave_nothing_and_block_nothing(cli, tmp_path, weights_file, style_image, clip,
                                                          monkeypatch):
    out = tmp_path / "out.mp4"
    result = cli(clip, style_image, out, "--weights", weights_file, *FAST, "--codec", "prores")
    assert result.exit_code == 2 and "cannot go in a .mp4 file" in one_line_error(result)
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    # a work directory with no finished frame (left by an older version, or a crash before frame 0) never
    # blocks the corrected command
    from pipeline import workdir

    stale = workdir.WorkDir(workdir.default_work_dir(out))
    stale.open({"another": "job"})
    stale.close()
    result = cli(clip, style_image, out, "--weights", weights_file, *[a for a in FAST if a != "-q"])
    assert result.exit_code == 0, result.stderr
    assert "held no finished frame of another job: reused" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.mp4.nst-video.json", "out.mp4"]  # and its record


def test_bad_codec_is_found_before_any_work(cli, tmp_path, weights_file, style_image, clip, monkeypatch):
    from pipeline import stylist

    def no_work(*args, **kwargs):
        raise AssertionError("a frame was optimised")

    monkeypatch.setattr(stylist.Stylist, "__init__", no_work)
    for codec, message in (("bogus", "this ffmpeg has no such encoder"), ("ffv1", "cannot go in a .mp4")):
        result = cli(clip, style_image, tmp_path / "out.mp4", "--weights", weights_file, *FAST, "--codec", codec)
        assert result.exit_code == 2 and message in one_line_error(result)
    assert list(tmp_path.iterdir()) == []


def test_a_disk_check_that_fails_leaves_nothing_and_shows_readable_sizes(cli, tmp_path, weights_file, style_image,
                                                                         clip, monkeypatch):
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 3000, 3000))
    out = tmp_path / "sub" / "out.mp4"
    result = cli(clip, style_image, out, "--weights", weights_file, *FAST)
    message = one_line_error(result)
    assert result.exit_code == 1 and "not enough disk space" in message
    assert "about 1.0 MB, 3.0 KB free" in message and "0.00 GB" not in message
    assert list(tmp_path.iterdir()) == []


def test_too_thin_a_frame_is_refused_naming_the_minimum(cli, tmp_path, weights_file, style_image):
    thin, narrow = tmp_path / "thin.png", tmp_path / "narrow.png"
    media.write_image(thin, np.zeros((2, 4000, 3), np.uint8))
    media.write_image(narrow, np.zeros((10, 300, 3), np.uint8))
    result = cli(thin, style_image, tmp_path / "o.png", "--weights", weights_file, *FAST)
    assert result.exit_code == 2 and "at least 16 px on the shortest side for relu5_1" in one_line_error(result)
    result = cli(narrow, style_image, tmp_path / "o.png", "--weights", weights_file, *FAST)
    assert result.exit_code == 2 and "use --size 480 or more" in one_line_error(result)
    # the advice works: the coarse scales that would be too thin are left out, not crashed on
    result = cli(narrow, style_image, tmp_path / "o.png", "--weights", weights_file, *FAST, "--size", "480",
                 "--iterations", "4")
    assert result.exit_code == 0, result.stderr
    assert media.read_image(tmp_path / "o.png").shape == (16, 480, 3)


def test_weights_files_empty_damaged_or_non_finite(cli, tmp_path, style_image, content_image, weights_file):
    import torch

    empty, pickled, nan = tmp_path / "empty.pth", tmp_path / "pickled.pth", tmp_path / "nan.pth"
    empty.write_bytes(b"")
    torch.save({"evil": print}, pickled)  # a pickled function: refused by the weights-only loader
    state = torch.load(weights_file, weights_only=True)
    state[next(iter(state))][0, 0, 0, 0] = float("nan")
    torch.save(state, nan)
    for path, message in ((empty, "is empty (0 bytes)"), (pickled, "holds objects other than tensors"),
                          (nan, "is damaged: the weights of conv1_1 hold NaN")):
        result = cli(content_image, style_image, tmp_path / "o.png", "--weights", path, *FAST)
        line = one_line_error(result)
        assert result.exit_code == 1 and message in line, line
        assert line.endswith((")", "safety)", "values")), line  # never cut mid-word
        result = cli("weights", "--weights", path)
        assert result.exit_code == 1 and message in one_line_error(result)


def test_folders_where_files_are_expected_say_so(cli, tmp_path, weights_file, content_image):
    folder = tmp_path / "styles"
    folder.mkdir()
    result = cli(content_image, folder, tmp_path / "o.png", "--weights", weights_file, *FAST)
    assert result.exit_code == 2 and "styles is a folder; give an image file" in one_line_error(result)
    config = tmp_path / "c.yaml"
    config.write_text(f"weights: {folder}\n")
    result = cli(content_image, content_image, tmp_path / "o.png", "--config", config, *FAST)
    assert result.exit_code == 1 and "is a folder; give the .pth file" in one_line_error(result)


def test_a_clip_with_no_decodable_frame(cli, tmp_path, weights_file, style_image, clip):
    import struct

    data = bytearray(clip.read_bytes())
    start = data.find(b"mdat")
    size = struct.unpack(">I", data[start - 4:start])[0]
    data[start + 4:start - 4 + size] = bytes(size - 8)  # every frame's data zeroed, the headers kept
    broken = tmp_path / "zeroed.mp4"
    broken.write_bytes(data)
    out = tmp_path / "out" / "o.mp4"
    result = cli(broken, style_image, out, "--weights", weights_file, *FAST)
    assert result.exit_code == 1 and "no frame could be decoded (ffmpeg: " in one_line_error(result)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["zeroed.mp4"]  # no work directory, no output folder


def test_an_input_whose_name_starts_with_a_dash(cli, tmp_path, weights_file, style_image, content_image,
                                                monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "-in.png").write_bytes(content_image.read_bytes())
    result = cli("--weights", weights_file, *FAST, "--", "-in.png", style_image, "-out.png")
    assert result.exit_code == 0, result.stderr
    assert media.read_image(tmp_path / "-out.png").shape == (48, 64, 3)


def test_duplicate_keys_in_a_config_are_an_error(cli, tmp_path, weights_file, style_image, content_image):
    config = tmp_path / "c.yaml"
    config.write_text("size: 64\niterations: 5\nsize: 96\n")
    result = cli(content_image, style_image, tmp_path / "o.png", "--weights", weights_file, "--config", config)
    assert result.exit_code == 2 and "key 'size' given twice (first on line 1)" in one_line_error(result)


def test_keep_size_on_an_odd_sized_input_says_so(cli, tmp_path, weights_file, style_image):
    odd = tmp_path / "odd.png"
    media.write_image(odd, np.random.default_rng(0).integers(0, 255, (45, 67, 3)).astype(np.uint8))
    result = cli(odd, style_image, tmp_path / "o.mp4", "--weights", weights_file, *FAST, "--keep-size")
    assert result.exit_code == 0
    assert "warning: --keep-size: INPUT is 67x45, but a video needs even sides: OUTPUT is 66x44" in result.stderr
    assert probe.probe_video(tmp_path / "o.mp4").size == (66, 44)


def test_alpha_is_kept_where_the_output_can_hold_it_and_warned_about_elsewhere(cli, tmp_path, weights_file,
                                                                               style_image):
    import cv2

    rgba = np.random.default_rng(0).integers(0, 255, (48, 64, 4)).astype(np.uint8)
    rgba[:, :32, 3] = 0
    rgba[:, 32:, 3] = 255
    source = tmp_path / "cut-out.png"
    cv2.imwrite(str(source), rgba)
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(2):
        cv2.imwrite(str(folder / f"f{i}.png"), rgba)
    result = cli(source, style_image, tmp_path / "o.png", "--weights", weights_file, *FAST)
    assert result.exit_code == 0 and "alpha" not in result.stderr
    kept = cv2.imread(str(tmp_path / "o.png"), cv2.IMREAD_UNCHANGED)
    assert kept.shape == (48, 64, 4) and np.array_equal(kept[..., 3], rgba[..., 3])
    assert cli(folder, style_image, tmp_path / "styled", "--weights", weights_file, *FAST).exit_code == 0
    assert np.array_equal(cv2.imread(str(tmp_path / "styled" / "000001.png"), cv2.IMREAD_UNCHANGED)[..., 3],
                          rgba[..., 3])
    result = cli(source, style_image, tmp_path / "o.jpg", "--weights", weights_file, *FAST)
    assert result.exit_code == 0
    assert "warning: INPUT has an alpha channel (transparency), which o.jpg cannot hold: it is dropped" in result.stderr


def test_every_output_file_gets_its_missing_folders_created(cli, tmp_path, weights_file, style_image, clip,
                                                            content_image):
    log, plot = tmp_path / "logs" / "run.jsonl", tmp_path / "plots" / "loss.png"
    result = cli(content_image, style_image, tmp_path / "images" / "o.png", "--weights", weights_file, *FAST,
                 "--log", log, "--loss-plot", plot)
    assert result.exit_code == 0, result.stderr
    assert log.exists() and plot.exists() and (tmp_path / "images" / "o.png").exists()
    result = cli("eval", clip, clip, "--plot", tmp_path / "eval" / "flicker.png", "--json", tmp_path / "j" / "e.json")
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "eval" / "flicker.png").exists() and (tmp_path / "j" / "e.json").exists()
    # and a refused command creates none of them
    result = cli(content_image, style_image, tmp_path / "never" / "o.png", "--weights", weights_file, *FAST,
                 "--log", tmp_path / "never-log" / "run.jsonl", "--lr", "-1")
    assert result.exit_code == 2
    assert not (tmp_path / "never").exists() and not (tmp_path / "never-log").exists()
    result = cli(content_image, style_image, tmp_path / "o2.png", "--weights", weights_file, *FAST, "--log",
                 content_image)
    assert result.exit_code == 2 and "--log" in one_line_error(result) and "is the INPUT" in one_line_error(result)


def test_a_resumed_frame_is_reported_as_resumed(capsys):
    from pipeline.console import Reporter

    reporter = Reporter()
    reporter.tty, reporter.total, reporter.last_line = False, 10, float("-inf")  # a line is due
    reporter(FrameDone(3, 10, 0, {}, 0.0, resumed=True))
    reporter.last_line = float("-inf")
    reporter(FrameDone(4, 10, 7, {"total": 0.5}, 1.5))
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["frame 4/10: resumed (finished by an earlier run)", "frame 5/10: 7 iterations, 1.5 s, loss 0.5"]
