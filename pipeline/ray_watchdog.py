"""Ends a local Ray instance with the nst-video process that started it, however that process ends (SIGKILL
included): run as a script, `python ray_watchdog.py PID...` with a pipe from the driver as its stdin. While the
pipe is open it keeps, once a second, the process trees under the given pids (Ray's gcs_server, raylet,
dashboard, ... and what they start: agents, workers); when the pipe closes (the driver is gone) it kills
every process of those trees still alive, found by pid and start time, so a reused pid is never hit.

Standard library only, and not imported by the package: it runs as a file, so it starts in milliseconds.
Linux (/proc); elsewhere it waits and does nothing.
"""
from __future__ import annotations

import os
import select
import signal
import sys

POLL_SECONDS = 1.0


def _table() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, start time) of every process we can see."""
    out = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            out[int(name)] = (int(fields[1]), fields[19])
    return out


def _gather(roots: set[int], known: dict[int, str]) -> None:
    """Add every live process under `roots` (and under what is already known) to `known`, with its start time."""
    table = _table()
    parents = roots | set(known)
    for pid in roots:
        if pid in table and pid not in known:
            known[pid] = table[pid][1]
    grew = True
    while grew:
        grew = False
        for pid, (parent, start) in table.items():
            if parent in parents and pid not in known:
                known[pid], grew = start, True
                parents.add(pid)


def main(argv: list[str]) -> None:
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)  # a Ctrl-C or a kill of the group: the driver decides, we follow it
    roots = {int(arg) for arg in argv}
    known: dict[int, str] = {}
    watching = os.path.isdir("/proc")
    while True:
        if watching:
            _gather(roots, known)  # first at once: the driver may be killed within the first poll
        readable, _, _ = select.select([sys.stdin], [], [], POLL_SECONDS)
        if readable and not os.read(sys.stdin.fileno(), 4096):
            break  # the driver's end closed: it exited, or was killed
    if watching:
        _gather(roots, known)
    if not watching:
        return
    alive = _table()
    for pid, start in known.items():
        if pid in alive and alive[pid][1] == start:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


if __name__ == "__main__":
    main(sys.argv[1:])
