"""The nst-video command line. The library reports progress through events; this module owns printing."""
from __future__ import annotations

import functools
import json
import os
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import click
from click_default_group import DefaultGroup

from pipeline import __version__, figures, jobs as jobs_file, media, status
from pipeline.config import CHOICES, Config, KEYS, load_config, preset_names
from pipeline.errors import Interrupted, NSTError, StopFlag
from pipeline.events import FrameDone, JobDone, JobProgress, JobStarted, Notice, Reference, Started, Step, UnitsPlanned
from pipeline.executors import Pool, parse_devices
from pipeline.figures import quality_plot
from pipeline.files import (check_file_output, check_folder_writable, check_not_overwriting, check_outside,
                            make_parent, split_paths, write_file, write_json)
from pipeline.media import output_kind
from pipeline.ray_executor import RayExecutor
from pipeline.report import ReportWriter, render
from pipeline.serve import serve
from pipeline.variants import DRIFT_VARIANTS
from pipeline.workdir import default_work_dir

EXAMPLES = """\b
Examples:
  nst-video clip.mp4 scream.jpg out.mp4                 video -> video, audio and frame rate kept
  nst-video frames/ starry.jpg styled/ --size 768       frame folder -> frame folder
  nst-video photo.jpg a.jpg,b.jpg out.png --style-blend 0.7,0.3
  nst-video clip.mp4 scream.jpg out.mp4 --config fast   preview quality
  nst-video batch jobs.yaml --devices 0,1               overnight batch on two GPUs
  nst-video eval out.mp4 clip.mp4 --plot flicker.png    measure flicker
"""

