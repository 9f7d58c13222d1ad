"""The nst-video command line. The library reports progress through events; this module owns printing."""
from __future__ import annotations

import dataclasses
import signal
import sys
import time
from pathlib import Path
from typing import Any

import click
import yaml

import pipeline  # the modules that load torch are its attributes, imported on first use (pipeline.HEAVY)
from pipeline import __version__, figures, jobfile, media, report, status
from pipeline.config import Config, load_config
from pipeline.console import (BatchReporter, Main, Reporter, Signals, chain, closing, handle_errors,
                              panel_figure, summary_line)
from pipeline.errors import StopFlag
from pipeline.executors import parse_devices
from pipeline.options import (batch_files, bench_options, check_progress, config_from_params, config_options,
                              debug_option, device_option, figure_options, frame_sizes, job_options, json_option,
                              make_executor, names, numbers, output_files, parallel_options, png_output,
                              pooling_option, progress_options, quiet_option, report_writer, run_reads,
                              snapshot_folder, style_paths, suffix, weights_option, whole_numbers, write_json_if)
from pipeline.serve import serve
from pipeline.variants import CLIP_NAMES, TUNED, VARIANTS
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


@click.group(cls=Main, default="run", default_if_no_args=False,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, "--version", prog_name="nst-video")
def cli() -> None:
    """nst-video: neural style transfer for videos, frame folders and images."""

@cli.command("run", epilog=EXAMPLES)
@click.argument("input_path", metavar="INPUT", type=click.Path(exists=True))
@click.argument("style", metavar="STYLE")
@click.argument("output", metavar="OUTPUT", type=click.Path())
@config_options
@progress_options
@parallel_options
@job_options
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
    styles = style_paths(style)
    cfg = config_from_params(params)
    check_progress(save_every, progress_sheet, progress_anim, loss_plot,
                   in_process=not ray_address and len((devices or "").split(",")) <= 1)
    reads = run_reads(input_path, styles, output, work_dir, cfg,
                      {"--log": log_file, "--progress-sheet": progress_sheet, "--progress-anim": progress_anim,
                       "--loss-plot": loss_plot, "--report": report_file})
    snapshots = figures.Snapshots(snapshot_folder(progress_dir, output, reads)) if save_every else None
    work = Path(work_dir) if work_dir else None
    job = pipeline.video.Job(Path(input_path), styles, Path(output), work, keep_work, restart, save_every or 0,
                             snapshots, keep_histories=bool(loss_plot), overwrite=overwrite)
    reporter = Reporter(quiet, log_file)
    stop = StopFlag()
    page = report_writer(report_file, [(Path(input_path).name, Path(input_path), Path(output),
                                         work or default_work_dir(output))])
    with closing(reporter, page):
        executor, cfg = make_executor(devices, ray_address, cfg, reporter)
        with Signals(stop, reporter):
            summary = pipeline.video.run(job, cfg, events=chain(reporter, page), stop=stop, executor=executor)
        reporter.record("finished", frames=summary.frames, seconds=round(summary.seconds, 2),
                        cuts=summary.cuts, output=str(summary.output))
    figures.progress_figures(snapshots, progress_sheet, progress_anim)
    if loss_plot:
        figures.loss_plot(summary.all_histories(), loss_plot)
    if not quiet:
        click.echo(summary_line(summary), err=True)


@cli.command("batch")
@click.argument("jobs_spec", metavar="JOBS.yaml|GLOB")
@config_options
@click.option("--style", metavar="STYLE", help="Style image(s) for every input of a GLOB.")
@click.option("--out-dir", type=click.Path(file_okay=False), help="Output folder for a GLOB's results.")
@parallel_options
@job_options
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
    base_config = config_from_params(params)
    jobs = jobfile.load_jobs(jobs_spec, style=style, out_dir=out_dir, base_config=base_config, work_dir=work_dir)
    device_list = parse_devices(devices)
    batch_files(jobs, work_dir, {"--log": log_file, "--report": report_file})
    options = {"work_dir": work_dir, "keep_work": keep_work, "restart": restart, "overwrite": overwrite}
    reporter = Reporter(quiet, log_file)
    stop = StopFlag()
    started = time.perf_counter()
    works = {job.number: jobfile.job_work_dir(job, work_dir) for job in jobs}
    page = report_writer(report_file, [(job.name, job.input, job.output, works[job.number]) for job in jobs])
    executor, base_config = make_executor(devices, ray_address, base_config, reporter)
    with Signals(stop, reporter):
        outcomes = pipeline.batch.run_batch(jobs, device_list, base_config, options,
                                            chain(BatchReporter(reporter, [job.number for job in jobs],
                                                                 executor is not None or len(device_list) > 1), page,
                                                   jobfile.Results(jobs_spec) if jobfile.is_jobs_file(jobs_spec)
                                                   else None),
                                            stop, executor)
    if page is not None:
        page.close({works[o.job.number]: (o.status, o.message) for o in outcomes if o.status in ("failed", "stopped")})
    reporter.record("batch_finished", seconds=round(time.perf_counter() - started, 2),
                    failed=sum(o.status == "failed" for o in outcomes))
    reporter.close()
    click.echo(pipeline.batch.summary_table(outcomes))
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
              callback=suffix(".html", ".htm"), help="Also write the report page (self-contained HTML).")
