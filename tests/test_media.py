"""Video, folder and image I/O through the real ffmpeg: exact frame rates, audio, rotation, bad input."""
import os
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from pipeline import media, probe
from pipeline.errors import ConfigError
from tests.conftest import ffmpeg, make_clip


def _copy_frames(source: Path, output: Path, size=(64, 42), **sink_options) -> int:
    info = probe.inspect_input(source)
    reader = media.FrameReader(info, size)
    sink = media.open_sink(output, size, info.fps or probe.DEFAULT_FOLDER_FPS, source=info, **sink_options)
    count = 0
    for frame in reader:
        sink.write(frame)
        count += 1
    sink.close()
    return count


def count_frames(path: Path) -> int:
    return sum(1 for _ in media.FrameReader(probe.inspect_input(path), (32, 22)))


def test_probe_reports_size_exact_rate_frames_and_audio(clip):
    info = probe.inspect_input(clip)
    assert (info.kind, info.width, info.height) == ("video", 96, 64)
    assert info.fps == Fraction(30000, 1001) and info.frames == 8
    assert info.has_audio and info.audio_codec == "aac" and not info.vfr


def test_video_round_trip_keeps_frames_rate_and_audio(clip, tmp_path):
    out = tmp_path / "out.mp4"
    assert _copy_frames(clip, out) == 8
    info = probe.probe_video(out)
    assert info.frames == 8 and info.fps == Fraction(30000, 1001)
    assert info.has_audio and (info.width, info.height) == (64, 42)


@pytest.mark.parametrize("suffix, codec", [(".mkv", "auto"), (".webm", "auto"), (".mov", "prores"), (".mp4", "h265")])
def test_other_containers_and_codecs(clip, tmp_path, suffix, codec):
    out = tmp_path / f"out{suffix}"
    _copy_frames(clip, out, codec=codec)
    info = probe.probe_video(out)
    assert count_frames(out) == 8 and info.fps == Fraction(30000, 1001) and info.has_audio


def test_codec_that_cannot_go_in_the_container_is_refused(clip, tmp_path):
    with pytest.raises(ConfigError, match="cannot go in a .webm"):
        _copy_frames(clip, tmp_path / "out.webm", codec="h264")


def test_keep_size_scales_back_to_the_input(clip, tmp_path):
    out = tmp_path / "big.mp4"
    _copy_frames(clip, out, keep_size=True)
    assert probe.probe_video(out).size == (96, 64)


def test_ffmpeg_only_probe_agrees_with_ffprobe(clip, tmp_path, monkeypatch):
    rotated = tmp_path / "rotated.mp4"
    ffmpeg("-i", str(clip), "-c", "copy", "-metadata:s:v:0", "rotate=90", str(rotated))
    with_ffprobe = [probe.inspect_input(p) for p in (clip, rotated)]
    import imageio_ffmpeg

    monkeypatch.setenv("NST_FFMPEG", imageio_ffmpeg.get_ffmpeg_exe())
    monkeypatch.setenv("NST_FFPROBE", "")
    assert probe.ffprobe_exe() is None
    without = [probe.inspect_input(p) for p in (clip, rotated)]
    for a, b in zip(with_ffprobe, without):
        assert (a.width, a.height, a.fps, a.has_audio, a.rotation) == (b.width, b.height, b.fps, b.has_audio, b.rotation)
        assert abs(a.frames - b.frames) <= 1
    assert _copy_frames(clip, tmp_path / "again.mp4") == 8  # and imageio's ffmpeg encodes too


def test_rotation_metadata_is_honoured(clip, tmp_path):
    rotated = tmp_path / "rotated.mp4"
    ffmpeg("-i", str(clip), "-c", "copy", "-metadata:s:v:0", "rotate=90", str(rotated))
    info = probe.inspect_input(rotated)
    assert abs(info.rotation) == 90 and (info.width, info.height) == (64, 96)
    frames = list(media.FrameReader(info, (42, 64)))
    assert frames[0].shape == (64, 42, 3)