class Aborted(BaseException):
    """A second SIGINT/SIGTERM: abandon the frame in progress (not KeyboardInterrupt, which click eats)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


# ---- shared options ----------------------------------------------------------------------------------

def _default(key: str) -> str:
    """A key's value in the default configuration, as --help shows it."""
    value = getattr(Config(), key)
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple):
        return ",".join(f"{v:g}" for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def config_flags() -> list[Callable]:
    """An option for every Config field marked as a flag, typed, documented and defaulted from the field
    itself (adding a setting means adding one field). None means "not given": the config file decides."""
    from dataclasses import MISSING, fields


    options = []
    for f in fields(Config):
        meta = f.metadata
        if not meta.get("flag"):
            continue
        name = "--" + f.name.replace("_", "-")
        doc = meta["doc"]
        shown = f" [{_default(f.name)}]" if f.default is not MISSING and f.default is not None else ""
        help_text = f"{doc[0].upper()}{doc[1:]}{shown}."
        kind = str(f.type).split(" | ")[0]
        if kind == "bool":
            options.append(click.option(f"{name}/--no-{name[2:]}", f.name, default=None, help=help_text))
        elif f.name == "weights":  # a file, also from NST_WEIGHTS
            options.append(click.option(name, f.name, type=click.Path(exists=True, dir_okay=False),
                                        envvar="NST_WEIGHTS", metavar=meta["metavar"],
                                        help=help_text.replace(";", " (or NST_WEIGHTS);", 1)))
        else:
            kinds = {"int": int, "float": float}
            chosen = click.Choice(CHOICES[f.name]) if f.name in CHOICES else kinds.get(kind, str)
            options.append(click.option(name, f.name, type=chosen, metavar=meta["metavar"], help=help_text))
    return options


def _config_options(f: Callable) -> Callable:
    """Options that set Config keys (parameter name == key); shared by the main command and `batch`."""
    options = [click.option("--config", "config_name", default="default", show_default=True, metavar="NAME|PATH",
                            help=f"Preset ({', '.join(preset_names())}) or YAML file; flags override it."),
               *config_flags()]
    for option in reversed(options):
        f = option(f)
    return f


def _job_options(f: Callable) -> Callable:
    options = [
        click.option("--work-dir", type=click.Path(file_okay=False), help="Work directory [hidden, beside OUTPUT]."),
        click.option("--keep-work", is_flag=True, help="Keep the work directory after success."),
        click.option("--restart", is_flag=True, help="Discard earlier work of this job and start over."),
        click.option("--overwrite", is_flag=True,
                     help="Let an OUTPUT folder's numbered frames (000000.png, ..) be replaced though nst-video "
                          "did not write them; other files are never replaced."),
        click.option("--log", "log_file", type=click.Path(dir_okay=False), help="Append JSON-lines events to FILE."),
        click.option("--report", "report_file", type=click.Path(dir_okay=False), metavar="FILE.html",
                     help="Keep a self-contained HTML page of the run's progress, frames, plots and warnings up to "
                          "date (open it in a browser: it refreshes itself while the run lasts)."),
        click.option("--quiet", "-q", is_flag=True, help="No progress display."),
        click.option("--debug", is_flag=True, help="Show tracebacks."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _parallel_options(f: Callable) -> Callable:
    """Where the work runs: the devices of this machine, or a Ray cluster (the same units either way)."""
    options = [
        click.option("--devices", metavar="0,1,..|cpu,cpu",
                     help="One worker process per device (GPU numbers, or cpu once per CPU worker); a video's shots "
                          "(and a batch's jobs) are spread over them."),
        click.option("--ray", "ray_address", is_flag=False, flag_value="local", default=None, metavar="[ADDRESS]",
                     help="Run every shot as a Ray task: ADDRESS or auto connects to a running cluster, nothing starts "
                          "Ray on this machine. Needs the extra: pip install 'nst-video[ray]'."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def make_executor(devices: str | None, ray_address: str | None, cfg: Any, reporter: Any) -> tuple[Any, Any]:
    """(executor or None, cfg with the device of a single --devices entry): Ray with --ray, our worker pool with
    several --devices, else None (this process)."""
    device_list = parse_devices(devices)
    if ray_address and device_list:
        raise click.BadParameter("give --devices or --ray, not both (Ray places units on the cluster's devices)",
                                 param_hint="--ray")
    if cfg.threads:
        import torch  # the thread count is torch's; set here, before any unit runs

        torch.set_num_threads(cfg.threads)
    if ray_address:
        return RayExecutor(None if ray_address == "local" else ray_address, threads=cfg.threads, emit=reporter), cfg
    if len(device_list) > 1:
        return Pool(device_list, cfg.threads), cfg
    return None, cfg.replace(device=device_list[0]) if device_list else cfg


def _check_report(path: str | None) -> None:
    if path and Path(path).suffix.lower() not in (".html", ".htm"):
        raise click.BadParameter(f"{path} must end in .html", param_hint="--report")


def _report_writer(path: str | None, jobs: list[tuple[str, Path, Path, Path]]) -> Any:
    if not path:
        return None

    return ReportWriter(path, jobs)


def _chain(*sinks: Any) -> Callable[[Any], None]:
    """One event sink feeding several (the progress display, the report page)."""
    live = [sink for sink in sinks if sink is not None]

    def emit(event: Any) -> None:
        for sink in live:
            sink(event)
    return emit


def config_from_params(params: dict[str, Any]) -> Any:
    overrides = {k: v for k, v in params.items() if k in KEYS and v is not None}
    return load_config(params.get("config_name") or "default", **overrides)


def style_paths(value: str) -> tuple[Path, ...]:
    """STYLE: one image, or several separated by commas; a file whose own name holds a comma is taken whole."""

    paths = split_paths(value)
    if not paths:
        raise click.BadParameter("no style image given", param_hint="STYLE")
    for path in paths:
        if path.is_dir():
            raise click.BadParameter(f"{path} is a folder; give an image file (or several, separated by commas)",
                                     param_hint="STYLE")
        if not path.is_file():
            raise click.BadParameter(f"{path} does not exist", param_hint="STYLE")
    return paths


def output_files(options: dict[str, str | None], reads: dict[str, list[Path]] | None = None,
                 owned: dict[str, Path] | None = None) -> None:
    """Files that options name for writing (`--log`, `--loss-plot`, ...): each a file name whose folder exists
    or can be created (missing folders of outputs are created when the work starts, by every command), none of
    them a file the command reads, and none inside a folder the run owns (`owned`: what -> folder, such as the
    work directory or an OUTPUT folder). Checked before any work; creates nothing."""

    for option, path in options.items():
        if path:
            check_file_output(path, option)
            if reads:
                check_not_overwriting(path, reads, folder=False, name=option)
            for what, folder in (owned or {}).items():
                check_outside(path, folder, option, what)


# ---- progress -----------------------------------------------------------------------------------------

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
        from tqdm import tqdm

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
                from tqdm import tqdm

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
                from tqdm import tqdm

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


# ---- error handling -----------------------------------------------------------------------------------

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


class _Signals:
    """First SIGINT/SIGTERM: stop after the current frame. Second: abandon it (raise Aborted)."""

    def __init__(self, stop: Any, reporter: Reporter):
        self.stop, self.reporter = stop, reporter
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> "_Signals":
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


# ---- commands -----------------------------------------------------------------------------------------

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


@click.group(cls=Main, default="run", default_if_no_args=False,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, "--version", prog_name="nst-video")
def cli() -> None:
    """nst-video: neural style transfer for videos, frame folders and images."""

@cli.command("run", epilog=EXAMPLES)
@click.argument("input_path", metavar="INPUT", type=click.Path(exists=True))
@click.argument("style", metavar="STYLE")
@click.argument("output", metavar="OUTPUT", type=click.Path())
@_config_options
@click.option("--save-every", type=int, metavar="N", help="Save the image every N iterations (image, or first frame).")
@click.option("--progress-dir", type=click.Path(file_okay=False), help="Where --save-every images go [OUTPUT.progress/].")
@click.option("--progress-sheet", type=click.Path(dir_okay=False), help="Contact sheet of the saved images (PNG).")
@click.option("--progress-anim", type=click.Path(dir_okay=False), help="Animation of the saved images (.gif or .mp4).")
@click.option("--loss-plot", type=click.Path(dir_okay=False), help="Plot of every loss against iteration (PNG).")
@_parallel_options
@_job_options
@click.version_option(__version__, "--version", prog_name="nst-video")
@handle_errors
def run_command(input_path: str, style: str, output: str, save_every: int | None, progress_dir: str | None,
                progress_sheet: str | None, progress_anim: str | None, loss_plot: str | None, devices: str | None,
                ray_address: str | None, work_dir: str | None, keep_work: bool, restart: bool, overwrite: bool,
                log_file: str | None, report_file: str | None, quiet: bool, debug: bool, **params: Any) -> None:
    """Stylise INPUT (a video, a folder of frames or an image) with STYLE (an image, or several separated
    by commas) into OUTPUT (a video by extension, a folder, or an image).

    Each frame is optimised through VGG19 until its features match INPUT (content) and its Gram matrices
    match STYLE (Gatys et al. 2016). Later video frames start from the previous result warped along the
    optical flow and stay consistent with it (Ruder et al. 2016), so they need far fewer iterations and do
    not flicker. An interrupted run resumes where it stopped when the same command is run again.
    """
    from pipeline import video  # loads torch: only the commands that run the model import it

    styles = style_paths(style)
    cfg = config_from_params(params)
    if save_every is not None and save_every < 1:
        raise click.BadParameter("must be at least 1", param_hint="--save-every")
    if save_every and (ray_address or len((devices or "").split(",")) > 1):
        raise click.BadParameter("needs a run in this process (no --ray, at most one --devices entry)",
                                 param_hint="--save-every")
    if (progress_sheet or progress_anim) and not save_every:
        raise click.BadParameter("needs --save-every N", param_hint="--progress-sheet/--progress-anim")
    if progress_anim and Path(progress_anim).suffix.lower() not in (".gif", ".mp4"):
        raise click.BadParameter("must end in .gif or .mp4", param_hint="--progress-anim")
    for figure in (progress_sheet, loss_plot):
        if figure and Path(figure).suffix.lower() != ".png":
            raise click.BadParameter(f"{figure} must end in .png", param_hint="--progress-sheet/--loss-plot")

    reads = video.reads_of(Path(input_path), styles, cfg)
    owned = {"work directory": Path(work_dir) if work_dir else default_work_dir(output)}
    if output_kind(output) == "folder":
        owned["OUTPUT folder"] = Path(output)
    output_files({"--log": log_file, "--progress-sheet": progress_sheet, "--progress-anim": progress_anim,
                  "--loss-plot": loss_plot, "--report": report_file}, reads, owned)
    _check_report(report_file)
    snapshot_dir = Path(progress_dir) if progress_dir else Path(f"{output.rstrip(os.sep)}.progress")
    if save_every:
        check_folder_writable(snapshot_dir, "--progress-dir")
        check_not_overwriting(snapshot_dir, reads, folder=True, name="--progress-dir")
    snapshots = figures.Snapshots(snapshot_dir) if save_every else None
    job = video.Job(Path(input_path), styles, Path(output), Path(work_dir) if work_dir else None, keep_work, restart,
                    save_every or 0, snapshots, keep_histories=bool(loss_plot), overwrite=overwrite)
    reporter = Reporter(quiet, log_file)
    stop = StopFlag()
    page = _report_writer(report_file, [(Path(input_path).name, Path(input_path), Path(output),
                                         Path(work_dir) if work_dir else default_work_dir(output))])
    try:
        executor, cfg = make_executor(devices, ray_address, cfg, reporter)
        with _Signals(stop, reporter):
            summary = video.run(job, cfg, events=_chain(reporter, page), stop=stop, executor=executor)
        reporter.record("finished", frames=summary.frames, seconds=round(summary.seconds, 2),
                        cuts=summary.cuts, output=str(summary.output))
    except BaseException as error:
        if page is not None:
            state = "stopped" if isinstance(error, (Interrupted, Aborted, KeyboardInterrupt)) else "failed"
            page.close({job_work: (state, str(error)) for job_work in page.jobs})
        raise
    else:
        if page is not None:
            page.close()
    finally:
        reporter.close()
    if snapshots is not None:
        if progress_sheet:
            figures.progress_sheet(snapshots.items, progress_sheet)
        if progress_anim:
            figures.progress_animation(snapshots.items, progress_anim)
    if loss_plot:
        figures.loss_plot(summary.all_histories(), loss_plot)
    if not quiet:
        click.echo(summary_line(summary), err=True)


@cli.command("batch")
@click.argument("jobs_spec", metavar="JOBS.yaml|GLOB")
@_config_options
@click.option("--style", metavar="STYLE", help="Style image(s) for every input of a GLOB.")
@click.option("--out-dir", type=click.Path(file_okay=False), help="Output folder for a GLOB's results.")
@_parallel_options
@_job_options
@handle_errors
def batch_command(jobs_spec: str, style: str | None, out_dir: str | None, devices: str | None, ray_address: str | None,
                  work_dir: str | None, keep_work: bool, restart: bool, overwrite: bool, log_file: str | None,
                  report_file: str | None, quiet: bool, debug: bool, **params: Any) -> None:
    """Run many jobs: a YAML file with a top-level `jobs:` list (each job: input, style, output, and any
    config key as an override), or a GLOB of inputs with --style and --out-dir. Every option of the main
    command applies to all jobs; a job's own keys win. All jobs are checked before any starts. A failed job
    is logged and the batch goes on; the exit code is 1 if any failed. Rerunning skips finished jobs and
    resumes unfinished ones.

    \b
    Examples:
      nst-video batch jobs.yaml --config fast
      nst-video batch 'clips/*.mp4' --style scream.jpg --out-dir styled/ --devices 0,1
    """
    from pipeline import batch  # loads torch: only the commands that run the model import it

    base_config = config_from_params(params)
    jobs = jobs_file.load_jobs(jobs_spec, style=style, out_dir=out_dir, base_config=base_config, work_dir=work_dir)
    device_list = parse_devices(devices)
    owned = {f"work directory of job {job.number}": jobs_file.job_work_dir(job, work_dir) for job in jobs}

    owned.update({f"OUTPUT folder of job {job.number}": job.output for job in jobs if output_kind(job.output) == "folder"})
    output_files({"--log": log_file, "--report": report_file}, {f"INPUT of job {job.number}": [job.input] for job in jobs},
                 owned)
    _check_report(report_file)
    options = {"work_dir": work_dir, "keep_work": keep_work, "restart": restart, "overwrite": overwrite}
    reporter = Reporter(quiet, log_file)
    stop = StopFlag()
    started = time.perf_counter()
    works = {job.number: jobs_file.job_work_dir(job, work_dir) for job in jobs}
    page = _report_writer(report_file, [(job.name, job.input, job.output, works[job.number]) for job in jobs])
    executor, base_config = make_executor(devices, ray_address, base_config, reporter)
    with _Signals(stop, reporter):
        outcomes = batch.run_batch(jobs, device_list, base_config, options,
                                   _chain(BatchReporter(reporter, [job.number for job in jobs],
                                                        executor is not None or len(device_list) > 1), page,
                                          jobs_file.Results(jobs_spec) if jobs_file.is_jobs_file(jobs_spec) else None),
                                   stop, executor)
    if page is not None:
        page.close({works[o.job.number]: (o.status, o.message) for o in outcomes if o.status in ("failed", "stopped")})
    reporter.record("batch_finished", seconds=round(time.perf_counter() - started, 2),
                    failed=sum(o.status == "failed" for o in outcomes))
    reporter.close()
    click.echo(batch.summary_table(outcomes))
    if stop.signum is not None:
        click.echo(f"stopped by {signal.Signals(stop.signum).name}: run the same command again to resume", err=True)
        sys.exit(128 + stop.signum)
    if any(o.status == "failed" for o in outcomes):
        sys.exit(1)


@cli.command("status")
@click.argument("paths", metavar="WORKDIR|OUTPUT|JOBS.yaml...", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Print the same as JSON.")
@click.option("--work-dir", type=click.Path(file_okay=False), help="The --work-dir a batch was run with.")
@click.option("--html", "html_file", type=click.Path(dir_okay=False), metavar="FILE.html",
              help="Also write the report page (self-contained HTML).")
@click.option("--follow", is_flag=True, help="With --html: keep rewriting the page until no job is running.")
@click.option("--serve", "port", type=click.IntRange(0, 65535), is_flag=False, flag_value=8765, default=None,
              metavar="[PORT]", help="Serve the report page over HTTP (read-only) [8765], on 127.0.0.1 unless --host.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address --serve binds to.")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@handle_errors
def status_command(paths: tuple[str, ...], as_json: bool, work_dir: str | None, html_file: str | None, follow: bool,
                   port: int | None, host: str, debug: bool) -> None:
    """Where jobs stand: frames done, recent seconds per frame, ETA, state (running, finished, failed with its
    error, stopped), scene cuts and device, read from their work directories and outputs only (while a run goes
    on, from another shell, or after it ended). A run that was killed shows as stopped at its last frame."""

    if html_file:
        _check_report(html_file)
        output_files({"--html": html_file})
    if follow and not html_file:
        raise click.BadParameter("needs --html FILE", param_hint="--follow")
    jobs = status.statuses(list(paths), work_dir=work_dir)
    click.echo(status.as_json(jobs) if as_json else status.table(jobs))
    for job in jobs:
        for warning in job.warnings:
            if warning.startswith("a log ends in a damaged line"):
                click.echo(f"warning: {job.name}: {warning}", err=True)
    if html_file:
        make_parent(html_file)
        while True:
            running = any(j.state == "running" for j in jobs)
            write_file(html_file, render(jobs, live=follow and running, title="nst-video status").encode())
            if not (follow and running):
                break
            time.sleep(2)
            jobs = status.statuses(list(paths), work_dir=work_dir)
    if port is not None:
        serve(list(paths), work_dir, host, port, echo=lambda m: click.echo(m, err=True))


@cli.command("eval")
@click.argument("stylised", metavar="STYLISED", type=click.Path(exists=True))
@click.argument("original", metavar="ORIGINAL", type=click.Path(exists=True))
@click.option("--size", type=int, help="Evaluate at this longest side [STYLISED's size].")
@click.option("--json", "json_file", type=click.Path(dir_okay=False), help="Write the figures and per-frame values (JSON).")
@click.option("--csv", "csv_file", type=click.Path(dir_okay=False), help="Write per-frame values (CSV).")
@click.option("--plot", type=click.Path(dir_okay=False), help="Plot temporal error per frame (PNG).")
@click.option("--style", type=click.Path(exists=True, dir_okay=False),
              help="Also rate each frame: its content and style terms under the run's objective, against STYLE.")
@click.option("--config", "config_name", default="default", show_default=True, metavar="NAME|PATH",
              help="The settings the clip was made with (objective for --style, schedule for references).")
@click.option("--reference-every", type=click.IntRange(1, 100000), metavar="N",
              help="With --style: optimise every Nth ORIGINAL frame cold, as a run's first frame is, and report "
                   "each later frame against it (drift).")
@click.option("--weights", type=click.Path(exists=True, dir_okay=False), envvar="NST_WEIGHTS", help="VGG19 weights for --style.")
@click.option("--device", help="Device for --style [the config's: auto].")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@handle_errors
def eval_command(stylised: str, original: str, size: int | None, json_file: str | None, csv_file: str | None,
                 plot: str | None, style: str | None, config_name: str, reference_every: int | None,
                 weights: str | None, device: str | None, debug: bool) -> None:
    """Measure flicker and drift: the temporal error of STYLISED against ORIGINAL (videos or frame folders)
    and, with --style, the quality of every frame.

    For each frame: the RMSE (0-255) between the stylised frame and the previous stylised frame warped by
    the optical flow of the ORIGINAL, over the pixels where that flow is reliable. The same figure for the
    ORIGINAL is the floor. Clips must have the same number of frames; if their sizes differ, ORIGINAL is
    resampled to STYLISED's size (with a warning). Scene cuts are reported and left out of the mean.
    With --style and --reference-every N, sampled frames are also optimised cold from the ORIGINAL: a later
    frame's content + style against that level shows drift (1.0: as good as a frame made on its own).
    """
    from pipeline import evaluate  # loads torch: only the commands that run the model import it

    if reference_every and not style:
        raise click.BadParameter("needs --style", param_hint="--reference-every")
    cfg = load_config(config_name, **{k: v for k, v in (("weights", weights), ("device", device)) if v})
    for path, name in ((json_file, "--json"), (csv_file, "--csv"), (plot, "--plot")):
        suffix = {"--json": ".json", "--csv": ".csv", "--plot": ".png"}[name]
        if path and Path(path).suffix.lower() != suffix:
            raise click.BadParameter(f"{path} must end in {suffix}", param_hint=name)
    output_files({"--json": json_file, "--csv": csv_file, "--plot": plot},
                 {"STYLISED": [Path(stylised)], "ORIGINAL": [Path(original)]})
    result = evaluate.evaluate_clips(Path(stylised), Path(original), size=size, style=Path(style) if style else None,
                                     cfg=cfg, reference_every=reference_every or 0)
    for message in result.warnings:
        click.echo(f"warning: {message}", err=True)
    figures_ = result.to_dict()
    cuts = f"; scene cuts at {', '.join(map(str, figures_['cuts']))}" if figures_["cuts"] else ""
    click.echo(f"temporal error (RMSE, 0-255): {figures_['temporal_error']:.3f} stylised, "
               f"{figures_['original_floor']:.3f} original (floor), {len(result.frames)} frame pairs{cuts}")
    if figures_["style_loss"] is not None:
        content = sum(q.content for q in result.quality) / len(result.quality)
        click.echo(f"style term (mean per frame): {figures_['style_loss']:.5g}; content term: {content:.5g}")
    drift = figures_["drift"]
    if drift:
        click.echo(f"content + style against cold optimisation of the same frames: {drift['mean_ratio']:.3f}x mean, "
                   f"worst {drift['worst_ratio']:.3f}x at frame {drift['worst_frame']}; first quarter "
                   f"{drift['first_quarter']:.3f}x, last quarter {drift['last_quarter']:.3f}x")
    evaluate.write_outputs(result, json_file=json_file, csv_file=csv_file, plot=plot)


def _float_list(value: str | None, name: str) -> list[float] | None:
    if value is None:
        return None
    try:
        numbers = [float(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of numbers", param_hint=name) from None
    if not numbers or any(n < 0 for n in numbers):
        raise click.BadParameter("give one or more numbers, none negative", param_hint=name)
    return numbers


def _write_json(path: str | None, data: Any) -> None:
    if path:
        write_json(path, data)


@cli.group("bench", invoke_without_command=True)
@click.option("--sizes", metavar="S1,S2,..", help="Frame sizes (longest side, or 720p/1080p/4k) [CPU: 256; GPU: 512,1080p].")
@click.option("--frames", type=click.IntRange(2, 1000), default=24, show_default=True, help="Frames of the clip.")
@click.option("--clip-size", type=click.IntRange(32, 4096), help="Width of the clip [CPU: 160; GPU: 512].")
@click.option("--precisions", metavar="P1,P2,..", help="Precisions for the image test [CPU: fp32; GPU: fp32,tf32,bf16].")
@click.option("--reference-evaluations", type=click.IntRange(1, 100000), default=300, show_default=True,
              help="L-BFGS evaluations per frame of the plain per-frame loop.")
@click.option("--skip", metavar="PART,..", default="", help="Leave out parts: overhead, image, clip.")
@click.option("--config", "config_name", default="default", show_default=True, metavar="NAME|PATH", help="Settings under test.")
@click.option("--weights", type=click.Path(exists=True, dir_okay=False), envvar="NST_WEIGHTS", help="VGG19 weights [seeded random].")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--json", "json_file", type=click.Path(dir_okay=False), help="Write every figure as JSON.")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.pass_context
@handle_errors
def bench_command(ctx: click.Context, sizes: str | None, frames: int, clip_size: int | None, precisions: str | None,
                  reference_evaluations: int, skip: str, config_name: str, weights: str | None, device: str,
                  json_file: str | None, debug: bool) -> None:
    """Benchmarks on fixed, seeded workloads made in code (random VGG19 weights unless --weights).

    Without a subcommand: speed on this device. Seconds per iteration of the full objective against a bare
    VGG19 forward and backward (ratio); a single image, multi-scale against single-scale L-BFGS, to the same
    loss; and a clip stylised by nst-video against a plain per-frame Gatys loop (300 L-BFGS evaluations per
    frame from the content image, as in the PyTorch tutorial): seconds per frame, speed-up, idle fraction,
    peak memory, final losses and temporal error of both. `bench flicker` compares ways of handling time.
    """
    if ctx.invoked_subcommand is not None:
        return
    from pipeline import bench, runtime  # loads torch: only the commands that run the model import it

    chosen = runtime.select_device(device)
    gpu = chosen.type == "cuda"
    try:
        size_list = bench.parse_sizes(sizes or ("512,1080p" if gpu else "256"))
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--sizes") from None
    precision_list = [p.strip() for p in (precisions or ("fp32,tf32,bf16" if gpu else "fp32")).split(",")]
    for precision in precision_list:
        if precision not in ("fp32", "tf32", "bf16"):
            raise click.BadParameter(f"unknown precision {precision!r}", param_hint="--precisions")
    parts = {p.strip() for p in skip.split(",") if p.strip()}
    if parts - {"overhead", "image", "clip"}:
        raise click.BadParameter(f"unknown part {sorted(parts - {'overhead', 'image', 'clip'})[0]!r}", param_hint="--skip")
    output_files({"--json": json_file})
    report = bench.speed_benchmark(config_name, chosen, size_list, precision_list, parts, frames=frames,
                                   clip_size=clip_size or (512 if gpu else 160), weights=weights,
                                   reference_evaluations=reference_evaluations, say=click.echo,
                                   progress=lambda message: click.echo(message, err=True))
    _write_json(json_file, report)


@bench_command.command("flicker")
@click.option("--frames", type=click.IntRange(3, 200), default=12, show_default=True, help="Frames of the synthetic clip.")
@click.option("--size", type=click.IntRange(32, 1024), default=160, show_default=True, help="Width of the clip, px.")
@click.option("--iterations", type=click.IntRange(3, 10000), default=120, show_default=True, help="First-frame iterations (later frames: a third).")
@click.option("--temporal-weights", metavar="G1,G2,..", help="Also run flow + temporal loss with each of these weights.")
@click.option("--pooling", type=click.Choice(["max", "avg", "blur"]),
              help="VGG19's pooling in every variant, the cold frames included [the objective's own].")
@click.option("--weights", type=click.Path(exists=True, dir_okay=False), envvar="NST_WEIGHTS", help="VGG19 weights [seeded random].")
@click.option("--device", default="cpu", show_default=True, help="Device.")
@click.option("--json", "json_file", type=click.Path(dir_okay=False), help="Write the table as JSON.")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@handle_errors
def bench_flicker(frames: int, size: int, iterations: int, temporal_weights: str | None, pooling: str | None,
                  weights: str | None, device: str, json_file: str | None, debug: bool) -> None:
    """Temporal error, style loss, quality against cold frames and time per frame for each way of handling
    time (cold frames, plain warm start, flow-warped start, Ruder's loss, the temporal loss held at full weight
    and relaxed to the cold level as by default, + long-term, and earlier defaults), on a clip panning across a
    photo with a moving object, whose true flow and disocclusions are known exactly. Temporal error is measured
    with the true flow; the flow-estimated figure (what `eval` reports) is shown beside it."""
    from pipeline.bench import flicker_benchmark, flicker_table  # loads torch: only the commands that run the model import it

    gammas = _float_list(temporal_weights, "--temporal-weights")
    output_files({"--json": json_file})
    rows = flicker_benchmark(frames=frames, size=size, iterations=iterations, weights=weights, device=device,
                             temporal_weights=gammas, overrides={"pooling": pooling} if pooling else None,
                             progress=lambda m: click.echo(f"running {m}", err=True))
    click.echo(flicker_table(rows))
    _write_json(json_file, [r.__dict__ for r in rows])


@bench_command.command("drift")
@click.option("--frames", type=click.IntRange(12, 2000), default=100, show_default=True, help="Frames of the clip.")
@click.option("--size", type=click.IntRange(32, 1024), default=96, show_default=True, help="Width of the clip, px.")
@click.option("--iterations", type=click.IntRange(3, 10000), default=240, show_default=True,
              help="Iterations of a cold frame (the first, and the plain per-frame loop the references stand for).")
@click.option("--frame-iterations", type=click.IntRange(1, 10000), default=60, show_default=True,
              help="Cap of each later frame.")
@click.option("--every", type=click.IntRange(1, 1000), default=10, show_default=True,
              help="Optimise every Nth frame cold as a reference.")
@click.option("--objective", type=click.Choice(["tutorial", "default"]), default="tutorial", show_default=True,
              help="The PyTorch tutorial's objective (keeps content on random weights) or the product's.")
@click.option("--variants", metavar="V1,V2,..", help="Variants to run [all]: " + ", ".join(DRIFT_VARIANTS))
@click.option("--pooling", type=click.Choice(["max", "avg", "blur"]),
              help="VGG19's pooling in every variant, the cold frames included [the objective's own].")
@click.option("--weights", type=click.Path(exists=True, dir_okay=False), envvar="NST_WEIGHTS", help="VGG19 weights [seeded random].")
@click.option("--device", default="cpu", show_default=True, help="Device.")
@click.option("--plot", type=click.Path(dir_okay=False), help="Plot content + style per frame for each variant (PNG).")
@click.option("--json", "json_file", type=click.Path(dir_okay=False), help="Write the table and per-frame values as JSON.")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@handle_errors
def bench_drift(frames: int, size: int, iterations: int, frame_iterations: int, every: int, objective: str,
                variants: str | None, pooling: str | None, weights: str | None, device: str, plot: str | None,
                json_file: str | None, debug: bool) -> None:
    """Quality over time: a long shot made in code (a pan revealing new content, a slow zoom, a disc crossing
    the frame) stylised by each variant, every later frame judged against a cold optimisation of the same
    frame (sampled every --every frames). A drift shows as the last quarter's ratio above the first's."""
    from pipeline.drift import drift_benchmark, drift_table  # loads torch: only the commands that run the model import it

    chosen = [v.strip() for v in variants.split(",")] if variants else None
    for name in chosen or []:
        if name not in DRIFT_VARIANTS:
            raise click.BadParameter(f"unknown variant {name!r} (known: {', '.join(DRIFT_VARIANTS)})",
                                     param_hint="--variants")
    if plot and Path(plot).suffix.lower() != ".png":
        raise click.BadParameter(f"{plot} must end in .png", param_hint="--plot")
    output_files({"--plot": plot, "--json": json_file})
    rows, cold = drift_benchmark(frames=frames, size=size, iterations=iterations, frame_iterations=frame_iterations,
                                 every=every, objective=objective, variants=chosen, weights=weights, device=device,
                                 overrides={"pooling": pooling} if pooling else None,
                                 progress=lambda m: click.echo(f"running {m}", err=True))
    click.echo(drift_table(rows))
    if plot:
        quality_plot({r.name: [c + s for c, s in r.per_frame] for r in rows},
                     {i: c + s for i, (c, s, *_) in cold.items()}, plot,
                     title=f"Quality over time ({frames} frames, {objective} objective)")
    _write_json(json_file, {"rows": [r.__dict__ for r in rows], "cold": cold})


@bench_command.command("chunks")
@click.option("--frames", type=click.IntRange(12, 2000), default=48, show_default=True, help="Frames of the shot.")
@click.option("--size", type=click.IntRange(32, 1024), default=96, show_default=True, help="Width of the clip, px.")
@click.option("--max-shot-frames", "max_frames", type=click.IntRange(2, 2000), default=12, show_default=True,
              help="Chunk length.")
@click.option("--overlaps", default="0,4,8", show_default=True, metavar="K1,K2,..", help="Chunk overlaps to compare.")
@click.option("--iterations", type=click.IntRange(3, 10000), default=240, show_default=True, help="Iterations of a cold frame.")
@click.option("--frame-iterations", type=click.IntRange(1, 10000), default=60, show_default=True,
              help="Cap of each later frame.")
@click.option("--weights", type=click.Path(exists=True, dir_okay=False), envvar="NST_WEIGHTS", help="VGG19 weights [seeded random].")
@click.option("--device", default="cpu", show_default=True, help="Device.")
@click.option("--json", "json_file", type=click.Path(dir_okay=False), help="Write the table as JSON.")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@handle_errors
def bench_chunks(frames: int, size: int, max_frames: int, overlaps: str, iterations: int, frame_iterations: int,
                 weights: str | None, device: str, json_file: str | None, debug: bool) -> None:
    """What --max-shot-frames costs: one long shot made in code, stylised whole and in chunks with each overlap,
    measured by `eval` (temporal error and style term) around the seams and elsewhere."""
    from pipeline.drift import chunks_benchmark, chunks_table  # loads torch: only the commands that run the model import it

    try:
        ks = tuple(int(k) for k in overlaps.split(","))
    except ValueError:
        raise click.BadParameter(f"{overlaps!r} is not a list of whole numbers", param_hint="--overlaps") from None
    if any(k < 0 or k >= max_frames for k in ks):
        raise click.BadParameter(f"each overlap must be from 0 to {max_frames - 1}", param_hint="--overlaps")
    output_files({"--json": json_file})
    rows = chunks_benchmark(frames=frames, size=size, max_frames=max_frames, overlaps=ks, iterations=iterations,
                            frame_iterations=frame_iterations, weights=weights, device=device,
                            progress=lambda m: click.echo(f"running {m}", err=True))
    click.echo(chunks_table(rows))
    _write_json(json_file, [r.__dict__ for r in rows])


def _figure_options(f: Callable) -> Callable:
    options = [
        click.option("--iterations", type=click.IntRange(1, 100000), default=300, show_default=True,
                     help="Iterations per panel."),
        click.option("--size", type=click.IntRange(32, 4096), default=256, show_default=True,
                     help="Longest side of each panel, px."),
        click.option("--weights", type=click.Path(exists=True, dir_okay=False), envvar="NST_WEIGHTS",
                     help="VGG19 weights [torchvision's ImageNet weights]."),
        click.option("--seed", type=int, default=0, show_default=True, help="Seed of the white-noise start."),
        click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N."),
        click.option("--panels", type=click.Path(file_okay=False), help="Also save each panel as its own PNG here."),
        click.option("--quiet", "-q", is_flag=True, help="No progress display."),
        click.option("--debug", is_flag=True, help="Show tracebacks."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _png_output(path: str, panels: str | None = None) -> Path:
    """A figure command's OUT.png (and its --panels folder), checked before any work."""
    if Path(path).suffix.lower() != ".png":
        raise click.BadParameter(f"{path} must end in .png", param_hint="OUT")
    if panels:
        check_folder_writable(panels, "--panels folder")
    output_files({"OUT": path})
    return Path(path)


class _PanelProgress:
    """A bar over panels x iterations for the figure commands."""

    def __init__(self, panels: int, iterations: int, quiet: bool):
        from tqdm import tqdm

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


def _reconstruction_figure(image: str, out: str, subsets: list[list[str]], kind: str, *, iterations: int,
                           size: int, weights: str | None, seed: int, device: str, panels: str | None,
                           quiet: bool) -> None:
    from pipeline import reconstruct  # loads torch: only the commands that run the model import it

    target = _png_output(out, panels)
    progress = _PanelProgress(len(subsets), iterations, quiet)
    try:
        count = reconstruct.reconstruction_figure(media.read_image(image), target, kind, subsets,
                                                  Config(size=size, weights=weights, device=device), iterations,
                                                  seed=seed, progress=progress, panels=panels)
    finally:
        progress.close()
    if not quiet:
        click.echo(f"{count} panels -> {target}", err=True)


@cli.group("reconstruct")
def reconstruct_command() -> None:
    """What VGG19 keeps of an image, layer by layer (Gatys et al. 2016, Fig. 1)."""

@reconstruct_command.command("content")
@click.argument("image", metavar="IMAGE", type=click.Path(exists=True, dir_okay=False))
@click.argument("out", metavar="OUT.png", type=click.Path(dir_okay=False))
@click.option("--layers", metavar="L1,L2,..", help="Layers, one panel each [conv1_1,conv2_1,conv3_1,conv4_1,conv5_1].")
@_figure_options
@handle_errors
def reconstruct_content(image: str, out: str, layers: str | None, iterations: int, size: int, weights: str | None,
                        seed: int, device: str, panels: str | None, quiet: bool, debug: bool) -> None:
    """Content reconstructions: from white noise, an image whose features match IMAGE at one layer only,
    for each layer. Lower layers reproduce the image almost exactly; higher layers keep its arrangement
    and lose the exact pixels. A labelled grid with the original first."""
    from pipeline import reconstruct  # loads torch: only the commands that run the model import it

    chosen = reconstruct.parse_layers(layers, reconstruct.CONTENT_LAYERS)
    _reconstruction_figure(image, out, [[layer] for layer in chosen], "content", iterations=iterations, size=size,
                           weights=weights, seed=seed, device=device, panels=panels, quiet=quiet)


@reconstruct_command.command("style")
@click.argument("image", metavar="IMAGE", type=click.Path(exists=True, dir_okay=False))
@click.argument("out", metavar="OUT.png", type=click.Path(dir_okay=False))
@click.option("--layers", metavar="L1,L2,..|S1;S2;..",
              help="Growing subsets of L1,L2,.. [conv1_1 .. conv5_1], or explicit subsets separated by ';'.")
@_figure_options
@handle_errors
def reconstruct_style(image: str, out: str, layers: str | None, iterations: int, size: int, weights: str | None,
                      seed: int, device: str, panels: str | None, quiet: bool, debug: bool) -> None:
    """Style reconstructions: from white noise, an image whose Gram matrices match IMAGE's on growing subsets
    of layers (conv1_1; conv1_1+conv2_1; ... conv1_1 to conv5_1). The texture grows from fine to large-scale
    structure while the scene's arrangement is discarded. A labelled grid with the original first."""
    from pipeline import reconstruct  # loads torch: only the commands that run the model import it

    _reconstruction_figure(image, out, reconstruct.parse_subsets(layers), "style", iterations=iterations,
                           size=size, weights=weights, seed=seed, device=device, panels=panels, quiet=quiet)


@cli.command("sweep")
@click.argument("content", metavar="CONTENT", type=click.Path(exists=True, dir_okay=False))
@click.argument("style", metavar="STYLE", type=click.Path(exists=True, dir_okay=False))
@click.argument("out", metavar="OUT.png", type=click.Path(dir_okay=False))
@click.option("--ratios", default="1e-2,1e-3,1e-4", show_default=True, metavar="R1,R2,..",
              help="Content/style weight ratios alpha/beta, one column each.")
@click.option("--content-layers", metavar="L1,L2,..", help="One row per content layer [the config's].")
@click.option("--config", "config_name", default="gatys2016", show_default=True, metavar="NAME|PATH",
              help="Settings of each stylisation (the paper's ratios assume loss_scale: paper).")
@_figure_options
@handle_errors
def sweep_command(content: str, style: str, out: str, ratios: str, content_layers: str | None, config_name: str,
                  iterations: int, size: int, weights: str | None, seed: int, device: str, panels: str | None,
                  quiet: bool, debug: bool) -> None:
    """The content/style trade-off (Gatys et al. 2016, Fig. 3): CONTENT stylised with STYLE once per ratio
    alpha/beta (columns) and content layer (rows), in a labelled grid."""
    from pipeline import reconstruct  # loads torch: only the commands that run the model import it

    values = _float_list(ratios, "--ratios")
    if any(v <= 0 for v in values):
        raise click.BadParameter("ratios must be positive numbers", param_hint="--ratios")
    target = _png_output(out, panels)
    cfg = load_config(config_name, size=size, iterations=iterations, seed=seed, device=device,
                      **({"weights": weights} if weights else {}))
    layers = reconstruct.parse_layers(content_layers, list(cfg.content_layers))
    progress = _PanelProgress(len(values) * len(layers), iterations, quiet)
    try:
        def callback(step: Any) -> None:
            progress(step)
            if step.iteration >= step.iterations:
                progress.next_panel(step.iterations)
        rows = reconstruct.sweep(media.read_image(content), media.read_image(style), values, layers, cfg, callback)
    finally:
        progress.close()
    flat = [panel for row in rows for panel in row]
    reconstruct.panel_figure(flat, [p.label for p in flat], target, "Content/style trade-off (\u03b1/\u03b2) per content layer",
                             "sweep", panels, columns=len(values))
    if not quiet:
        click.echo(f"{len(flat)} panels -> {target}", err=True)


@cli.group("weights", invoke_without_command=True)
@click.option("--weights", type=click.Path(), envvar="NST_WEIGHTS", help="A weights file to check.")
@click.pass_context
@handle_errors
def weights_command(ctx: click.Context, weights: str | None) -> None:
    """Show where the VGG19 weights are looked for and whether they are there."""
    if ctx.invoked_subcommand is not None:
        return
    from pipeline.vgg import cached_weights_path, load_weights  # loads torch: only the commands that run the model import it

    if weights:
        load_weights(weights)
        click.echo(f"--weights / NST_WEIGHTS: {weights} (a valid VGG19 state dict)")
    else:
        click.echo("--weights / NST_WEIGHTS: not set")
    cached = cached_weights_path()
    if cached.exists():
        click.echo(f"torchvision cache: {cached} (present, {cached.stat().st_size / 1e6:.0f} MB)")
    else:
        click.echo(f"torchvision cache: {cached} (missing: run `nst-video weights download`, "
                   "or copy the file there from a machine that has it)")
    in_use = weights or (str(cached) if cached.exists() else None)
    click.echo(f"in use: {in_use or 'none: a run would try to download them'}")


@weights_command.command("download")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@handle_errors
def weights_download(quiet: bool) -> None:
    """Download torchvision's ImageNet VGG19 weights into the cache (to copy to an offline machine)."""
    from pipeline.vgg import download_weights  # loads torch: only the commands that run the model import it

    path = download_weights(progress=not quiet)
    click.echo(f"saved {path} ({path.stat().st_size / 1e6:.0f} MB); copy it to the same path "
               "(under TORCH_HOME) on an offline machine, or pass it with --weights")


@cli.command("config")
@_config_options
@handle_errors
def config_command(**params: Any) -> None:
    """Print the configuration a run would use (preset, then flags), as YAML."""
    import yaml

    click.echo(yaml.safe_dump(config_from_params(params).to_dict(), sort_keys=False), nl=False)


def main() -> None:
    cli.main(prog_name="nst-video")


if __name__ == "__main__":
    main()
