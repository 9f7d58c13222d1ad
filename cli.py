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

from pipeline import __version__
from pipeline.config import KEYS, ConfigError, NSTError, load_config, preset_names

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

def _config_options(f: Callable) -> Callable:
    """Options that set Config keys (parameter name == key); shared by the main command and `batch`."""
    options = [
        click.option("--config", "config_name", default="default", show_default=True, metavar="NAME|PATH",
                     help=f"Preset ({', '.join(preset_names())}) or YAML file; flags override it."),
        click.option("--size", type=int, help="Longest side of the stylised frames, px [512]."),
        click.option("--iterations", type=int, help="Iterations for the first frame (and scene cuts) [500]."),
        click.option("--frame-iterations", type=int, help="Iteration cap for each later frame [150]."),
        click.option("--content-weight", type=float, help="alpha, the content weight [5]."),
        click.option("--style-weight", type=float, help="beta, the style weight [3.3e5]."),
        click.option("--tv-weight", type=float, help="Total variation weight [5.1e3]."),
        click.option("--temporal-weight", type=float, help="gamma, the temporal consistency weight [2e4]."),
        click.option("--style-scale", type=float, help="Style image size relative to the frame [1]."),
        click.option("--style-blend", metavar="W1,W2,..", help="Weights of several comma-separated styles."),
        click.option("--optimizer", type=click.Choice(["lbfgs", "adam"]), help="Optimiser [lbfgs]."),
        click.option("--lr", type=float, help="Step size [1 for L-BFGS, 0.02 for Adam]."),
        click.option("--init", metavar="content|noise|IMAGE", help="Start of the first frame [content]."),
        click.option("--pooling", type=click.Choice(["max", "avg"]), help="VGG pooling [max]."),
        click.option("--original-colors/--no-original-colors", default=None,
                     help="Keep the content's colours (luminance-only transfer)."),
        click.option("--device", metavar="auto|cpu|cuda|cuda:N", help="Device [auto]."),
        click.option("--precision", type=click.Choice(["fp32", "tf32", "bf16"]), help="Numeric precision [fp32]."),
        click.option("--weights", type=click.Path(exists=True, dir_okay=False), envvar="NST_WEIGHTS",
                     help="VGG19 state dict file (or NST_WEIGHTS) [torchvision's ImageNet weights]."),
        click.option("--seed", type=int, help="Random seed [0]."),
        click.option("--flow/--no-flow", default=None, help="Warp the previous result along optical flow [on]."),
        click.option("--long-term", type=int, metavar="K", help="Also keep consistent with t-2, t-4, .. t-2^K [0]."),
        click.option("--passes", type=int, help="Multi-pass sweeps, alternating direction [1]."),
        click.option("--scales", metavar="S1,S2,..", help="Coarse sizes before --size (multi-scale)."),
        click.option("--scale-iterations", metavar="N1,N2,..", help="Iterations at each coarse size."),
        click.option("--tolerance", type=float, help="Stop a frame when the loss improves less than this [0: off]."),
        click.option("--fps", metavar="RATE", help="Frame rate for frames in, video out (e.g. 30000/1001) [25]."),
        click.option("--crf", type=int, help="Encoder quality, lower is better [18]."),
        click.option("--codec", metavar="NAME", help="h264, h265, vp9, prores, ffv1 or an ffmpeg encoder [auto]."),
        click.option("--keep-size/--no-keep-size", default=None, help="Scale the result back to the input's size."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _job_options(f: Callable) -> Callable:
    options = [
        click.option("--work-dir", type=click.Path(file_okay=False), help="Work directory [hidden, beside OUTPUT]."),
        click.option("--keep-work", is_flag=True, help="Keep the work directory after success."),
        click.option("--restart", is_flag=True, help="Discard earlier work of this job and start over."),
        click.option("--log", "log_file", type=click.Path(dir_okay=False), help="Append JSON-lines events to FILE."),
        click.option("--quiet", "-q", is_flag=True, help="No progress display."),
        click.option("--debug", is_flag=True, help="Show tracebacks."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def config_from_params(params: dict[str, Any]) -> Any:
    overrides = {k: v for k, v in params.items() if k in KEYS and v is not None}
    return load_config(params.get("config_name") or "default", **overrides)


def style_paths(value: str) -> tuple[Path, ...]:
    paths = tuple(Path(p.strip()) for p in value.split(",") if p.strip())
    if not paths:
        raise click.BadParameter("no style image given", param_hint="STYLE")
    for path in paths:
        if not path.is_file():
            raise click.BadParameter(f"{path} does not exist", param_hint="STYLE")
    return paths


# ---- progress -----------------------------------------------------------------------------------------

class Reporter:
    """Renders library events: tqdm bars on a terminal, periodic plain lines otherwise (cron, nohup), a
    JSON-lines log with --log. `--quiet` keeps only warnings."""

    def __init__(self, quiet: bool = False, log_file: str | None = None, prefix: str = ""):
        self.quiet, self.prefix = quiet, prefix
        self.tty = sys.stderr.isatty()
        self.bar = None
        self.log = open(log_file, "a") if log_file else None
        self.last_line = 0.0
        self.done = 0
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
        if self.log:
            self.log.write(json.dumps({"time": round(time.time(), 3), "event": kind, **data}, default=str) + "\n")
            self.log.flush()

    def __call__(self, event: Any) -> None:
        from pipeline import video
        from pipeline.optimise import Step

        if isinstance(event, video.Started):
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
        elif isinstance(event, video.FrameDone):
            self.done += 1
            self.record("frame", index=event.index, iterations=event.iterations, seconds=round(event.seconds, 3),
                        losses=event.losses, cut=event.cut, resumed=event.resumed, pass_number=event.pass_number)
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
                self.write(f"{self.prefix}frame {event.index + 1}{total}: {event.iterations} iterations, "
                           f"{event.seconds:.1f} s, loss {event.losses.get('total', 0):.4g}")
        elif isinstance(event, video.Notice):
            self.record("warning", message=event.message)
            self.write(f"{self.prefix}warning: {event.message}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.log:
            self.log.close()
            self.log = None


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
    if summary.cuts:
        parts.append(f"scene cuts at {', '.join(map(str, summary.cuts))};")
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
@_job_options
@click.version_option(__version__, "--version", prog_name="nst-video")
@handle_errors
def run_command(input_path: str, style: str, output: str, save_every: int | None, progress_dir: str | None,
                progress_sheet: str | None, progress_anim: str | None, loss_plot: str | None, work_dir: str | None,
                keep_work: bool, restart: bool, log_file: str | None, quiet: bool, debug: bool, **params: Any) -> None:
    """Stylise INPUT (a video, a folder of frames or an image) with STYLE (an image, or several separated
    by commas) into OUTPUT (a video by extension, a folder, or an image).

    Each frame is optimised through VGG19 until its features match INPUT (content) and its Gram matrices
    match STYLE (Gatys et al. 2016). Later video frames start from the previous result warped along the
    optical flow and stay consistent with it (Ruder et al. 2016), so they need far fewer iterations and do
    not flicker. An interrupted run resumes where it stopped when the same command is run again.
    """
    from pipeline import figures, video
    from pipeline.media import MediaError

    styles = style_paths(style)
    cfg = config_from_params(params)
    if save_every is not None and save_every < 1:
        raise click.BadParameter("must be at least 1", param_hint="--save-every")
    if (progress_sheet or progress_anim) and not save_every:
        raise click.BadParameter("needs --save-every N", param_hint="--progress-sheet/--progress-anim")
    if progress_anim and Path(progress_anim).suffix.lower() not in (".gif", ".mp4"):
        raise click.BadParameter("must end in .gif or .mp4", param_hint="--progress-anim")
    for figure in (progress_sheet, loss_plot):
        if figure and Path(figure).suffix.lower() != ".png":
            raise click.BadParameter(f"{figure} must end in .png", param_hint="--progress-sheet/--loss-plot")
    snapshots = figures.Snapshots(Path(progress_dir) if progress_dir else Path(f"{output.rstrip(os.sep)}.progress")) \
        if save_every else None
    job = video.Job(Path(input_path), styles, Path(output), Path(work_dir) if work_dir else None, keep_work, restart,
                    save_every or 0, snapshots)
    reporter = Reporter(quiet, log_file)
    stop = video.StopFlag()
    try:
        with _Signals(stop, reporter):
            summary = video.run(job, cfg, events=reporter, stop=stop)
        reporter.record("finished", frames=summary.frames, seconds=round(summary.seconds, 2),
                        cuts=summary.cuts, output=str(summary.output))
    finally:
        reporter.close()
    if snapshots is not None:
        if progress_sheet:
            figures.progress_sheet(snapshots.items, progress_sheet)
        if progress_anim:
            figures.progress_animation(snapshots.items, progress_anim)
    if loss_plot:
        figures.loss_plot(summary.histories, loss_plot)
    if not quiet:
        click.echo(summary_line(summary), err=True)


@cli.group("weights", invoke_without_command=True)
@click.option("--weights", type=click.Path(), envvar="NST_WEIGHTS", help="A weights file to check.")
@click.pass_context
@handle_errors
def weights_command(ctx: click.Context, weights: str | None) -> None:
    """Show where the VGG19 weights are looked for and whether they are there."""
    if ctx.invoked_subcommand is not None:
        return
    from pipeline.vgg import cached_weights_path, load_weights

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
    from pipeline.vgg import download_weights

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