def test_variable_frame_rate_is_resampled_with_a_warning(tmp_path):
    source = make_clip(tmp_path / "cfr.mp4", frames=20, rate="20", audio=False)
    vfr = tmp_path / "vfr.mkv"  # every third frame dropped from the timeline: irregular timestamps
    ffmpeg("-i", str(source), "-vf", "select='not(eq(mod(n,3),1))'", "-fps_mode", "vfr", "-c:v", "libx264", str(vfr))
    info = probe.inspect_input(vfr)
    assert info.vfr and 12 < info.fps < 16  # 14 frames kept of 20 per second
    reader = media.FrameReader(info, (48, 32))
    count = sum(1 for _ in reader)
    assert count > 0 and reader.warnings and "resampled" in reader.warnings[0]
    assert probe.inspect_input(source).vfr is False


def test_frame_folder_natural_order_and_size_check(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for index in (10, 2, 1):
        media.write_image(folder / f"frame{index}.png", np.full((20, 30, 3), index * 20, np.uint8))
    (folder / "notes.txt").write_text("ignored")
    info = probe.inspect_input(folder)
    assert [p.name for p in info.files] == ["frame1.png", "frame2.png", "frame10.png"]
    assert [int(f[0, 0, 0]) for f in media.FrameReader(info, (30, 20))] == [20, 40, 200]
    media.write_image(folder / "frame11.png", np.zeros((21, 30, 3), np.uint8))
    with pytest.raises(media.MediaError, match="frames differ in size"):
        probe.inspect_input(folder)


def test_folder_to_video_and_video_to_folder(clip, tmp_path):
    frames_dir = tmp_path / "frames"
    assert _copy_frames(clip, frames_dir) == 8
    assert sorted(p.name for p in frames_dir.glob("*.png"))[:2] == ["000000.png", "000001.png"]
    out = tmp_path / "from_frames.mp4"
    _copy_frames(frames_dir, out)
    info = probe.probe_video(out)
    assert info.frames == 8 and info.fps == probe.DEFAULT_FOLDER_FPS and not info.has_audio


def test_images_of_every_depth_read_as_rgb8(tmp_path):
    import cv2

    grey16 = (np.arange(20 * 30, dtype=np.uint16).reshape(20, 30) * 100)
    cv2.imwrite(str(tmp_path / "g16.png"), grey16)
    rgba = np.zeros((5, 6, 4), np.uint8)
    rgba[..., 2] = 255  # red in BGRA
    cv2.imwrite(str(tmp_path / "rgba.png"), rgba)
    assert media.read_image(tmp_path / "g16.png").shape == (20, 30, 3)
    assert tuple(media.read_image(tmp_path / "rgba.png")[0, 0]) == (255, 0, 0)


@pytest.mark.parametrize("maker, message", [
    (lambda p: p.write_text("just text, renamed"), "not a video or image ffmpeg can read"),
    (lambda p: ffmpeg("-f", "lavfi", "-i", "sine", "-t", "0.5", str(p)), "has no video stream"),
])
def test_unreadable_videos(tmp_path, maker, message):
    path = tmp_path / "bad.mp4"
    maker(path)
    with pytest.raises(media.MediaError, match=message):
        probe.inspect_input(path)


def test_truncated_video_decodes_what_is_there_or_fails_with_a_message(clip, tmp_path):
    data = clip.read_bytes()
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(media.MediaError):
        info = probe.inspect_input(truncated)
        list(media.FrameReader(info, (48, 32)))


def test_a_clip_that_decodes_only_in_part_is_an_error_naming_the_last_good_frame(tmp_path):
    """The index says 12 frames, the data holds a few: not a shorter output with exit 0, but an error."""
    source = make_clip(tmp_path / "whole.mp4", frames=12, audio=False, extra=("-movflags", "+faststart", "-g", "1"))
    data = source.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) * 2 // 5])
    info = probe.inspect_input(cut)
    assert info.frames == 12 and info.frames_exact
    reader = media.FrameReader(info, (48, 32))
    with pytest.raises(media.MediaError) as caught:
        list(reader)
    message = str(caught.value)
    good = int(message.split("only its first ")[1].split(" of ")[0])
    assert 0 < good < 12 and "of 12 frames could be decoded" in message
    assert f"the last good frame is frame {good} (counting from 1)" in message and "\n" not in message