@click.option("--follow", is_flag=True, help="With --html: keep rewriting the page until no job is running.")
@click.option("--serve", "port", type=click.IntRange(0, 65535), is_flag=False, flag_value=8765, default=None,
              metavar="[PORT]", help="Serve the report page over HTTP (read-only) [8765], on 127.0.0.1 unless --host.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address --serve binds to.")
@debug_option
@handle_errors
def status_command(paths: tuple[str, ...], as_json: bool, work_dir: str | None, html_file: str | None, follow: bool,
                   port: int | None, host: str, debug: bool) -> None:
    """Where jobs stand: frames done, recent seconds per frame, ETA, state (running, finished, failed with its
    error, stopped), scene cuts and device, read from their work directories and outputs only (while a run goes
    on, from another shell, or after it ended). A run that was killed shows as stopped at its last frame."""
    output_files({"--html": html_file})
    if follow and not html_file:
        raise click.BadParameter("needs --html FILE", param_hint="--follow")
    jobs = status.statuses(list(paths), work_dir=work_dir)
    click.echo(status.as_json(jobs) if as_json else status.table(jobs))
    for job, warning in ((j, w) for j in jobs for w in j.warnings if w.startswith("a log ends in a damaged line")):
        click.echo(f"warning: {job.name}: {warning}", err=True)
    if html_file:
        report.write_page(html_file, jobs, lambda: status.statuses(list(paths), work_dir=work_dir), follow=follow)
    if port is not None:
        serve(list(paths), work_dir, host, port, echo=lambda m: click.echo(m, err=True))


@cli.command("eval")
@click.argument("stylised", metavar="STYLISED", type=click.Path(exists=True))
@click.argument("original", metavar="ORIGINAL", type=click.Path(exists=True))
@click.option("--size", type=int, help="Evaluate at this longest side [STYLISED's size].")
@json_option("the figures and per-frame values")
@click.option("--csv", "csv_file", type=click.Path(dir_okay=False), callback=suffix(".csv"),
              help="Write per-frame values (CSV).")
@click.option("--plot", type=click.Path(dir_okay=False), callback=suffix(".png"),
              help="Plot temporal error per frame (PNG).")
@click.option("--style", type=click.Path(exists=True, dir_okay=False),
              help="Also rate each frame: its content and style terms under the run's objective, against STYLE.")
@click.option("--config", "config_name", default="default", show_default=True, metavar="NAME|PATH",
              help="The settings the clip was made with (objective for --style, schedule for references).")
@click.option("--reference-every", type=click.IntRange(1, 100000), metavar="N",
              help="With --style: optimise every Nth ORIGINAL frame cold, as a run's first frame is, and report "
                   "each later frame against it (drift).")
@weights_option()
@device_option
@debug_option
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
    if reference_every and not style:
        raise click.BadParameter("needs --style", param_hint="--reference-every")
    cfg = load_config(config_name, **{k: v for k, v in (("weights", weights), ("device", device)) if v})
    output_files({"--json": json_file, "--csv": csv_file, "--plot": plot},
                 {"STYLISED": [Path(stylised)], "ORIGINAL": [Path(original)]})
    result = pipeline.evaluate.evaluate_clips(Path(stylised), Path(original), size=size, cfg=cfg,
                                              style=Path(style) if style else None, reference_every=reference_every or 0)
    for message in result.warnings:
        click.echo(f"warning: {message}", err=True)
    click.echo("\n".join(pipeline.evaluate.report_lines(result)))
    pipeline.evaluate.write_outputs(result, json_file=json_file, csv_file=csv_file, plot=plot)


