"""A run in shots: the cut pre-pass, the plan of units (shots, chunks of long ones) and their crossfades, what a run
on several devices does with one shot, and a damaged cut list. The workers are test_executors.py's and
test_ray_executor.py's."""
from __future__ import annotations

import json

import numpy as np

from pipeline import media, shots
from pipeline.config import Config
from pipeline.workdir import WorkDir

from .conftest import CUTS, ONE_THREAD, command, frames_of, run


# ---- the plan ------------------------------------------------------------------------------------------

def test_plan_cuts_shots_and_chunks_long_ones_with_burn_in():
    cfg = Config(max_shot_frames=4, chunk_overlap=2)
    spans = shots.plan([3, 13], 16, cfg)
    assert [(s.start, s.keep_from, s.end, s.cut) for s in spans] == [
        (0, 0, 3, True),                                          # a short shot: one unit
        (3, 3, 7, True), (5, 7, 10, False), (8, 10, 13, False),   # 10 frames: three chunks of 4, 3, 3
        (13, 13, 16, True)]
    assert shots.plan([3, 13], 16, Config()) == [shots.Span(0, 0, 3), shots.Span(3, 3, 13), shots.Span(13, 13, 16)]
    assert shots.seam_frames(spans) == [7, 10]


def test_the_pre_pass_hands_out_each_shot_as_soon_as_its_end_is_found(tmp_path, three_shots):
    """Workers start on the first shot while the pre-pass is still reading the rest of the input; the finished
    scan keeps its list, and a second scan takes it from the work directory without decoding anything."""
    from pipeline import probe

    source = probe.inspect_input(three_shots)
    work = WorkDir(tmp_path / "work")
    work.frames.mkdir(parents=True)
    cfg, identity = Config(size=64), {"job": "x"}
    size = media.working_size(source.width, source.height, 64)
    scan = shots.CutScan(work, identity, source, size, source.fps, cfg, print, set())
    shots_found = iter(scan)
    assert next(shots_found) == (0, 4) and scan.frames < 12   # frames 5.. not read yet
    assert list(shots_found) == [(4, 8), (8, 12)] and scan.cuts == CUTS and scan.frames == 12
    again = shots.CutScan(work, identity, source, size, source.fps, cfg, print, set())
    assert again.cached and list(again) == [(0, 4), (4, 8), (8, 12)]


def test_crossfade_blends_the_overlap_once_even_when_repeated(tmp_path):
    work = WorkDir(tmp_path / "work")
    work.frames.mkdir(parents=True)
    span = shots.Span(2, 4, 6, cut=False)
    for index in range(6):
        work.save_frame(index, np.full((8, 8, 3), 0, np.uint8))
    for index in (2, 3):
        work.save_frame(index, np.full((8, 8, 3), 90, np.uint8), folder=work.chunk_folder(4))
    shots.crossfade(work, span, (8, 8))
    shots.crossfade(work, span, (8, 8))  # a rerun after a kill must not blend a second time
    assert work.load_frame(2)[0, 0, 0] == 30 and work.load_frame(3)[0, 0, 0] == 60  # 1/3 and 2/3 of the new chunk
    assert work.load_frame(1)[0, 0, 0] == 0 and work.load_frame(4)[0, 0, 0] == 0


# ---- on several devices -----------------------------------------------------------------------------------


def test_one_shot_on_several_devices_says_what_would_help(tmp_path, weights_file, style_image, frames_dir):
    result = run(command(frames_dir, style_image, tmp_path / "out", weights_file, "--devices", "cpu,cpu",
                         "--iterations", "4", "--frame-iterations", "2"))
    assert result.returncode == 0, result.stderr
    assert "no scene cut" in result.stderr and "--max-shot-frames" in result.stderr


def test_shots_off_keeps_one_frame_loop_on_several_devices(tmp_path, weights_file, style_image, three_shots):
    out, work = tmp_path / "out", tmp_path / "work"
    result = run([a for a in command(three_shots, style_image, out, weights_file, "--devices", "cpu,cpu", "--shots",
                                     "off", "--keep-work", "--work-dir", work, "--iterations", "4",
                                     "--frame-iterations", "2") if a != "-q"])
    assert result.returncode == 0, result.stderr
    assert not (work / shots.CUTS_FILE).exists() and "cut pre-pass" not in result.stderr  # no pre-pass, no units
    assert "scene cuts at 4, 8" in result.stderr and len(frames_of(out)) == 12


def test_long_shots_in_chunks_are_the_same_on_one_device_and_on_two(tmp_path, weights_file, style_image, frames_dir):
    """--max-shot-frames 5 --chunk-overlap 2 on 14 frames: three chunks whose seams are crossfaded; the plan, not
    the executor, decides the frames (one device in this process, or two workers)."""
    chunked = ["--max-shot-frames", "5", "--chunk-overlap", "2", *ONE_THREAD]
    one = run(command(frames_dir, style_image, tmp_path / "one", weights_file, *chunked, "--keep-work",
                      "--work-dir", tmp_path / "work"))
    assert one.returncode == 0, one.stderr
    two = run(command(frames_dir, style_image, tmp_path / "two", weights_file, *chunked, "--devices", "cpu,cpu"))
    assert two.returncode == 0, two.stderr
    a, b = frames_of(tmp_path / "one"), frames_of(tmp_path / "two")
    assert len(a) == len(b) == 14 and all(np.array_equal(x, y) for x, y in zip(a, b))
    work = WorkDir(tmp_path / "work")
    assert sorted(p.name for p in (work.path / "chunks").iterdir()) == ["000005", "000010"]
    burn_in = [r for r in work.read_log() if r.burn_in]
    assert sorted(r.index for r in burn_in) == [3, 4, 8, 9]
    for seam in (5, 10):  # a crossfaded frame lies between the earlier chunk's frame and the burn-in frame
        earlier = work.load_frame(seam - 1, folder=work.chunk_folder(seam))
        assert earlier is not None and not np.array_equal(earlier, a[seam - 1])


# ---- bad input -------------------------------------------------------------------------------------------

def test_a_damaged_cut_list_is_found_again_and_said(tmp_path, weights_file, style_image, cli, three_shots):
    from pipeline import video
    from pipeline.config import load_config

    work = tmp_path / "work"
    cfg = load_config("default", weights=str(weights_file), size=64, iterations=2, frame_iterations=1, device="cpu")
    driver = video.Run(video.Job(three_shots, (style_image,), tmp_path / "out", work), cfg)
    driver.start()
    assert [(s.start, s.end) for s in driver.units()] == [(0, 4), (4, 8), (8, 12)]
    (work / shots.CUTS_FILE).write_text(json.dumps({"job": "x", "frames": 12, "cuts": [5]}))
    notices = []
    driver.emit = notices.append
    assert [(s.start, s.end) for s in driver.units()] == [(0, 4), (4, 8), (8, 12)]
    assert any("does not match the input" in str(n.message) for n in notices)
    driver.ctx.work.close()