def test_file_names_that_look_like_ffmpeg_protocols_are_files(clip, tmp_path):
    odd = tmp_path / "pipe:0.mp4"
    odd.write_bytes(clip.read_bytes())
    assert probe.inspect_input(odd).frames == 8
    out = tmp_path / "http:out.mp4"
    assert _copy_frames(odd, out) == 8   # read as the file, audio taken from it, written as a file
    assert probe.probe_video(out).has_audio and count_frames(out) == 8


@pytest.mark.parametrize("where", ["same filesystem", "another filesystem"])
def test_an_output_that_is_a_symbolic_link_is_written_through_it(clip, tmp_path, tmpfs, where):
    target = tmpfs(tmp_path / "share") / "renders" if where == "another filesystem" else tmp_path / "renders"
    target.mkdir()
    folder_link, video_link = tmp_path / "out", tmp_path / "out.mp4"
    os.symlink(target, folder_link)
    os.symlink(target / "shot.mp4", video_link)
    for link in (folder_link, video_link):
        media.check_writable(link)
        assert _copy_frames(clip, link) == 8
        assert link.is_symlink()     # the link stays a link: the frames reached its target
    assert len(list(target.glob("*.png"))) == 8 and count_frames(target / "shot.mp4") == 8
    assert not [p.name for p in list(tmp_path.iterdir()) + list(target.iterdir()) if "partial" in p.name]


def test_dangling_and_looping_output_links_are_refused_up_front(tmp_path):
    os.symlink(tmp_path / "gone" / "x.mp4", tmp_path / "dangling")
    os.symlink(tmp_path / "b", tmp_path / "a")
    os.symlink(tmp_path / "a", tmp_path / "b")
    with pytest.raises(ConfigError, match="symbolic link to .*gone.x.mp4, whose folder does not exist"):
        media.check_writable(tmp_path / "dangling")
    with pytest.raises(ConfigError, match="symbolic link that loops"):
        media.check_writable(tmp_path / "a")


def test_damaged_stream_is_reported_with_the_frame(tmp_path):
    source = make_clip(tmp_path / "long.ts", frames=30, audio=False, extra=("-f", "mpegts"))
    data = bytearray(source.read_bytes())
    rng = np.random.default_rng(0)
    for offset in rng.integers(len(data) // 2, len(data) - 100, 40):
        data[offset: offset + 20] = bytes(20)
    damaged = tmp_path / "damaged.ts"
    damaged.write_bytes(bytes(data))
    info = probe.inspect_input(damaged)
    reader = media.FrameReader(info, (48, 32))
    frames = list(reader)
    assert frames and any("damaged data from about frame" in w for w in reader.warnings)


def test_output_kind_and_unknown_extension(tmp_path):
    assert media.output_kind(tmp_path / "a.mkv") == "video"
    assert media.output_kind(tmp_path / "a.JPG") == "image"
    assert media.output_kind(tmp_path / "frames") == "folder"
    with pytest.raises(ConfigError, match="unknown output extension '.xyz'"):
        media.output_kind(tmp_path / "a.xyz")


def test_failed_encode_leaves_nothing_behind(tmp_path):
    out = tmp_path / "out.mp4"
    writer = media.VideoWriter(out, (64, 48), Fraction(25))
    writer.write(np.zeros((48, 64, 3), np.uint8))
    with pytest.raises(media.MediaError, match="expects 64x48"):
        writer.write(np.zeros((10, 10, 3), np.uint8))
    writer.abort()
    assert not out.exists() and not list(tmp_path.iterdir())


def test_encoder_error_is_one_line_and_cleans_up(tmp_path):
    out = tmp_path / "out.mp4"
    writer = media.VideoWriter(out, (64, 48), Fraction(25), codec="no_such_encoder")
    with pytest.raises(media.MediaError, match="encod"):
        for _ in range(50):
            writer.write(np.zeros((48, 64, 3), np.uint8))
        writer.close()
    assert not list(tmp_path.iterdir())


def test_working_size_is_even_with_the_longest_side_given():
    assert media.working_size(1920, 1080, 512) == (512, 288)
    assert media.working_size(1080, 1920, 512) == (288, 512)
    w, h = media.working_size(641, 359, 100)
    assert w == 100 and h % 2 == 0