@cli.group("bench", invoke_without_command=True)
@click.option("--sizes", metavar="S1,S2,..", callback=frame_sizes,
              help="Frame sizes (longest side, or 720p/1080p/4k) [CPU: 256; GPU: 512,1080p].")
@click.option("--frames", type=click.IntRange(2, 1000), default=24, show_default=True, help="Frames of the clip.")
@click.option("--clip-size", type=click.IntRange(32, 4096), help="Width of the clip [CPU: 160; GPU: 512].")
@click.option("--precisions", metavar="P1,P2,..", callback=names(("auto", "fp32", "tf32", "bf16"), "precision"),
              help="Precisions for the overhead and image tests [CPU: auto; GPU: fp32,tf32,bf16].")
@click.option("--reference-evaluations", type=click.IntRange(1, 100000), default=300, show_default=True,
              help="L-BFGS evaluations per frame of the plain per-frame loop.")
@click.option("--skip", metavar="PART,..", default="", callback=names(("overhead", "flow", "image", "clip"), "part"),
              help="Leave out parts: overhead, flow, image, clip.")
@click.option("--config", "config_name", default="default", show_default=True, metavar="NAME|PATH",
              help="Settings under test.")
@bench_options("every figure")
@click.pass_context
@handle_errors
def bench_command(ctx: click.Context, sizes: list[int] | None, frames: int, clip_size: int | None,
                  precisions: list[str] | None, reference_evaluations: int, skip: list[str], config_name: str,
                  weights: str | None, device: str, json_file: str | None, debug: bool) -> None:
    """Benchmarks on fixed, seeded workloads made in code (random VGG19 weights unless --weights).

    Without a subcommand: speed on this device. Seconds per iteration of the full objective against a bare
    VGG19 forward and backward (ratio), per precision; optical flow per frame against a later frame's
    optimisation, and how long the device would wait for it; a single image, multi-scale against single-scale L-BFGS, to the same
    loss; and a clip stylised by nst-video against a plain per-frame Gatys loop (300 L-BFGS evaluations per
    frame from the content image, as in the PyTorch tutorial): seconds per frame, speed-up, idle fraction,
    peak memory, final losses and temporal error of both. `bench temporal` judges flicker and quality at once.
    """
    if ctx.invoked_subcommand is not None:
        return
    output_files({"--json": json_file})
    measured = pipeline.bench.speed_benchmark(config_name, pipeline.runtime.select_device(device), sizes, precisions,
                                            set(skip), frames=frames, clip_size=clip_size, weights=weights,
                                            reference_evaluations=reference_evaluations, say=click.echo,
                                            progress=lambda message: click.echo(message, err=True))
    write_json_if(json_file, measured)


@bench_command.command("temporal")
@click.option("--clips", "clip_names", metavar="C1,C2,..", callback=names(CLIP_NAMES, "clip"),
              help=f"Clips to run [all]: {', '.join(CLIP_NAMES)} (tuned on: {', '.join(TUNED)}; the rest held out).")
@click.option("--variants", metavar="V1,V2,..", callback=names(VARIANTS, "variant"),
              help="Variants to run [default]: " + ", ".join(VARIANTS) + ".")
@click.option("--temporal-weights", metavar="G1,G2,..", callback=numbers,
              help="Also run the defaults with each of these temporal weights.")
@click.option("--frames", type=click.IntRange(3, 2000), help="Frames of every clip [each its own: 12 to 96].")
@click.option("--width", type=click.IntRange(32, 1024), help="Width of every clip, px [each its own: 96 to 160].")
@click.option("--iterations", type=click.IntRange(3, 10000), default=240, show_default=True,
              help="Iterations of a cold frame: the first, and the plain per-frame loop later frames are judged against.")
@click.option("--frame-iterations", type=click.IntRange(1, 10000),
              help=f"Cap of each later frame [the defaults': {Config().frame_iterations}].")
@click.option("--cold-dir", type=click.Path(file_okay=False), metavar="DIR",
              help="Keep the cold references here, for reruns with the same clips and settings.")
@click.option("--sheet", type=click.Path(dir_okay=False), callback=suffix(".png"), metavar="FILE.png",
              help="Write a sheet of frames: first, middle and last of each variant beside cold ones, and differences.")
