"""Where the work runs. There is one notion of a unit of work (Unit: one shot, or chunk of a shot, of a job; or
a whole job, run with its own frame loop and encode) and three executors that take a list of units:

    Inline        in this process, one after another (one device)
    Pool          one worker process per device of this machine (--devices 0,1 or cpu,cpu), our own queue
    RayExecutor   a Ray task per unit on a Ray cluster (ray_executor.py, `--ray`), placed and retried by Ray

Each calls `execute(unit, ...)` wherever the unit lands. Units report their progress events and their result
back to the driver, which alone encodes outputs and holds work directories open.
"""
from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import socket
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from .config import config_from_dict
from .errors import ConfigError, NSTError, StopFlag, failure

RETRIES = 2  # a unit whose worker process died is started again this many times (it resumes from its frames)


@dataclass(frozen=True)
class Unit:
    key: tuple[int, int]        # (job number, first kept frame): unique within a batch
    work: Callable[..., Any]    # work(unit, cfg, emit, stop, node), run wherever the unit lands: its value is the result's
    job: Any                    # what `work` runs: job.Job for a span; jobfile.BatchJob for a whole job
    config: dict                # Config.to_dict() (device aside: the executor chooses it)
    span: Any = None            # shots.Span, or None: the whole job (video.run in the worker)
    frames: int = 0             # output frames it makes (progress)
    options: dict = field(default_factory=dict)   # batch.run_one's options, for a whole job


@dataclass
class UnitResult:
    key: tuple[int, int]
    status: str                 # done, failed, stopped
    value: Any = None           # job.Summary (a span) or jobfile.Outcome (a whole job)
    message: str = ""
    device: str = ""


@dataclass
class UnitEvent:
    key: tuple[int, int]
    device: str
    event: Any


@dataclass
class UnitStarted:
    key: tuple[int, int]
    device: str


@dataclass
class WorkerExit:
    device: str


def node_name() -> str:
    return socket.gethostname()


def execute(unit: Unit, device: str, emit: Callable[[Any], None], stop: Any, node: str) -> UnitResult:
    """Run one unit here, on `device`; every failure becomes a result with a one-line message."""
    cfg = config_from_dict(unit.config).replace(device=device)
    try:
        return UnitResult(unit.key, "done", unit.work(unit, cfg, emit, stop, node), device=device)
    except Exception as error:  # one broken unit must not end the others
        if not isinstance(error, NSTError):
            traceback.print_exc()
        status, message = failure(error)
        return UnitResult(unit.key, status, message=message, device=device)


class Feeder:
    """Takes units from an iterable (a pre-pass still finding shots) in a thread and hands each to `put` as it
    comes, so workers start on the first shots while the rest of the input is analysed. `order`: the units
    in the order they came; an error of the iterable is kept in `error` (raised by the executor once its
    workers have stopped)."""

    def __init__(self, units: Iterable[Unit], put: Callable[[Unit], None], stop: Any):
        self.order: list[Unit] = []
        self.error: BaseException | None = None
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(units, put, stop), name="units", daemon=True)
        self.thread.start()

    def _run(self, units: Iterable[Unit], put: Callable[[Unit], None], stop: Any) -> None:
        try:
            for unit in units:
                self.order.append(unit)
                put(unit)
                if stop is not None and stop.signum is not None:
                    break
        except BaseException as error:  # noqa: BLE001 (handed to the driver)
            self.error = error
        finally:
            self.done.set()

    def finish(self, *, wait: bool = True) -> None:
        """After the workers ended: the iterable's error, if any. A stopped run does not wait for the pre-pass."""
        if wait:
            self.thread.join()
        if self.error is not None:
            raise self.error


def cpu_threads(threads: int, devices: list[str]) -> int:
    """Threads of each worker: as configured, or the cores shared out among the CPU workers."""
    if threads:
        return threads
    cpu_workers = sum(1 for d in devices if d == "cpu") or 1
    return max(1, (os.cpu_count() or 1) // cpu_workers)


class Inline:
    """Units one after another in this process, on the configured device."""

    workers = 1

    def describe(self) -> str | None:
        return None  # the run's own device

    def run(self, units: Iterable[Unit], on_event: Callable[[UnitEvent], None], on_done: Callable[[UnitResult], None],
            stop: Any) -> list[UnitResult]:
        results = []
        for unit in units:
            if stop is not None and stop.signum is not None:
                result = UnitResult(unit.key, "stopped", message="not started")
            else:
                device = unit.config.get("device", "auto")
                on_event(UnitStarted(unit.key, device))
                result = execute(unit, device, lambda e, k=unit.key: on_event(UnitEvent(k, device, e)), stop,
                                 node_name())
            on_done(result)
            results.append(result)
        return results


def _pool_worker(slot: int, device: str, threads: int, units: "multiprocessing.Queue",
                 messages: "multiprocessing.Queue", fed: Any) -> None:
    """One process per device: takes units until every unit was handed out (`fed`) and the queue is empty, or a
    stop is asked for."""
    import torch  # the driver needs no torch to hand out units

    torch.set_num_threads(threads)
    stop = StopFlag()

    def handle(signum: int, frame: Any) -> None:
        if stop.signum is not None:
            raise KeyboardInterrupt
        stop.request(signum)

    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGTERM, handle)
    threading.Thread(target=_orphan_watch, args=(os.getppid(),), daemon=True, name="orphan-watch").start()
    while stop.signum is None:
        try:
            unit = units.get(timeout=0.2)
        except queue.Empty:
            if not fed.is_set():
                continue  # the pre-pass is still finding shots
            try:
                unit = units.get(timeout=1.0)  # a unit put just before `fed` was set
            except queue.Empty:
                break
        messages.put((slot, UnitStarted(unit.key, device)))
        try:
            result = execute(unit, device, lambda e, k=unit.key: messages.put((slot, UnitEvent(k, device, e))), stop,
                             node_name())
        except KeyboardInterrupt:
            result = UnitResult(unit.key, "stopped", message="aborted", device=device)
        messages.put((slot, result))
    messages.put((slot, WorkerExit(device)))


