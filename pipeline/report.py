"""The report page: one self-contained HTML file (images embedded, plots as inline SVG, no script, nothing
fetched from anywhere) showing every job of a run or batch at a glance. While a job runs the page asks the
browser to reload it every few seconds; once every job has ended it no longer does.

ReportWriter rewrites the page atomically as frames finish (`--report FILE`); `render` builds it from
`status.JobStatus` records, so `nst-video status --html/--serve` shows the same page.
"""
from __future__ import annotations

import base64
import html
import io
import time
from pathlib import Path
from statistics import median
from typing import Any, Callable

import numpy as np

from .errors import NSTError
from .events import Finishing, FrameDone, JobDone, JobProgress, Started
from .files import make_parent, write_file
from .status import JobStatus, _duration, read_work_dir

REFRESH_SECONDS = 5
CONTRAST_FLOOR = 0.25      # a result whose contrast is below this fraction of its input's looks flat
CONTENT_JUMP = 3.0         # a frame whose content loss is this many times its predecessors' median

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;padding:12px;background:#f6f6f4;color:#222}
h1{font-size:1.3em;margin:4px 0 12px}
.job{background:#fff;border-radius:8px;padding:12px;margin-bottom:14px;box-shadow:0 1px 3px rgba(0,0,0,.12)}
.head{display:flex;flex-wrap:wrap;gap:8px;align-items:baseline}
.name{font-weight:600;font-size:1.1em;word-break:break-all}
.state{border-radius:4px;padding:1px 8px;font-size:.9em;color:#fff}
.running{background:#2a6fdb}.finished{background:#2e8540}.failed{background:#c0392b}.stopped{background:#b7791f}
.not-started{background:#777}
.bar{height:10px;background:#e4e4e4;border-radius:5px;overflow:hidden;margin:8px 0}
.bar div{height:100%;background:#2a6fdb}
.facts{font-size:.9em;color:#444}
.images{display:flex;flex-wrap:wrap;gap:8px;margin:8px 0}
.images img{max-width:100%;height:auto;border-radius:4px}
.plots{display:grid;grid-template-columns:repeat(auto-fit,minmax(280px,1fr));gap:8px}
.plots svg{width:100%;height:auto}
.warn{color:#8a4b00;font-size:.9em}
table{border-collapse:collapse;font-size:.85em}td{padding:1px 8px 1px 0;vertical-align:top;word-break:break-all}
figure{margin:0;max-width:100%}.error,.warn li{word-break:break-word}
.error{color:#c0392b}
"""


def _image_uri(path: str | Path, height: int | None = None) -> str | None:
    """A small JPEG as a data URI (a style image is scaled to `height`)."""
    import cv2

    if str(path).startswith("data:"):  # read earlier, while its file existed
        return str(path)
    path = Path(path)
    try:
        if height is None and path.suffix.lower() in (".jpg", ".jpeg"):
            data = path.read_bytes()
        else:
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                return None
            width = max(1, round(image.shape[1] * height / image.shape[0])) if height else image.shape[1]
            image = cv2.resize(image, (width, height or image.shape[0]), interpolation=cv2.INTER_AREA)
            data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes()
    except OSError:
        return None
    return "data:image/jpeg;base64," + base64.b64encode(data).decode()


def _svg(draw: Any, title: str, salt: str) -> str:
    """One small plot as inline SVG (text kept as text, ids salted so several plots can share a page)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with plt.rc_context({"svg.fonttype": "none", "svg.hashsalt": salt, "font.size": 8}):
        figure, axes = plt.subplots(figsize=(4.2, 2.4))
        try:
            draw(axes)
            axes.set_title(title, fontsize=9)
            axes.grid(alpha=0.3)
            figure.tight_layout()
            buffer = io.StringIO()
            figure.savefig(buffer, format="svg")
        finally:
            plt.close(figure)
    text = buffer.getvalue()
    return text[text.index("<svg"):]


_PLOTS: dict[tuple, list[str]] = {}   # a job's plots while its data has not changed (finished jobs in a batch)


def _plots(job: JobStatus, key: str, flicker: list[tuple[int, float]] | None) -> list[str]:
    frames = job.frames
    cache_key = (key, job.work_dir, len(frames), len(job.references), frames[-1].time if frames else None,
                 len(flicker or []))
    if cache_key not in _PLOTS:
        if len(_PLOTS) > 256:
            _PLOTS.clear()
        _PLOTS[cache_key] = _draw_plots(job, key, flicker)
    return _PLOTS[cache_key]


def _draw_plots(job: JobStatus, key: str, flicker: list[tuple[int, float]] | None) -> list[str]:
    frames = job.frames
    if not frames:
        return []
    index = [r.index for r in frames]
    cuts = job.cuts
    plots = []

    def mark_cuts(axes: Any) -> None:
        for cut in cuts:
            axes.axvline(cut, color="#c0392b", lw=0.8, ls="--")

    def losses(axes: Any) -> None:
        for name, colour in (("content", "#2a6fdb"), ("style", "#b7791f"), ("temporal", "#2e8540")):
            values = [r.losses.get(name) for r in frames]
            if any(v for v in values):
                axes.plot(index, [v if v else np.nan for v in values], lw=1, label=name, color=colour)
        if job.references:
            axes.plot([r.index for r in job.references], [r.quality for r in job.references], "k^", ms=4, label="cold reference (content+style)")
        axes.set_yscale("log")
        axes.set_xlabel("frame")
        mark_cuts(axes)
        axes.legend(fontsize=6)

    plots.append(_svg(losses, "loss per frame", f"{key}-l"))
    plots.append(_svg(lambda a: (a.plot(index, [r.iterations for r in frames], lw=1), mark_cuts(a),
                                 a.set_xlabel("frame")), "iterations per frame", f"{key}-i"))
    plots.append(_svg(lambda a: (a.plot(index, [r.seconds for r in frames], lw=1), mark_cuts(a),
                                 a.set_xlabel("frame")), "seconds per frame", f"{key}-s"))
    if any(r.reliable is not None for r in frames):
        plots.append(_svg(lambda a: (a.plot(index, [r.reliable if r.reliable is not None else np.nan for r in frames],
                                            lw=1), mark_cuts(a), a.set_ylim(0, 1.02),
                                     a.set_xlabel("frame")),
                          "reliable pixels (flow), scene cuts dashed", f"{key}-r"))
    if flicker:
        plots.append(_svg(lambda a: (a.plot([i for i, _ in flicker], [e for _, e in flicker], lw=1), mark_cuts(a),
                                     a.set_xlabel("frame"), a.set_ylabel("RMSE 0-255")),
                          "temporal error per frame (eval): flicker", f"{key}-f"))
    return plots


def suspicious(job: JobStatus) -> list[str]:
    """Frames that look wrong: a result whose contrast collapsed far below its input's, or a jump in content loss."""
    out = []
    history: list[float] = []
    for record in job.frames:
        contrast = record.contrast
        if contrast is not None and contrast < CONTRAST_FLOOR:
            out.append(f"frame {record.index}: contrast {contrast:.2f} of its input's (a flat or washed-out result)")
        content = record.losses.get("content")
        if record.cut:
            history = []
        if content and len(history) >= 3 and content > CONTENT_JUMP * median(history[-10:]):
            out.append(f"frame {record.index}: content loss jumped to {content / median(history[-10:]):.1f}x "
                       "its predecessors'")
        if content:
            history.append(content)
    return out


def _job_html(job: JobStatus, key: str, flicker: list[tuple[int, float]] | None) -> str:
    e = html.escape
    state_class = job.state.replace(" ", "-")
    fraction = min(1.0, job.done / job.total) if job.total else (1.0 if job.state == "finished" else 0.0)
    facts = [f"{job.done}/{job.total} frames" if job.total else f"{job.done} frames"]
    if job.seconds_per_frame:
        facts.append(f"{job.seconds_per_frame:.2f} s/frame (recent)")
    if job.state == "running" and job.eta_seconds is not None:
        facts.append(f"ETA {_duration(job.eta_seconds)}")
    if job.cuts:
        facts.append(f"scene cuts at {', '.join(map(str, job.cuts[:20]))}{' ...' if len(job.cuts) > 20 else ''}")
    if job.device:
        facts.append(e(job.device))
    parts = [f'<section class="job" id="job-{key}" data-state="{e(job.state)}" data-done="{job.done}" '
             f'data-total="{job.total or ""}">',
             f'<div class="head"><span class="name">{e(job.name)}</span>'
             f'<span class="state {state_class}">{e(job.state)}</span></div>',
             f'<div class="bar"><div style="width:{fraction * 100:.1f}%"></div></div>',
             f'<div class="facts">{" · ".join(e(f) for f in facts)}</div>']
    if job.message and job.state in ("failed", "stopped"):
        parts.append(f'<p class="error">{e(job.message)}</p>')
    paths = [("input", job.input), ("output", job.output)]
    parts.append("<table>" + "".join(f"<tr><td>{k}</td><td>{e(str(v))}</td></tr>" for k, v in paths if v) + "</table>")
    images = []
    if job.preview:
        uri = _image_uri(job.preview)
        if uri:
            images.append(f'<figure><img src="{uri}" alt="input and result of the latest frame">'
                          f'<figcaption class="facts">latest frame: input | result</figcaption></figure>')
    for number, style in enumerate(job.styles, 1):
        uri = _image_uri(style, 120)
        if uri:
            images.append(f'<figure><img src="{uri}" alt="style image {number}">'
                          f'<figcaption class="facts">style {e(Path(style).name)}</figcaption></figure>')
    if images:
        parts.append('<div class="images">' + "".join(images) + "</div>")
    if job.settings:
        parts.append("<details><summary class=\"facts\">settings that differ from the defaults</summary><table>"
                     + "".join(f"<tr><td>{e(k)}</td><td>{e(str(v))}</td></tr>" for k, v in sorted(job.settings.items()))
                     + "</table></details>")
    warnings = job.warnings + suspicious(job)
    if warnings:
        parts.append('<ul class="warn">' + "".join(f"<li>{e(w)}</li>" for w in warnings[:50]) + "</ul>")
    plots = _plots(job, key, flicker)
    if plots:
        parts.append('<div class="plots">' + "".join(plots) + "</div>")
    parts.append("</section>")
    return "\n".join(parts)


def render(jobs: list[JobStatus], *, live: bool, title: str = "nst-video",
           flicker: dict[str, list[tuple[int, float]]] | None = None) -> str:
    """The page. `live`: the browser reloads it every REFRESH_SECONDS (while a run goes on)."""
    flicker = flicker or {}
    counts = {}
    for job in jobs:
        counts[job.state] = counts.get(job.state, 0) + 1
    summary = ", ".join(f"{n} {state}" for state, n in counts.items())
    refresh = f'<meta http-equiv="refresh" content="{REFRESH_SECONDS}">' if live else ""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    body = "\n".join(_job_html(job, str(number), flicker.get(job.work_dir or job.name))
                     for number, job in enumerate(jobs, 1))
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">{refresh}'
            f'<title>{html.escape(title)}</title><style>{CSS}</style></head><body data-live="{str(live).lower()}">'
            f'<h1>{html.escape(title)}</h1><p class="facts">{len(jobs)} job{"s" if len(jobs) != 1 else ""}: '
            f'{html.escape(summary)} · written {stamp}{" · refreshes every %d s" % REFRESH_SECONDS if live else ""}</p>'
            f"\n{body}\n</body></html>\n")


def write_page(path: str | Path, jobs: list[JobStatus], read: Callable[[], list[JobStatus]], *,
               follow: bool = False, every: float = 2.0) -> None:
    """`status --html`: the page of `jobs`; with `follow`, rewritten every `every` seconds from `read()` (a live
    page, refreshing itself) until no job is running, then once more as it ended."""
    make_parent(path)
    while True:
        running = any(j.state == "running" for j in jobs)
        write_file(path, render(jobs, live=follow and running, title="nst-video status").encode())
        if not (follow and running):
            return
        time.sleep(every)
        jobs = read()

class ReportWriter:
    """Keeps FILE.html up to date during a run or batch: an event sink (chain it with the progress display).
    Events only mark the page stale; a background thread rewrites it atomically at most every `every` seconds
    (as often as the browser reloads it), so the frame loop never waits for a plot. Before a job's work directory is removed the page reads it a
    last time (and measures the job's flicker with `eval`); close() writes the final page, which no longer
    refreshes."""

    def __init__(self, path: str | Path, jobs: list[tuple[str, Path, Path, Path]], *, every: float = REFRESH_SECONDS,
                 flicker: bool = True):
        import threading

        self.path, self.every, self.measure_flicker = Path(path), every, flicker
        self.jobs = {work: JobStatus(name, str(work), str(output), str(source)) for name, source, output, work in jobs}
        self.flicker: dict[str, list[tuple[int, float]]] = {}
        self.seconds = 0.0    # time spent writing the page (its cost, reported in README)
        self.writes = 0
        self.lock = threading.Lock()
        self.stale = threading.Event()
        self.closing = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="report", daemon=True)
        self.thread.start()

    def __call__(self, event: Any) -> None:
        if isinstance(event, Finishing):
            with self.lock:
                self._finishing(event)
            self.stale.set()
        elif isinstance(event, (FrameDone, JobProgress, JobDone, Started)):
            self.stale.set()

    def _loop(self) -> None:
        while not self.closing.is_set():
            if self.stale.wait(timeout=0.5) and not self.closing.is_set():
                self.stale.clear()
                with self.lock:
                    self.write(live=True)
                self.closing.wait(self.every)

    def _finishing(self, event: Any) -> None:
        work = Path(event.work_dir)
        if work not in self.jobs:
            return
        started = time.perf_counter()
        job = read_work_dir(work, self.jobs[work].name)
        job.state, job.message, job.eta_seconds = "finished", "", None
        if job.preview:  # the work directory is about to go
            job.preview = _image_uri(job.preview)
        self.jobs[work] = job
        if self.measure_flicker and job.input and job.done > 1:
            from .evaluate import evaluate_clips  # loads torch: only a report that measures flicker needs it

            try:
                result = evaluate_clips(Path(event.output), Path(job.input))
                self.flicker[str(work)] = [(f.index, f.stylised) for f in result.frames if f.stylised is not None]
            except NSTError as error:
                job.warnings.append(f"flicker not measured: {error}")
        self.seconds += time.perf_counter() - started

    def refresh(self) -> list[JobStatus]:
        for work, old in list(self.jobs.items()):
            if old.state == "finished" or not (work / "job.json").exists():
                if old.state in ("running", "not started") and Path(old.output or "").exists() and not work.exists():
                    old.state = "finished"
                continue
            try:
                self.jobs[work] = read_work_dir(work, old.name)
            except (NSTError, OSError, ValueError):  # a directory going away under us: keep what we had
                continue
        return list(self.jobs.values())

    def write(self, *, live: bool) -> None:
        started = time.perf_counter()
        jobs = self.refresh()
        if not live:  # the run is over: whatever did not finish has stopped or failed, nothing refreshes
            for job in jobs:
                if job.state == "running":
                    job.state = "stopped"
        page = render(jobs, live=live and any(j.state in ("running", "not started") for j in jobs),
                      title=f"nst-video: {len(jobs)} job{'s' if len(jobs) != 1 else ''}", flicker=self.flicker)
        make_parent(self.path)
        write_file(self.path, page.encode())
        self.seconds += time.perf_counter() - started
        self.writes += 1

    def close(self, outcomes: dict[Path, tuple[str, str]] | None = None) -> None:
        """The final page; `outcomes`: work directory -> (state, message) of jobs that ended without a work
        directory to read (a failure before their first frame)."""
        self.closing.set()
        self.thread.join()
        for work, (state, message) in (outcomes or {}).items():
            job = self.jobs.get(work)
            if job is not None and job.state != "finished":
                job.state, job.message = state, message
        self.write(live=False)