@pooling_option
@bench_options("the table and per-frame errors")
@handle_errors
def bench_temporal(clip_names: list[str] | None, variants: list[str] | None, temporal_weights: list[float] | None,
                   frames: int | None, width: int | None, iterations: int, frame_iterations: int | None,
                   cold_dir: str | None, sheet: str | None,
                   pooling: str | None, weights: str | None, device: str, json_file: str | None, debug: bool) -> None:
    """Flicker and quality at once, per clip and variant: photographs moved in code with exact flow (a pan with a
    textured square, a zoom, a pan with a disc crossing, a rotation, a change of light, a 96-frame shot) and
    MPI-Sintel's clip where ../shared/samples has it (judged with Farneback's flow). The temporal error uses the
    true flow; sampled later frames are judged against the same frames optimised cold, by the objective and by
    the layers on the other side of its ReLUs; and the evaluations per later frame."""
    output_files({"--sheet": sheet, "--json": json_file})
    chosen = {name: VARIANTS[name] for name in variants or ["default"]}
    for gamma in temporal_weights or []:
        chosen[f"gamma {gamma:g}"] = (f"the defaults, temporal weight {gamma:g}", {"temporal_weight": gamma})
    rows = pipeline.temporal_bench.temporal_benchmark(
        clips=clip_names, variants=chosen, iterations=iterations, frame_iterations=frame_iterations, frames=frames,
        width=width, weights=weights,
        device=device, cold_dir=cold_dir, sheet=sheet, overrides={"pooling": pooling} if pooling else None,
        progress=lambda m: click.echo(f"running {m}", err=True))
    click.echo(pipeline.temporal_bench.temporal_table(rows))
    write_json_if(json_file, [dataclasses.asdict(r) for r in rows])


@bench_command.command("chunks")
@click.option("--frames", type=click.IntRange(12, 2000), default=48, show_default=True, help="Frames of the shot.")
@click.option("--width", "size", type=click.IntRange(32, 1024), default=96, show_default=True, help="Width of the clip, px.")
@click.option("--max-shot-frames", "max_frames", type=click.IntRange(2, 2000), default=12, show_default=True,
              help="Chunk length.")
@click.option("--overlaps", default="0,4,8", show_default=True, metavar="K1,K2,..", callback=whole_numbers,
              help="Chunk overlaps to compare.")
@click.option("--iterations", type=click.IntRange(3, 10000), default=240, show_default=True, help="Iterations of a cold frame.")
@click.option("--frame-iterations", type=click.IntRange(1, 10000), default=60, show_default=True,
              help="Cap of each later frame.")
@bench_options("the table")
@handle_errors
def bench_chunks(frames: int, size: int, max_frames: int, overlaps: tuple[int, ...], iterations: int, frame_iterations: int,
                 weights: str | None, device: str, json_file: str | None, debug: bool) -> None:
    """What --max-shot-frames costs: one long shot made in code, stylised whole and in chunks with each overlap,
    measured by `eval` (temporal error and style term) around the seams and elsewhere."""
    if any(k < 0 or k >= max_frames for k in overlaps):
        raise click.BadParameter(f"each overlap must be from 0 to {max_frames - 1}", param_hint="--overlaps")
    output_files({"--json": json_file})
    rows = pipeline.chunks_bench.chunks_benchmark(frames=frames, size=size, max_frames=max_frames, overlaps=overlaps,
                                           iterations=iterations, frame_iterations=frame_iterations, weights=weights,
                                           device=device, progress=lambda m: click.echo(f"running {m}", err=True))
    click.echo(pipeline.chunks_bench.chunks_table(rows))
    write_json_if(json_file, [r.__dict__ for r in rows])


def _reconstruction_figure(image: str, out: str, layers: str | None, kind: str, *, iterations: int, size: int,
                           weights: str | None, seed: int, device: str, panels: str | None, quiet: bool,
                           debug: bool) -> None:
    target = png_output(out, panels)
    subsets = pipeline.reconstruct.panel_layers(kind, layers)
    cfg = Config(size=size, weights=weights, device=device)
    panel_figure(len(subsets), iterations, quiet, target, lambda progress: pipeline.reconstruct.reconstruction_figure(
        media.read_image(image), target, kind, subsets, cfg, iterations, seed=seed, progress=progress, panels=panels))


@cli.group("reconstruct")
def reconstruct_command() -> None:
    """What VGG19 keeps of an image, layer by layer (Gatys et al. 2016, Fig. 1)."""

@reconstruct_command.command("content")
@click.argument("image", metavar="IMAGE", type=click.Path(exists=True, dir_okay=False))
@click.argument("out", metavar="OUT.png", type=click.Path(dir_okay=False))
@click.option("--layers", metavar="L1,L2,..", help="Layers, one panel each [conv1_1,conv2_1,conv3_1,conv4_1,conv5_1].")
@figure_options
@handle_errors
def reconstruct_content(image: str, out: str, layers: str | None, **figure: Any) -> None:
    """Content reconstructions: from white noise, an image whose features match IMAGE at one layer only,
    for each layer. Lower layers reproduce the image almost exactly; higher layers keep its arrangement
    and lose the exact pixels. A labelled grid with the original first."""
    _reconstruction_figure(image, out, layers, "content", **figure)


