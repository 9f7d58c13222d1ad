"""Units on a Ray cluster (`--ray [ADDRESS]`): each unit is one Ray task that asks for one GPU (or, on CPU
clusters, for the cores of one worker), so Ray places it; a task whose worker or node dies is retried by Ray
and resumes from the frames its work directory holds. Progress events come back through a Ray queue.

Ray is an optional extra: pip install -e ".[ray]".
"""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from .errors import ConfigError, NSTError, StopFlag
from .events import Notice
from .executors import Feeder, Unit, UnitEvent, UnitResult, UnitStarted, cpu_threads, execute

TASK_RETRIES = 3          # Ray restarts a task whose worker process or node died this many times
CONNECT_TIMEOUT = 10.0    # s to reach a cluster's address before giving up


def _import_ray() -> Any:
    if not (sys.stdout.isatty() and sys.stderr.isatty()):
        os.environ.setdefault("RAY_COLOR_PREFIX", "0")  # Ray's "(raylet)" lines: no colour codes in a log file
    try:
        import ray
    except ImportError:
        raise ConfigError('--ray needs Ray, an optional extra: pip install "nst-video[ray]" '
                          '(in a checkout: pip install -e ".[ray]")') from None
    return ray


def _reachable(address: str) -> None:
    """A cluster address must answer within CONNECT_TIMEOUT: a clear error, not a hang."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--ray: {address!r} is not a cluster address (HOST:PORT, auto, or nothing for a local one)")
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT).close()
    except OSError as error:
        reason = "timed out" if isinstance(error, socket.timeout) else (error.strerror or str(error))
        raise NSTError(f"cannot reach the Ray cluster at {address} ({reason} after at most "
                       f"{CONNECT_TIMEOUT:.0f} s); is it running, and is the port open?") from None


_ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def one_line(error: BaseException) -> str:
    """A Ray error as one plain line: its first non-empty line, without the colour codes Ray puts in."""
    lines = [line.strip() for line in _ESCAPES.sub("", str(error)).splitlines() if line.strip()]
    return lines[0].rstrip(".") if lines else type(error).__name__


def _watch_local_instance(ray: Any) -> subprocess.Popen | None:
    """A watchdog (ray_watchdog.py) that ends the local instance's processes when this process ends, however."""
    try:
        roots = [str(info.process.pid) for infos in ray._private.worker._global_node.all_processes.values()
                 for info in infos if info.process is not None]
    except AttributeError:  # another Ray layout: its own shutdown is all there is
        return None
    return subprocess.Popen([sys.executable, str(Path(__file__).with_name("ray_watchdog.py")), *roots],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def _run_unit(unit: Unit, threads: int, events: Any) -> UnitResult:
    """The Ray task: one unit on whatever node Ray chose."""
    import ray
    import torch

    context = ray.get_runtime_context()
    node = f"{socket.gethostname()} (Ray node {context.get_node_id()[:12]})"
    device = "cuda" if ray.get_gpu_ids() else "cpu"
    torch.set_num_threads(threads)

    def emit(event: Any) -> None:
        events.put(UnitEvent(unit.key, device, event))

    events.put(UnitStarted(unit.key, device))
    return execute(unit, device, emit, StopFlag(), node)


class RayExecutor:
    """Connects to a cluster (`auto` or an address) or starts a local Ray instance (address None)."""

    def __init__(self, address: str | None, *, threads: int = 0, num_cpus: int | None = None,
                 emit: Callable[[Any], None] = lambda event: None):
        ray = self.ray = _import_ray()
        if address not in (None, "auto"):
            _reachable(address)
        try:
            if not ray.is_initialized():
                # "local": a new instance on this machine, never a cluster a stale file points to
                context = ray.init(address=address or "local", num_cpus=num_cpus, log_to_driver=False,
                                   include_dashboard=None, configure_logging=False)
                self.dashboard = getattr(context, "dashboard_url", None)
                self.watchdog = _watch_local_instance(ray) if address is None else None
            else:
                self.dashboard = self.watchdog = None
            resources = ray.cluster_resources()
        except (ConnectionError, RuntimeError, ValueError, ray.exceptions.RayError) as error:
            where = f"the Ray cluster at {address}" if address else "a local Ray instance"
            raise NSTError(f"cannot connect to {where}: {one_line(error)}") from None
        self.gpus = int(resources.get("GPU", 0))
        cpus = int(resources.get("CPU", 1))
        # GPU units ask for one GPU each; CPU units for --threads cores (default: half this machine's, as for
        # `--devices cpu,cpu`), and Ray runs as many at once as the cluster's cores allow
        self.threads = threads or (1 if self.gpus else cpu_threads(0, ["cpu", "cpu"]))
        self.workers = self.gpus or max(1, cpus // self.threads)
        if self.dashboard:
            emit(Notice(f"Ray dashboard: http://{self.dashboard}"))

    def describe(self) -> str:
        return f"Ray ({self.gpus} GPUs)" if self.gpus else f"Ray ({self.workers} CPU workers of {self.threads} threads)"

    def run(self, units: Iterable[Unit], on_event: Callable[[Any], None], on_done: Callable[[UnitResult], None],
            stop: Any) -> list[UnitResult]:
        try:
            return self._run(units, on_event, on_done, stop)
        except self.ray.exceptions.RayError as error:  # Ray itself failed (a system actor died, the node went)
            raise NSTError(f"Ray failed: {one_line(error)}; run the same command again to resume") from None

    def _run(self, units: Iterable[Unit], on_event: Callable[[Any], None], on_done: Callable[[UnitResult], None],
             stop: Any) -> list[UnitResult]:
        import queue

        ray = self.ray
        from ray.util.queue import Empty, Queue

        events = Queue()
        task = ray.remote(_run_unit).options(
            max_retries=TASK_RETRIES, retry_exceptions=False,
            **({"num_gpus": 1, "num_cpus": 1} if self.gpus else {"num_cpus": self.threads}))
        arrived: queue.Queue = queue.Queue()
        feeder = Feeder(units, arrived.put, stop)   # units come as the pre-pass finds shots
        pending: dict[Any, Unit] = {}
        results: dict[tuple[int, int], UnitResult] = {}
        cancelled = False
        try:
            while pending or not feeder.done.is_set() or not arrived.empty():
                while not arrived.empty():
                    unit = arrived.get()
                    if cancelled:
                        results[unit.key] = UnitResult(unit.key, "stopped", message="not started")
                        on_done(results[unit.key])
                    else:
                        pending[task.remote(unit, self.threads, events)] = unit
                if stop is not None and stop.signum is not None and not cancelled:
                    cancelled = True  # a unit stops where it is; its saved frames are kept for the rerun
                    for ref in pending:
                        ray.cancel(ref)
                if not pending:
                    if cancelled:
                        break  # the pre-pass may still be looking for the next shot: not waited for
                    feeder.done.wait(0.2)
                    continue
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.2)
                self._drain(events, on_event, Empty)
                for ref in ready:
                    unit = pending.pop(ref)
                    result = self._result(ref, unit, cancelled)
                    results[unit.key] = result
                    on_done(result)
            time.sleep(0.05)
            self._drain(events, on_event, Empty)
        finally:
            ray.kill(events.actor)
        feeder.finish(wait=not cancelled)
        return [results[unit.key] for unit in feeder.order if unit.key in results]

    def _result(self, ref: Any, unit: Unit, cancelled: bool) -> UnitResult:
        ray = self.ray
        try:
            return ray.get(ref)
        except ray.exceptions.TaskCancelledError:
            return UnitResult(unit.key, "stopped", message="stopped")
        except ray.exceptions.RayError as error:
            if cancelled:
                return UnitResult(unit.key, "stopped", message="stopped")
            return UnitResult(unit.key, "failed",
                              message=f"Ray gave up on the unit after {TASK_RETRIES} retries: {one_line(error)}")

    @staticmethod
    def _drain(events: Any, on_event: Callable[[Any], None], empty: type) -> None:
        while True:
            try:
                message = events.get_nowait()
            except empty:
                return
            on_event(message)
