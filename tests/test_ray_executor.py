"""Units on Ray (--ray): a local instance or a cluster of several nodes on this machine gives the sequential
run's frames bit for bit; what Ray does wrong reads as one line; nothing of Ray outlives the run."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import ONE_THREAD, command, frames_of, run, same_frames


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
    same_frames(sequential, frames_of(tmp_path / "out"))


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
    same_frames(sequential, frames_of(tmp_path / "out"))


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