@reconstruct_command.command("style")
@click.argument("image", metavar="IMAGE", type=click.Path(exists=True, dir_okay=False))
@click.argument("out", metavar="OUT.png", type=click.Path(dir_okay=False))
@click.option("--layers", metavar="L1,L2,..|S1;S2;..",
              help="Growing subsets of L1,L2,.. [conv1_1 .. conv5_1], or explicit subsets separated by ';'.")
@figure_options
@handle_errors
def reconstruct_style(image: str, out: str, layers: str | None, **figure: Any) -> None:
    """Style reconstructions: from white noise, an image whose Gram matrices match IMAGE's on growing subsets
    of layers (conv1_1; conv1_1+conv2_1; ... conv1_1 to conv5_1). The texture grows from fine to large-scale
    structure while the scene's arrangement is discarded. A labelled grid with the original first."""
    _reconstruction_figure(image, out, layers, "style", **figure)


@cli.command("sweep")
@click.argument("content", metavar="CONTENT", type=click.Path(exists=True, dir_okay=False))
@click.argument("style", metavar="STYLE", type=click.Path(exists=True, dir_okay=False))
@click.argument("out", metavar="OUT.png", type=click.Path(dir_okay=False))
@click.option("--ratios", default="1e-2,1e-3,1e-4", show_default=True, metavar="R1,R2,..", callback=numbers,
              help="Content/style weight ratios alpha/beta, one column each.")
@click.option("--content-layers", metavar="L1,L2,..", help="One row per content layer [the config's].")
@click.option("--config", "config_name", default="gatys2016", show_default=True, metavar="NAME|PATH",
              help="Settings of each stylisation (the paper's ratios assume loss_scale: paper).")
@figure_options
@handle_errors
def sweep_command(content: str, style: str, out: str, ratios: list[float], content_layers: str | None, config_name: str,
                  iterations: int, size: int, weights: str | None, seed: int, device: str, panels: str | None,
                  quiet: bool, debug: bool) -> None:
    """The content/style trade-off (Gatys et al. 2016, Fig. 3): CONTENT stylised with STYLE once per ratio
    alpha/beta (columns) and content layer (rows), in a labelled grid."""
    if any(v <= 0 for v in ratios):
        raise click.BadParameter("ratios must be positive numbers", param_hint="--ratios")
    target = png_output(out, panels)
    cfg = load_config(config_name, size=size, iterations=iterations, seed=seed, device=device,
                      **({"weights": weights} if weights else {}))
    layers = pipeline.reconstruct.parse_layers(content_layers, list(cfg.content_layers))
    panel_figure(len(ratios) * len(layers), iterations, quiet, target,
                 lambda progress: pipeline.reconstruct.sweep_figure(media.read_image(content), media.read_image(style),
                                                                    ratios, layers, cfg, target, panels, progress))


@cli.group("weights", invoke_without_command=True)
@click.option("--weights", type=click.Path(), envvar="NST_WEIGHTS", help="A weights file to check.")
@click.pass_context
@handle_errors
def weights_command(ctx: click.Context, weights: str | None) -> None:
    """Show where the VGG19 weights are looked for and whether they are there."""
    if ctx.invoked_subcommand is not None:
        return
    click.echo("\n".join(pipeline.vgg.weights_lines(weights)))


@weights_command.command("download")
@quiet_option
@handle_errors
def weights_download(quiet: bool) -> None:
    """Download torchvision's ImageNet VGG19 weights into the cache (to copy to an offline machine)."""
    path = pipeline.vgg.download_weights(progress=not quiet)
    click.echo(f"saved {path} ({path.stat().st_size / 1e6:.0f} MB); copy it to the same path "
               "(under TORCH_HOME) on an offline machine, or pass it with --weights")


@cli.command("config")
@config_options
@handle_errors
def config_command(**params: Any) -> None:
    """Print the configuration a run would use (preset, then flags), as YAML."""
    click.echo(yaml.safe_dump(config_from_params(params).to_dict(), sort_keys=False), nl=False)


def main() -> None:
    cli.main(prog_name="nst-video")


if __name__ == "__main__":
    main()
