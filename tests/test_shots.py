"""A run in shots: the cut pre-pass, shots on worker processes (--devices cpu,cpu) and on Ray (--ray), long shots
in chunks; each gives the sequential run's frames bit for bit (chunks aside), and nothing is lost when a worker,
a node or the driver dies."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from pipeline import media, probe, shots
from pipeline.config import Config
from pipeline.synthetic import moving_clip
from pipeline.workdir import WorkDir

from .conftest import command, ffmpeg, frames_of, run, wait_for_frames

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


@pytest.fixture(scope="module")
def three_shots(tmp_path_factory) -> Path:
    return _three_shot_video(tmp_path_factory.mktemp("three-shots"))


@pytest.fixture(scope="module")
def sequential(three_shots, tmp_path_factory, weights_file, style_image) -> list[np.ndarray]:
    """The reference: one frame loop over the whole video, one thread."""
    out = tmp_path_factory.mktemp("sequential") / "out"
    result = run(command(three_shots, style_image, out, weights_file, *ONE_THREAD))
    assert result.returncode == 0, result.stderr
    return frames_of(out)


def _same(a: list[np.ndarray], b: list[np.ndarray]) -> None:
    assert len(a) == len(b) == 12
    for index, (x, y) in enumerate(zip(a, b)):
        assert np.array_equal(x, y), f"frame {index} differs (max {np.abs(x.astype(int) - y).max()})"


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


# ---- shots on worker processes -------------------------------------------------------------------------

def test_shots_on_two_cpu_workers_equal_the_sequential_run(three_shots, sequential, tmp_path, weights_file,
                                                           style_image):
    """--devices cpu,cpu: the pre-pass finds the sequential run's cuts (kept in the work directory), the three shots
    run on two worker processes, and the frames are bit-identical."""
    out, work = tmp_path / "out", tmp_path / "work"
    result = run(command(three_shots, style_image, out, weights_file, "--devices", "cpu,cpu", "--keep-work",
                         "--work-dir", work, *ONE_THREAD, "--log", tmp_path / "log.jsonl"))
    assert result.returncode == 0, result.stderr
    _same(sequential, frames_of(out))
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
    _same(sequential, [WorkDir(work).load_frame(i) for i in range(12)])
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
    _same(sequential, frames_of(out))


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
    _same(sequential, frames_of(out))


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
    burn_in = [r for r in work.read_log() if r.get("burn_in")]
    assert sorted(r["index"] for r in burn_in) == [3, 4, 8, 9]
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


def test_ray_missing_and_unreachable_clusters_are_one_line_errors(cli, tmp_path, weights_file, style_image,
                                                                 frames_dir, monkeypatch):
    args = [frames_dir, style_image, tmp_path / "out", "--weights", weights_file, "--size", "64", "--device", "cpu"]
    result = cli(*args, "--ray", "127.0.0.1:1")
    assert result.exit_code == 1 and "cannot reach the Ray cluster at 127.0.0.1:1" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    result = cli(*args, "--ray", "--devices", "cpu")
    assert result.exit_code == 2 and "not both" in result.stderr
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    result = cli(*args, "--ray")
    assert result.exit_code == 2 and 'pip install "nst-video[ray]"' in result.stderr
    assert not (tmp_path / "out").exists()


# ---- Ray -------------------------------------------------------------------------------------------------

def _ray():
    try:
        import ray
    except ImportError:
        pytest.skip("Ray is not installed (pip install -e '.[ray]'); .ci/run installs it")
    return ray


def test_shots_on_a_local_ray_instance_equal_the_sequential_run(three_shots, sequential, tmp_path, weights_file,
                                                                style_image):
    """`--ray` with no address starts Ray on this machine; every shot is a task; the frames are bit-identical."""
    _ray()
    result = run(command(three_shots, style_image, tmp_path / "out", weights_file, "--ray", *ONE_THREAD))
    assert result.returncode == 0, result.stderr
    _same(sequential, frames_of(tmp_path / "out"))


@pytest.fixture
def local_ray():
    ray = _ray()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


def _ray_workers_running_units() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if b"ray::_run_unit" in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def _descendants(root: int) -> set[int]:
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError):
                continue
    found, grew = {root}, True
    while grew:
        grew = False
        for pid, parent in parents.items():
            if parent in found and pid not in found:
                found.add(pid)
                grew = True
    return found - {root}


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _ray_run_started(three_shots, style_image, tmp_path, weights_file) -> subprocess.Popen:
    """A --ray run on a local instance, returned once a Ray worker is stylising a unit."""
    process = subprocess.Popen(command(three_shots, style_image, tmp_path / "out.mp4", weights_file, "--ray",
                                       *ONE_THREAD), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (_descendants(process.pid) & set(_ray_workers_running_units())):
        assert time.time() < deadline and process.poll() is None, process.communicate()[1]
        time.sleep(0.2)
    return process


def test_a_local_ray_instance_ends_with_its_driver_even_when_killed(three_shots, tmp_path, weights_file,
                                                                    style_image):
    """SIGKILL leaves Ray no time to shut down: every process of the instance we started still goes (gcs, raylet,
    dashboard, its agents, the workers), within seconds."""
    _ray()
    process = _ray_run_started(three_shots, style_image, tmp_path, weights_file)
    ours = _descendants(process.pid)
    assert len(ours) >= 5
    process.kill()
    process.communicate(timeout=30)
    deadline = time.time() + 20
    while any(_alive(pid) for pid in ours) and time.time() < deadline:
        time.sleep(0.2)
    left = {pid: Path(f"/proc/{pid}/cmdline").read_bytes()[:40] for pid in ours if _alive(pid)}
    assert not left, f"orphaned: {left}"


def test_a_dead_ray_system_actor_is_one_line_of_ours(three_shots, tmp_path, weights_file, style_image):
    _ray()
    process = _ray_run_started(three_shots, style_image, tmp_path, weights_file)
    queue = [pid for pid in _descendants(process.pid) if b"ray::_QueueActor" in Path(f"/proc/{pid}/cmdline").read_bytes()]
    assert queue, "no queue actor"
    os.kill(queue[0], signal.SIGKILL)  # the actor that carries the progress events
    out, err = process.communicate(timeout=300)
    assert process.returncode == 1
    assert "Error: Ray failed: " in err and "run the same command again to resume" in err
    assert "Traceback" not in err and "ActorDiedError" not in err
    assert "\x1b[" not in out + err  # not a terminal: no colour codes from Ray either


def test_a_ray_worker_killed_mid_shot_is_retried_and_resumes(local_ray, three_shots, sequential, tmp_path,
                                                            weights_file, style_image):
    import threading

    from pipeline import video
    from pipeline.config import load_config
    from pipeline.ray_executor import RayExecutor

    import torch

    work = tmp_path / "work"
    cfg = load_config("default", weights=str(weights_file), size=64, iterations=6, frame_iterations=3, device="cpu",
                      seed=5, content_weight=1, style_weight=1e5, tv_weight=1, temporal_weight=4e3, threads=1)
    killed = []

    def killer() -> None:
        deadline = time.time() + 120
        while time.time() < deadline and not killed:
            if len(list((work / "frames").glob("*.png"))) >= 2:
                for pid in _ray_workers_running_units()[:1]:
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
            time.sleep(0.05)

    thread = threading.Thread(target=killer)
    thread.start()
    threads = torch.get_num_threads()
    try:
        summary = video.run(video.Job(three_shots, (style_image,), tmp_path / "out", work, keep_work=True), cfg,
                            executor=RayExecutor(None, threads=1))
    finally:
        thread.join()
        torch.set_num_threads(threads)
    assert killed, "no Ray worker was seen running a unit"
    assert summary.frames == 12
    _same(sequential, frames_of(tmp_path / "out"))


def test_batch_over_ray_three_jobs_one_bad(local_ray, tmp_path, weights_file, style_image, frames_dir, cli):
    bad_weights = tmp_path / "bad.pth"
    bad_weights.write_bytes(b"not a state dict")
    spec = tmp_path / "jobs.yaml"
    spec.write_text(json.dumps({"jobs": [
        {"input": str(frames_dir), "style": str(style_image), "output": str(tmp_path / "a")},
        {"input": str(frames_dir), "style": str(style_image), "output": str(tmp_path / "b"), "weights": str(bad_weights)},
        {"input": str(frames_dir), "style": str(style_image), "output": str(tmp_path / "c.mp4")}]}))
    result = cli("batch", spec, "--weights", weights_file, "--size", "64", "--iterations", "4", "--frame-iterations",
                 "2", "--device", "cpu", "-q", "--ray", "--threads", "1")
    assert result.exit_code == 1, result.stderr
    assert (tmp_path / "a").is_dir() and len(frames_of(tmp_path / "a")) == 14 and (tmp_path / "c.mp4").exists()
    assert not (tmp_path / "b").exists()
    row = [line for line in result.stdout.splitlines() if line.startswith("2 ")][0]
    assert "failed: " in row and "bad.pth" in row


HIDE = '''
import os
_hidden = os.environ["NST_TEST_HIDDEN"]
_stat = os.stat
def _stat_hiding(path, *args, **kwargs):
    if os.fspath(path).startswith(_hidden):
        raise FileNotFoundError(2, "No such file or directory", os.fspath(path))
    return _stat(path, *args, **kwargs)
os.stat = _stat_hiding
'''


def test_a_unit_on_a_node_that_cannot_see_a_path_fails_and_the_others_finish(tmp_path, weights_file, style_image,
                                                                             frames_dir):
    """Two Ray nodes on this machine (Ray's own test cluster); on one, the folder holding the weights is not
    mounted (its processes see no such path, as on a node without the shared filesystem). Units placed there
    fail at once with one line naming the node and the path; the units on the other node finish."""
    ray = _ray()
    from ray.cluster_utils import Cluster

    from pipeline import batch
    from pipeline.config import load_config
    from pipeline.events import JobDone
    from pipeline.jobfile import BatchJob
    from pipeline.ray_executor import RayExecutor
    from pipeline.errors import StopFlag

    hidden = tmp_path / "mount"
    hidden.mkdir()
    weights = hidden / "vgg19.pth"
    weights.write_bytes(Path(weights_file).read_bytes())
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(HIDE)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1, env_vars={"PYTHONPATH": f"{site}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
                                           "NST_TEST_HIDDEN": str(hidden)})
    try:
        ray.init(address=cluster.address, log_to_driver=False, configure_logging=False)
        jobs = [BatchJob(n, frames_dir, (style_image,), tmp_path / f"out{n}") for n in (1, 2, 3, 4)]
        cfg = load_config("default", weights=str(weights), size=64, iterations=4, frame_iterations=2, device="cpu",
                          shots="auto")
        events = []
        outcomes = batch.run_batch(jobs, [], cfg, {}, events.append, StopFlag(), RayExecutor(None, threads=1))
    finally:
        ray.shutdown()
        cluster.shutdown()
    done = [o for o in outcomes if o.status == "done"]
    failed = [o for o in outcomes if o.status == "failed"]
    assert done and failed and len(done) + len(failed) == 4, [(o.status, o.message) for o in outcomes]
    for outcome in done:
        assert len(frames_of(outcome.job.output)) == 14
    for outcome in failed:
        assert f"cannot see the weights {weights}" in outcome.message and "node " in outcome.message
        assert "\n" not in outcome.message and not outcome.job.output.exists()
    assert len([e for e in events if isinstance(e, JobDone)]) == 4
