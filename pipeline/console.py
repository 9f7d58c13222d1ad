"""What a user sees of a command: progress (tqdm bars on a terminal, plain lines otherwise, a JSON-lines log),
the summary line of a run, errors as one line and an exit code (a traceback only behind --debug), and the stop
that SIGINT/SIGTERM ask for. The library reports through events (events.py); this module owns printing.
"""
from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Iterator

import click
from click_default_group import DefaultGroup
from tqdm import tqdm

from .errors import Interrupted, NSTError
from .events import FrameDone, JobDone, JobProgress, JobStarted, Notice, Reference, Started, Step, UnitsPlanned
from .files import make_parent


class Aborted(BaseException):
    """A second SIGINT/SIGTERM: abandon the frame in progress (not KeyboardInterrupt, which click eats)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def chain(*sinks: Any) -> Callable[[Any], None]:
    """One event sink feeding several (the progress display, the report page)."""
    live = [sink for sink in sinks if sink is not None]

    def emit(event: Any) -> None:
        for sink in live:
            sink(event)
    return emit


class Reporter:
    """Renders library events: tqdm bars on a terminal, periodic plain lines otherwise (cron, nohup), a
    JSON-lines log with --log. `--quiet` keeps only warnings."""

    def __init__(self, quiet: bool = False, log_file: str | None = None, prefix: str = ""):
        self.quiet, self.prefix = quiet, prefix
        self.tty = sys.stderr.isatty()
        self.bar = None
        self.log_file = log_file
        self.log = None  # opened at the first record, so a refused command creates no log file
        self.last_line = 0.0
        self.total: int | None = None
        self.started = time.perf_counter()
        self.image = False

    def write(self, message: str) -> None:
        if self.bar is not None:
            tqdm.write(message, file=sys.stderr)
        else:
            click.echo(message, err=True)

    def record(self, kind: str, **data: Any) -> None:
        if self.log is None and self.log_file:
            make_parent(self.log_file)
            self.log = open(self.log_file, "a")
        if self.log:
            self.log.write(json.dumps({"time": round(time.time(), 3), "event": kind, **data}, default=str) + "\n")
            self.log.flush()

    def __call__(self, event: Any) -> None:

        if isinstance(event, Started):
            self.total = event.total
            self.image = event.source.kind == "image"
            self.record("started", input=str(event.source.path), frames=event.total, size=event.size,
                        device=event.device, resumed=event.resumed)
            if event.resumed and not self.quiet:
                self.write(f"{self.prefix}resuming: {event.resumed} frames already finished in {event.work_dir}")
            if not self.quiet and self.tty:
                self.bar = (tqdm(total=None, unit="it", desc=f"{self.prefix}stylising", leave=False, file=sys.stderr)
                            if self.image else
                            tqdm(total=event.total, unit="frame", desc=f"{self.prefix}stylising", file=sys.stderr))
        elif isinstance(event, Step):
            if self.bar is not None and self.image:
                self.bar.total = event.iterations
                self.bar.n = event.iteration
                self.bar.set_postfix(loss=f"{event.losses['total']:.4g}", refresh=False)
                self.bar.refresh()
        elif isinstance(event, FrameDone):
            self.record("frame", index=event.index, iterations=event.iterations, seconds=round(event.seconds, 3),
                        losses=event.losses, cut=event.cut, resumed=event.resumed, pass_number=event.pass_number,
                        reliable=event.reliable, temporal_scale=event.temporal_scale)
            if event.cut and not self.quiet:
                self.write(f"{self.prefix}scene cut at frame {event.index}: started cold")
            if self.bar is not None and not self.image:
                self.bar.update(1)
                if not event.resumed:
                    self.bar.set_postfix(loss=f"{event.losses.get('total', 0):.4g}", s=f"{event.seconds:.1f}",
                                         it=event.iterations)
            elif not self.quiet and not self.tty and time.perf_counter() - self.last_line > 30:
                self.last_line = time.perf_counter()
                total = f"/{self.total}" if self.total else ""
                if event.resumed:
                    self.write(f"{self.prefix}frame {event.index + 1}{total}: resumed (finished by an earlier run)")
                else:
                    self.write(f"{self.prefix}frame {event.index + 1}{total}: {event.iterations} iterations, "
                               f"{event.seconds:.1f} s, loss {event.losses.get('total', 0):.4g}")
        elif isinstance(event, Reference):
            self.record("reference", index=event.index, iterations=event.iterations, seconds=round(event.seconds, 3),
                        losses=event.losses)
        elif isinstance(event, Notice):
            self.record("warning", message=event.message)
            self.write(f"{self.prefix}warning: {event.message}")

    def close_bar(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def close(self) -> None:
        self.close_bar()
        if self.log:
            self.log.close()
            self.log = None


class BatchReporter:
    """Renders a batch's events. One device: each job's own progress through `reporter`, prefixed with its
    place in the batch. Several: a line per job started and finished and every 25th frame, per device."""

    def __init__(self, reporter: Reporter, numbers: list[int], parallel: bool):
        self.reporter, self.numbers, self.parallel = reporter, numbers, parallel
        self.counts: dict[str, int] = {}

    def __call__(self, event: Any) -> None:

        reporter, quiet = self.reporter, self.reporter.quiet
        if isinstance(event, UnitsPlanned):  # a batch in units: one bar over every frame of every job
            if not quiet and reporter.tty:
                reporter.bar = tqdm(total=event.frames, unit="frame", desc="batch", file=sys.stderr)
            return
        if isinstance(event, JobProgress) and reporter.bar is not None and self.parallel:
            reporter.bar.update(1)
            return
        if isinstance(event, JobStarted) and self.parallel:
            self.counts[event.device] = 0
            reporter.record("job_started", device=event.device, job=event.job, input=event.name)
            if not quiet:
                reporter.write(f"[{event.device}] job {event.job}: {event.name}")
        elif isinstance(event, JobStarted):
            reporter.prefix = f"[job {self.numbers.index(event.job) + 1}/{len(self.numbers)}] "
            reporter.bar = None
        elif isinstance(event, JobProgress):
            count = self.counts[event.device] = self.counts.get(event.device, 0) + 1
            total = event.frame.total
            if not quiet and (count % 25 == 0 or (total and count == total)):
                reporter.write(f"[{event.device}] frame {count}{f'/{total}' if total else ''}")
        elif isinstance(event, JobDone):
            outcome = event.outcome
            if not self.parallel:
                reporter.close_bar()
            reporter.record("job", job=outcome.job.number, status=outcome.status, frames=outcome.frames,
                            seconds=round(outcome.seconds, 2), message=outcome.message,
                            **({"device": event.device} if self.parallel else {}))
            if not quiet and self.parallel:
                reporter.write(f"[{event.device}] job {outcome.job.number}: {outcome.status}"
                               + (f" ({outcome.message})" if outcome.message else ""))
            elif not quiet:
                reporter.write(f"job {outcome.job.number} ({outcome.job.name}): {outcome.status}"
                               + (f": {outcome.message}" if outcome.message else ""))
        else:
            reporter(event)


def summary_line(summary: Any) -> str:
    later = summary.later_frame_seconds
    parts = [f"{summary.frames} frame{'s' if summary.frames != 1 else ''}"]
    if summary.resumed:
        parts.append(f"({summary.stylised} stylised, {summary.resumed} resumed)")
    per = summary.seconds / max(1, summary.stylised)
    parts.append(f"in {summary.seconds:.1f} s ({per:.2f} s/frame")
    if summary.first_frame_seconds is not None and later:
        parts[-1] += f"; first {summary.first_frame_seconds:.1f} s, later {sum(later) / len(later):.2f} s"
    parts[-1] += ")"
    later_iterations = summary.iterations[1:]
    if later_iterations and later:
        parts.append(f"later frames {sum(later_iterations) / len(later_iterations):.0f} iterations on average, "
                     f"{summary.early_stops} of {len(later)} stopped early at the cold level"
                     + (f", {summary.relaxed} with the temporal weight relaxed (to {min(summary.temporal_scales):.2g}x "
                        "at the least)" if summary.relaxed else "")
                     + (f", plus {summary.level_iterations / len(later):.0f} per later frame measuring the cold level"
                        if summary.level_iterations else "") + ";")
    drift = summary.drift()
    if drift:
        worst = max(drift, key=lambda d: d[1])
        parts.append(f"content + style against cold references: {sum(d for _, d in drift) / len(drift):.2f}x "
                     f"(worst {worst[1]:.2f}x at frame {worst[0]});")
    if summary.cuts:
        parts.append(f"scene cuts at {', '.join(map(str, summary.cuts))};")
    if summary.units:
        prepass = f"cut pre-pass {summary.prepass_seconds:.1f} s" if summary.prepass_seconds else "cut list kept"
        chunks = f" in {summary.units} units" if summary.units != summary.shots else ""
        parts.append(f"{summary.shots} shot{'s' if summary.shots != 1 else ''}{chunks} ({prepass});")
    parts.append(f"-> {summary.output}")
    return " ".join(parts)


def handle_errors(f: Callable) -> Callable:
    """NSTError -> its one-line message and exit code; anything else -> one line too, with the traceback
    only under --debug."""
    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        debug = kwargs.get("debug", False) or os.environ.get("NST_DEBUG") == "1"
        try:
            return f(*args, **kwargs)
        except (click.ClickException, click.exceptions.Exit):
            raise
        except NSTError as error:
            if debug:
                traceback.print_exc()
            click.echo(f"Error: {error}", err=True)
            sys.exit(error.exit_code)
        except Aborted as error:
            name = signal.Signals(error.signum).name
            click.echo(f"Aborted by a second {name}: the frame in progress is lost, finished frames are kept; "
                       "run the same command again to resume", err=True)
            sys.exit(128 + error.signum)
        except Exception as error:
            if debug:
                traceback.print_exc()
            detail = str(error).strip().splitlines()[0] if str(error).strip() else ""
            click.echo(f"Error: {type(error).__name__}: {detail} (rerun with --debug for the traceback)", err=True)
            sys.exit(1)
    return wrapper


class Signals:
    """First SIGINT/SIGTERM: stop after the current frame. Second: abandon it (raise Aborted)."""

    def __init__(self, stop: Any, reporter: Reporter):
        self.stop, self.reporter = stop, reporter
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> "Signals":
        for signum in (signal.SIGINT, signal.SIGTERM):
            self.previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.stop.signum is not None:
            raise Aborted(signum)
        self.stop.request(signum)
        if not self.reporter.quiet:
            self.reporter.write(f"{signal.Signals(signum).name}: stopping after the current frame "
                                "(send it again to stop at once)")

    def __exit__(self, *exc: Any) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)


class PanelProgress:
    """A bar over panels x iterations for the figure commands."""

    def __init__(self, panels: int, iterations: int, quiet: bool):
        self.bar = tqdm(total=panels * iterations, unit="it", disable=quiet or not sys.stderr.isatty(),
                        file=sys.stderr)
        self.base = 0

    def __call__(self, step: Any) -> None:
        self.bar.n = self.base + step.iteration
        self.bar.refresh()

    def next_panel(self, iterations: int) -> None:
        self.base += iterations

    def close(self) -> None:
        self.bar.close()


def panel_figure(total: int, iterations: int, quiet: bool, target: Path, make: Callable[[PanelProgress], int]) -> None:
    """A figure of `total` panels made by `make(progress)`, its progress shown (unless `quiet`), then where it went."""
    progress = PanelProgress(total, iterations, quiet)
    try:
        count = make(progress)
    finally:
        progress.close()
    if not quiet:
        click.echo(f"{count} panels -> {target}", err=True)


@contextlib.contextmanager
def closing(reporter: Reporter, page: Any) -> Iterator[None]:
    """A run's progress display and log closed however it ends, and its report page (if any) closed saying how:
    finished, stopped (a signal) or failed with its one line."""
    try:
        yield
    except BaseException as error:
        if page is not None:
            state = "stopped" if isinstance(error, (Interrupted, Aborted, KeyboardInterrupt)) else "failed"
            page.close({work: (state, str(error)) for work in page.jobs})
        raise
    else:
        if page is not None:
            page.close()
    finally:
        reporter.close()


class Main(DefaultGroup):
    """`nst-video --help` shows the main command's usage and options, then the other commands. Usage
    errors print one line (no usage dump) and exit with 2."""

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        try:
            result = super().main(args, prog_name or "nst-video", complete_var, standalone_mode=False, **extra)
        except click.exceptions.Abort:
            click.echo("Aborted", err=True)
            sys.exit(130)
        except click.ClickException as error:
            click.echo(f"Error: {error.format_message()}", err=True)
            sys.exit(error.exit_code)
        if standalone_mode:
            sys.exit(result if isinstance(result, int) else 0)
        return result

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """The main command needs no name, also where its arguments start with `--` (an INPUT whose name
        begins with a dash: `nst-video -- -in.png s.png -out.png`) or with one of its options."""
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help", "--version"):
            args = [self.default_cmd_name, *args]
        return super().parse_args(ctx, args)

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        command = self.commands[self.default_cmd_name]
        sub = click.Context(command, info_name=ctx.info_name, parent=None, max_content_width=110)
        command.format_help(sub, formatter)
        self.format_commands(ctx, formatter)
