"""The command line's options, each defined once: the settings are made from Config's fields (typed, documented
and defaulted there), the rest are shared by the commands that take them, and the checks every command makes of
the paths it was given are here, so each runs before any work.
"""
from __future__ import annotations

import os
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any, Callable, Sequence

import click

from .config import CHOICES, Config, KEYS, load_config, preset_names
from .executors import Pool, parse_devices
from .files import (check_file_output, check_folder_writable, check_not_overwriting, check_outside, reads_of, split_paths,
                    write_json)
from .jobfile import job_work_dir
from .media import output_kind
from .ray_executor import RayExecutor
from .report import ReportWriter
from .workdir import default_work_dir


def apply(f: Callable, options: list[Callable]) -> Callable:
    """Options given in the order --help lists them."""
    for option in reversed(options):
        f = option(f)
    return f


def weights_option(default: str = "torchvision's ImageNet weights") -> Callable:
    return click.option("--weights", type=click.Path(exists=True, dir_okay=False), envvar="NST_WEIGHTS", metavar="FILE",
                        help=f"VGG19 state dict file (or NST_WEIGHTS) [{default}].")


def suffix(*allowed: str) -> Callable:
    """A callback: the file an option names must end in one of `allowed` (checked as the command line is read)."""
    def check(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
        if value and Path(value).suffix.lower() not in allowed:
            raise click.BadParameter(f"{value} must end in {' or '.join(allowed)}")
        return value
    return check


def names(known: Sequence[str], what: str) -> Callable:
    """A callback: a comma-separated list of `what`s, each one of `known` (None where the option is not given)."""
    def check(ctx: click.Context, param: click.Parameter, value: str | None) -> list[str] | None:
        if value is None:
            return None
        chosen = [v.strip() for v in value.split(",") if v.strip()]
        for name in chosen:
            if name not in known:
                raise click.BadParameter(f"unknown {what} {name!r} (known: {', '.join(known)})")
        return chosen
    return check


SIZE_NAMES = {"720p": 1280, "1080p": 1920, "4k": 3840}


def frame_sizes(ctx: click.Context, param: click.Parameter, value: str | None) -> list[int] | None:
    """A callback: frame sizes (longest side) in pixels or by name (720p, 1080p, 4k)."""
    if value is None:
        return None
    sizes = []
    for part in value.split(","):
        part = part.strip().lower()
        size = SIZE_NAMES.get(part) or (int(part) if part.isdigit() else None)
        if size is None or size < 32:
            raise click.BadParameter(f"bad size {part!r}: use pixels (e.g. 512) or 720p, 1080p, 4k")
        sizes.append(size)
    return sizes


def numbers(ctx: click.Context, param: click.Parameter, value: str | None) -> list[float] | None:
    """A callback: a comma-separated list of numbers, none negative."""
    return float_list(value, param.opts[0])


def whole_numbers(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, ...]:
    """A callback: a comma-separated list of whole numbers."""
    try:
        return tuple(int(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a list of whole numbers") from None


def json_option(what: str) -> Callable:
    return click.option("--json", "json_file", type=click.Path(dir_okay=False), metavar="FILE.json",
                        callback=suffix(".json"), help=f"Write {what} as JSON.")


def bench_options(what: str) -> Callable:
    """What every benchmark takes: VGG19's weights (seeded random unless given), the device, --json and --debug."""
    return lambda f: apply(f, [weights_option("seeded random"), device_option, json_option(what), debug_option])


pooling_option = click.option("--pooling", type=click.Choice(["max", "avg", "blur"]),
                              help="VGG19's pooling in every variant, the cold frames included [the objective's own].")
device_option = click.option("--device", default="auto", show_default=True, metavar="auto|cpu|cuda|cuda:N",
                             help="The device.")
debug_option = click.option("--debug", is_flag=True, help="Show tracebacks.")
quiet_option = click.option("--quiet", "-q", is_flag=True, help="No progress display.")

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


def config_options(f: Callable) -> Callable:
    """Options that set Config keys (parameter name == key); shared by the main command and `batch`."""
    options = [click.option("--config", "config_name", default="default", show_default=True, metavar="NAME|PATH",
                            help=f"Preset ({', '.join(preset_names())}) or YAML file; flags override it."),
               *config_flags()]
    return apply(f, options)


def job_options(f: Callable) -> Callable:
    options = [
        click.option("--work-dir", type=click.Path(file_okay=False), help="Work directory [hidden, beside OUTPUT]."),
        click.option("--keep-work", is_flag=True, help="Keep the work directory after success."),
        click.option("--restart", is_flag=True, help="Discard earlier work of this job and start over."),
        click.option("--overwrite", is_flag=True,
                     help="Let an OUTPUT folder's numbered frames (000000.png, ..) be replaced though nst-video "
                          "did not write them; other files are never replaced."),
        click.option("--log", "log_file", type=click.Path(dir_okay=False), help="Append JSON-lines events to FILE."),
        click.option("--report", "report_file", type=click.Path(dir_okay=False), metavar="FILE.html",
                     callback=suffix(".html", ".htm"), help="Keep a self-contained HTML page of the run's progress, frames, plots and warnings up to "
                          "date (open it in a browser: it refreshes itself while the run lasts)."),
        quiet_option,
        debug_option,
    ]
    return apply(f, options)


def parallel_options(f: Callable) -> Callable:
    """Where the work runs: the devices of this machine, or a Ray cluster (the same units either way)."""
    options = [
        click.option("--devices", metavar="0,1,..|cpu,cpu",
                     help="One worker process per device (GPU numbers, or cpu once per CPU worker); a video's shots "
                          "(and a batch's jobs) are spread over them."),
        click.option("--ray", "ray_address", is_flag=False, flag_value="local", default=None, metavar="[ADDRESS]",
                     help="Run every shot as a Ray task: ADDRESS or auto connects to a running cluster, nothing starts "
                          "Ray on this machine. Needs the extra: pip install 'nst-video[ray]'."),
    ]
    return apply(f, options)


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


def report_writer(path: str | None, jobs: list[tuple[str, Path, Path, Path]]) -> Any:
    if not path:
        return None

    return ReportWriter(path, jobs)


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


def run_reads(input_path: str, styles: tuple[Path, ...], output: str, work_dir: str | None, cfg: Any,
              files: dict[str, str | None]) -> dict[str, list[Path]]:
    """The main command's files (`files`: option -> path) checked against what the run reads and the folders it
    owns (its work directory, an OUTPUT folder), before any work. Returns what the run reads."""
    reads = reads_of(Path(input_path), styles, cfg)
    owned = {"work directory": Path(work_dir) if work_dir else default_work_dir(output)}
    if output_kind(output) == "folder":
        owned["OUTPUT folder"] = Path(output)
    output_files(files, reads, owned)
    return reads


def batch_files(jobs: list[Any], work_dir: str | None, files: dict[str, str | None]) -> None:
    """`batch`'s files checked against every job's INPUT, work directory and OUTPUT folder, before any job runs."""
    owned = {f"work directory of job {job.number}": job_work_dir(job, work_dir) for job in jobs}
    owned.update({f"OUTPUT folder of job {job.number}": job.output for job in jobs if output_kind(job.output) == "folder"})
    output_files(files, {f"INPUT of job {job.number}": [job.input] for job in jobs}, owned)


def float_list(value: str | None, name: str) -> list[float] | None:
    if value is None:
        return None
    try:
        numbers = [float(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of numbers", param_hint=name) from None
    if not numbers or any(n < 0 for n in numbers):
        raise click.BadParameter("give one or more numbers, none negative", param_hint=name)
    return numbers


def write_json_if(path: str | None, data: Any) -> None:
    if path:
        write_json(path, data)


def figure_options(f: Callable) -> Callable:
    options = [
        click.option("--iterations", type=click.IntRange(1, 100000), default=300, show_default=True,
                     help="Iterations per panel."),
        click.option("--size", type=click.IntRange(32, 4096), default=256, show_default=True,
                     help="Longest side of each panel, px."),
        weights_option(),
        click.option("--seed", type=int, default=0, show_default=True, help="Seed of the white-noise start."),
        device_option,
        click.option("--panels", type=click.Path(file_okay=False), help="Also save each panel as its own PNG here."),
        quiet_option,
        debug_option,
    ]
    return apply(f, options)


def png_output(path: str, panels: str | None = None) -> Path:
    """A figure command's OUT.png (and its --panels folder), checked before any work."""
    if Path(path).suffix.lower() != ".png":
        raise click.BadParameter(f"{path} must end in .png", param_hint="OUT")
    if panels:
        check_folder_writable(panels, "--panels folder")
    output_files({"OUT": path})
    return Path(path)


def progress_options(f: Callable) -> Callable:
    """What the main command can show of an image's (or first frame's) optimisation."""
    return apply(f, [
        click.option("--save-every", type=int, metavar="N", help="Save the image every N iterations (image, or first frame)."),
        click.option("--progress-dir", type=click.Path(file_okay=False), help="Where --save-every images go [OUTPUT.progress/]."),
        click.option("--progress-sheet", type=click.Path(dir_okay=False), help="Contact sheet of the saved images (PNG)."),
        click.option("--progress-anim", type=click.Path(dir_okay=False), help="Animation of the saved images (.gif or .mp4)."),
        click.option("--loss-plot", type=click.Path(dir_okay=False), help="Plot of every loss against iteration (PNG)."),
    ])


def check_progress(save_every: int | None, sheet: str | None, anim: str | None, loss_plot: str | None, *,
                   in_process: bool) -> None:
    """The progress figures' options agree with each other and with where the run goes."""
    if save_every is not None and save_every < 1:
        raise click.BadParameter("must be at least 1", param_hint="--save-every")
    if save_every and not in_process:
        raise click.BadParameter("needs a run in this process (no --ray, at most one --devices entry)",
                                 param_hint="--save-every")
    if (sheet or anim) and not save_every:
        raise click.BadParameter("needs --save-every N", param_hint="--progress-sheet/--progress-anim")
    if anim and Path(anim).suffix.lower() not in (".gif", ".mp4"):
        raise click.BadParameter("must end in .gif or .mp4", param_hint="--progress-anim")
    for figure in (sheet, loss_plot):
        if figure and Path(figure).suffix.lower() != ".png":
            raise click.BadParameter(f"{figure} must end in .png", param_hint="--progress-sheet/--loss-plot")


def snapshot_folder(progress_dir: str | None, output: str, reads: dict[str, list[Path]]) -> Path:
    """Where --save-every's images go: --progress-dir, or OUTPUT.progress beside OUTPUT; writable, and no input."""
    folder = Path(progress_dir) if progress_dir else Path(f"{output.rstrip(os.sep)}.progress")
    check_folder_writable(folder, "--progress-dir")
    check_not_overwriting(folder, reads, folder=True, name="--progress-dir")
    return folder
