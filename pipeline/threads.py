"""Bounded background stages, so decoding, optical flow and writing overlap with the optimiser.

A `Stage` runs a generator (or a function over an iterable) in a worker thread and hands its items over
a small queue, in order. An exception in the worker is re-raised in the consumer at the item where it
happened; closing a stage stops its worker without hanging, even when the queue is full.
"""
from __future__ import annotations

import queue
import threading
import time
from typing import Any, Callable, Iterable, Iterator

_END = object()


class _Failure:
    def __init__(self, error: BaseException):
        self.error = error


class Stage:
    def __init__(self, items: Iterable[Any], fn: Callable[[Any], Any] | None = None, *, depth: int = 2,
                 name: str = "stage"):
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self.waited = 0.0  # seconds the consumer spent waiting for this stage
        self._thread = threading.Thread(target=self._run, args=(items, fn), name=name, daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, items: Iterable[Any], fn: Callable[[Any], Any] | None) -> None:
        try:
            for item in items:
                if not self._put(fn(item) if fn else item):
                    return
            self._put(_END)
        except BaseException as error:  # handed to the consumer, never lost in the thread
            self._put(_Failure(error))
        finally:
            close = getattr(items, "close", None)
            if close:
                try:
                    close()
                except Exception:
                    pass

    def __iter__(self) -> Iterator[Any]:
        while True:
            started = time.perf_counter()
            item = self._queue.get()
            self.waited += time.perf_counter() - started
            if item is _END:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item

    def close(self) -> None:
        self._stop.set()
        while True:  # drain so a worker blocked on put() sees the stop flag
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._thread.join(timeout=30)


class Writer:
    """Runs submitted calls in order in one worker thread (PNG saving, feeding the encoder). The first
    error stops it and is re-raised by the next `submit` or by `close`."""

    def __init__(self, depth: int = 4, name: str = "writer"):
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._error: BaseException | None = None
        self.waited = 0.0  # seconds the producer spent blocked on a full queue
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is _END:
                self._queue.task_done()
                return
            if self._error is None:
                try:
                    job[0](*job[1])
                except BaseException as error:
                    self._error = error
            self._queue.task_done()

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        self._raise()
        started = time.perf_counter()
        self._queue.put((fn, args))
        self.waited += time.perf_counter() - started

    def flush(self) -> None:
        """Wait until every call submitted so far has run; re-raise the first error. The thread goes on."""
        self._queue.join()
        self._raise()

    def close(self) -> None:
        """Wait for every submitted call; re-raise the first error."""
        self._queue.put(_END)
        self._thread.join()
        self._raise()