def _orphan_watch(parent: int) -> None:
    """A worker whose driver was killed (SIGKILL, a crash) ends at once: its saved frames are complete files, and a
    rerun's workers must not meet it in the same work directory."""
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


class Pool:
    """One worker process per device of this machine, each taking units from one queue until it is empty. A
    worker that dies (killed, out of memory) is replaced and its unit started again, up to RETRIES times:
    the unit resumes from the frames it saved."""

    def __init__(self, devices: list[str], threads: int = 0):
        self.devices, self.threads = devices, cpu_threads(threads, devices)
        self.workers = len(devices)

    def describe(self) -> str:
        return f"{self.workers} workers: {', '.join(self.devices)}"

    def run(self, units: Iterable[Unit], on_event: Callable[[Any], None], on_done: Callable[[UnitResult], None],
            stop: Any) -> list[UnitResult]:
        context = multiprocessing.get_context("spawn")
        unit_queue, messages, fed = context.Queue(), context.Queue(), context.Event()
        by_key: dict[tuple[int, int], Unit] = {}
        stopping = lambda: stop is not None and stop.signum is not None  # noqa: E731

        def put(unit: Unit) -> None:
            by_key[unit.key] = unit
            unit_queue.put(unit)

        def start(slot: int) -> Any:
            process = context.Process(target=_pool_worker, name=f"nst-video-{self.devices[slot]}",
                                      args=(slot, self.devices[slot], self.threads, unit_queue, messages, fed))
            process.start()
            return process

        feeder = Feeder(units, put, stop)
        threading.Thread(target=lambda: (feeder.done.wait(), fed.set()), daemon=True, name="fed").start()

        workers = {slot: start(slot) for slot in range(len(self.devices))}
        current: dict[int, tuple[int, int] | None] = dict.fromkeys(workers)
        active, retries, results = set(workers), {}, {}

        def done(result: UnitResult) -> None:
            results[result.key] = result
            on_done(result)

        forwarded = False
        while active:
            if stopping() and not forwarded:  # a SIGTERM sent to the parent alone reaches the workers
                forwarded = True
                for slot in active:
                    if workers[slot].is_alive():
                        os.kill(workers[slot].pid, stop.signum)
            try:
                slot, message = messages.get(timeout=0.3)
            except queue.Empty:
                for slot in list(active):
                    process = workers[slot]
                    if process.is_alive() or process.exitcode == 0:  # a clean exit's last message is on its way
                        continue
                    key, current[slot] = current[slot], None
                    if key is not None and retries.get(key, 0) < RETRIES and not stopping():
                        retries[key] = retries.get(key, 0) + 1
                        unit_queue.put(by_key[key])
                    elif key is not None:
                        done(UnitResult(key, "failed", device=self.devices[slot],
                                        message=f"the worker on {self.devices[slot]} died (exit code {process.exitcode})"))
                    if stopping():
                        active.discard(slot)
                    else:
                        workers[slot] = start(slot)
                continue
            if isinstance(message, UnitStarted):
                current[slot] = message.key
                on_event(message)
            elif isinstance(message, UnitEvent):
                on_event(message)
            elif isinstance(message, UnitResult):
                current[slot] = None
                done(message)
            elif isinstance(message, WorkerExit):
                active.discard(slot)
        for process in workers.values():
            process.join()
        feeder.finish(wait=not stopping())
        out = []
        for unit in feeder.order:  # units no worker reached (a stop) are reported as not started
            if unit.key not in results:
                done(UnitResult(unit.key, "stopped", message="not started"))
            out.append(results[unit.key])
        return out


def parse_devices(text: str | None) -> list[str]:
    """`0,1` -> cuda:0, cuda:1; `cpu,cpu` -> two CPU workers; checked against what exists."""
    if not text:
        return []
    devices = []
    for part in text.split(","):
        part = part.strip()
        if part == "cpu":
            devices.append("cpu")
        elif part.removeprefix("cuda:").isdigit():
            import torch  # only to count GPUs: the driver of a CPU run needs no torch

            index = int(part.removeprefix("cuda:"))
            available = torch.cuda.device_count() if torch.cuda.is_available() else 0
            if index >= available:
                raise ConfigError(f"--devices: there is no GPU {index} (this machine has {available})")
            devices.append(f"cuda:{index}")
        else:
            raise ConfigError(f"--devices: {part!r} is neither a GPU number nor cpu")
    return devices
