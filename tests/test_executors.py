"""The worker pool (--devices cpu,cpu): shots on worker processes give the sequential run's frames bit for bit,
and nothing is lost when a worker or the driver dies or is stopped."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from pipeline import probe, shots
from pipeline.workdir import WorkDir

from .conftest import CUTS, ONE_THREAD, command, frames_of, run, same_frames, wait_for_frames


def test_shots_on_two_cpu_workers_equal_the_sequential_run(three_shots, sequential, tmp_path, weights_file,
                                                           style_image):
    """--devices cpu,cpu: the pre-pass finds the sequential run's cuts (kept in the work directory), the three shots
    run on two worker processes, and the frames are bit-identical."""
    out, work = tmp_path / "out", tmp_path / "work"
    result = run(command(three_shots, style_image, out, weights_file, "--devices", "cpu,cpu", "--keep-work",
                         "--work-dir", work, *ONE_THREAD, "--log", tmp_path / "log.jsonl"))
    assert result.returncode == 0, result.stderr
    same_frames(sequential, frames_of(out))
    kept = json.loads((work / shots.CUTS_FILE).read_text())
    assert kept["cuts"] == CUTS and kept["frames"] == 12
    logged = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert sorted(r["index"] for r in logged if r["event"] == "frame" and r["cut"]) == CUTS


def test_driver_killed_during_the_parallel_stage_resumes_every_shot(three_shots, sequential, tmp_path,
                                                                  weights_file, style_image):
    """SIGKILL to the driver while its workers stylise: the workers end too, the rerun keeps the saved frames,
    does not redo the pre-pass, resumes every shot and encodes a video with the input's audio and frame rate;
    the frames equal the sequential run's."""
    out, work = tmp_path / "out.mp4", tmp_path / "work"
    args = command(three_shots, style_image, out, weights_file, "--devices", "cpu,cpu", "--work-dir", work,
                   "--keep-work", *ONE_THREAD)
    process = subprocess.Popen(args, stderr=subprocess.PIPE, text=True)
    wait_for_frames(work, 3, process)
    process.kill()
    process.wait()
    time.sleep(1.5)  # the orphaned workers notice within 0.5 s and end
    before = {p.name: p.stat().st_mtime_ns for p in (work / "frames").glob("*.png")}
    assert 3 <= len(before) < 12 and not out.exists()
    result = run([a for a in args if a != "-q"])
    assert result.returncode == 0, result.stderr
    assert "cut list kept" in result.stderr and "3 shots" in result.stderr
    for name, mtime in before.items():  # nothing saved was redone
        assert (work / "frames" / name).stat().st_mtime_ns == mtime
    same_frames(sequential, [WorkDir(work).load_frame(i) for i in range(12)])
    info = probe.inspect_input(out)
    assert info.frames == 12 and info.fps == probe.parse_fraction("24000/1001") and info.has_audio


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
    return out


def test_a_worker_process_killed_mid_shot_is_replaced_and_its_shot_resumes(three_shots, sequential, tmp_path,
                                                                          weights_file, style_image):
    """SIGKILL to one of the two worker processes: the driver starts another, which resumes that shot from its
    saved frames; the run ends well with the sequential run's frames."""
    out, work = tmp_path / "out", tmp_path / "work"
    process = subprocess.Popen(command(three_shots, style_image, out, weights_file, "--devices", "cpu,cpu",
                                       "--work-dir", work, *ONE_THREAD), stderr=subprocess.PIPE, text=True)
    wait_for_frames(work, 2, process)
    workers = [pid for pid in _children(process.pid) if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()]
    assert len(workers) == 2
    os.kill(workers[0], signal.SIGKILL)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr
    same_frames(sequential, frames_of(out))


def test_sigterm_stops_every_worker_and_the_rerun_finishes(three_shots, sequential, tmp_path, weights_file,
                                                          style_image):
    out, work = tmp_path / "out", tmp_path / "work"
    args = command(three_shots, style_image, out, weights_file, "--devices", "cpu,cpu", "--work-dir", work, *ONE_THREAD)
    process = subprocess.Popen(args, stderr=subprocess.PIPE, text=True)
    wait_for_frames(work, 2, process)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert "stopped by SIGTERM" in stderr and "Run the same command again to resume" in stderr
    assert len(stderr.strip().splitlines()) == 1 and not out.exists()
    result = run(args)
    assert result.returncode == 0, result.stderr
    same_frames(sequential, frames_of(out))
