"""`nst-video status`, the report page (--report, status --html) and status --serve."""
from __future__ import annotations

import http.client
import json
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest

from .conftest import ROOT, batch_command, command, run, wait_for_frames


def status(*args: object, **kwargs) -> subprocess.CompletedProcess:
    return run([sys.executable, str(ROOT / "cli.py"), "status", *map(str, args)], **kwargs)


def status_json(*paths: object) -> list[dict]:
    result = status(*paths, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["jobs"]


def _broken_folder(frames_dir: Path, folder: Path, bad: int = 4) -> Path:
    """The clip's frames with frame `bad` cut in half (its header reads, its pixels do not): the run fails there,
    after finishing the frames before it."""
    shutil.copytree(frames_dir, folder)
    damaged = folder / f"frame_{bad}.png"
    data = damaged.read_bytes()
    damaged.write_bytes(data[:len(data) // 2])
    return folder


@pytest.fixture(scope="module")
def finished(tmp_path_factory, frames_dir, style_image, weights_file) -> Path:
    """A finished job whose work directory was kept (--keep-work)."""
    out = tmp_path_factory.mktemp("finished") / "finished"
    result = run(command(frames_dir, style_image, out, weights_file, "--keep-work", "--frame-iterations", "2"))
    assert result.returncode == 0, result.stderr
    return out


def test_status_of_finished_failed_running_and_killed_jobs(tmp_path, frames_dir, style_image, weights_file, finished):
    failed = tmp_path / "failed"
    result = run(command(_broken_folder(frames_dir, tmp_path / "broken"), style_image, failed, weights_file,
                         "--frame-iterations", "2"))
    assert result.returncode == 1
    error = result.stderr.strip().splitlines()[-1].removeprefix("Error: ")

    running = tmp_path / "running"
    work = tmp_path / ".running.nst-work"
    process = subprocess.Popen(command(frames_dir, style_image, running, weights_file), stderr=subprocess.PIPE,
                               text=True)
    try:
        wait_for_frames(work, 3, process)
        live = status_json(running)[0]
        assert live["state"] == "running" and 3 <= live["done"] < 14 and live["total"] == 14
        assert live["eta_seconds"] is not None and live["eta_seconds"] > 0 and live["seconds_per_frame"] > 0
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM

    killed = tmp_path / "killed"
    process = subprocess.Popen(command(frames_dir, style_image, killed, weights_file), stderr=subprocess.PIPE, text=True)
    wait_for_frames(tmp_path / ".killed.nst-work", 2, process)
    process.kill()
    process.wait()

    jobs = {Path(j["output"]).name: j for j in status_json(finished, failed, running, killed)}
    assert jobs["finished"]["state"] == "finished" and jobs["finished"]["done"] == 14
    assert jobs["failed"]["state"] == "failed" and jobs["failed"]["message"] == error and jobs["failed"]["done"] == 4
    assert jobs["running"]["state"] == "stopped" and "SIGTERM" in jobs["running"]["message"]
    assert jobs["running"]["eta_seconds"] is None
    last = max(json.loads(line)["index"] for line in (tmp_path / ".killed.nst-work" / "log.jsonl").open()
               if '"index"' in line)
    # In the numbers of the progress bar: the third frame is frame 3, not index 2.
    assert jobs["killed"]["state"] == "stopped"
    assert jobs["killed"]["message"].startswith(f"killed at frame {last + 1} of 14: ")
    assert jobs["killed"]["done"] >= 2
    table = status(finished, failed, running, killed).stdout
    assert "failed: " + error in table and "14/14" in table


def test_status_reads_a_truncated_log_and_refuses_what_it_cannot_read(tmp_path, finished):
    work = tmp_path / "work"
    shutil.copytree(finished.parent / ".finished.nst-work", work)
    with open(work / "log.jsonl", "a") as handle:
        handle.write('{"index": 14, "pass": 1, "losses": {"con')  # a run killed mid-write
    result = status(work, "--json")
    assert result.returncode == 0 and json.loads(result.stdout)["jobs"][0]["done"] == 14
    assert "damaged line" in result.stderr
    result = status(tmp_path / "nothing-here")
    assert result.returncode == 2 and "is no work directory, output or jobs file" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    job = json.loads((work / "job.json").read_text())
    (work / "job.json").write_text(json.dumps({**job, "format": 99}))
    result = status(work)
    assert result.returncode == 1 and "newer nst-video" in result.stderr
    result = status(work, "--html", tmp_path / "page.txt")
    assert result.returncode == 2 and "must end in .html" in result.stderr


def test_status_says_what_is_not_ours_and_a_batch_failure_before_any_frame(tmp_path, style_image, weights_file,
                                                                          clip):
    """A path nst-video did not make is never `finished`; a batch job that failed before its first frame shows
    failed with its error, read from the results the batch keeps beside its jobs file."""
    folder = tmp_path / "empty"
    folder.mkdir()
    (tmp_path / "hostname").write_text("box\n")
    for path, what in ((folder, "a folder"), (tmp_path / "hostname", "a file"), (clip, "a file")):
        result = status(path)
        assert result.returncode == 2, result.stdout
        assert f"is no work directory, output or jobs file of nst-video (it is {what} nst-video has no record" \
            in result.stderr and len(result.stderr.strip().splitlines()) == 1
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(200))
    spec = tmp_path / "jobs.yaml"
    spec.write_text(json.dumps({"jobs": [{"input": str(broken), "style": str(style_image), "output": "a.mp4"},
                                         {"input": str(clip), "style": str(style_image), "output": "b.mp4"}]}))
    (tmp_path / "b.mp4").write_text("a user's file")
    assert [j["state"] for j in status_json(spec)] == ["not started", "not started"]
    result = run(batch_command(spec, weights_file))
    assert result.returncode == 1
    jobs = status_json(spec)
    assert [j["state"] for j in jobs] == ["failed", "failed"]
    assert "broken.mp4" in jobs[0]["message"] and "no record of making it" in jobs[1]["message"]
    assert (tmp_path / "b.mp4").read_text() == "a user's file"


def test_status_html_and_a_batch_work_dir(tmp_path, finished, frames_dir, style_image):
    """--html writes the page (no refresh once nothing runs); --work-dir finds the jobs of a batch run with it."""
    page = tmp_path / "pages" / "status.html"
    result = status(finished, "--html", page)
    assert result.returncode == 0, result.stderr
    text = page.read_text()
    assert 'data-state="finished"' in text and 'data-done="14"' in text and 'http-equiv="refresh"' not in text
    result = status(finished, "--follow")
    assert result.returncode == 2 and "needs --html FILE" in result.stderr
    batch_work = tmp_path / "batch-work"
    shutil.copytree(finished.parent / ".finished.nst-work", batch_work / "job-0001")
    spec = tmp_path / "jobs.yaml"
    spec.write_text(json.dumps({"jobs": [{"input": str(frames_dir), "style": str(style_image),
                                          "output": str(tmp_path / "elsewhere")}]}))
    job = json.loads(status(spec, "--json", "--work-dir", batch_work).stdout)["jobs"][0]
    assert job["state"] == "finished" and job["done"] == 14 and job["work_dir"] == str(batch_work / "job-0001")
    assert json.loads(status(spec, "--json").stdout)["jobs"][0]["state"] == "not started"


class _Parsed(HTMLParser):
    def __init__(self, text: str):
        super().__init__()
        self.sections = 0
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        if tag == "section":
            self.sections += 1


def test_the_report_is_rewritten_atomically_during_a_run(tmp_path, frames_dir, style_image, weights_file):
    """A reader polling the page while the run writes it never sees half a page; the last one stops refreshing."""
    page = tmp_path / "report" / "page.html"
    process = subprocess.Popen(command(frames_dir, style_image, tmp_path / "out.mp4", weights_file, "--report", page),
                               stderr=subprocess.PIPE, text=True)
    seen = set()
    while process.poll() is None:
        if page.exists():
            text = page.read_text()
            assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
            parsed = _Parsed(text)
            assert parsed.sections == 1
            seen.add(text)
        time.sleep(0.02)
    assert process.returncode == 0, process.stderr.read()
    assert len(seen) >= 2  # rewritten as frames finished (and once more at the end)
    final = page.read_text()
    assert 'http-equiv="refresh"' not in final and 'data-state="finished"' in final
    assert any('http-equiv="refresh"' in text for text in seen)


def _browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("Playwright is not installed (pip install playwright); .ci/run installs it")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        pytest.skip("no Chromium on this machine (Debian: apt-get install chromium); .ci/run installs it where apt works")
    return sync_playwright, chromium


def test_the_report_page_of_a_batch_in_a_real_browser(tmp_path, frames_dir, style_image, weights_file):
    """A batch with a finished and a failed job, its page opened from disk in headless Chromium: it loads with no
    console error and no request beyond the page itself, shows each job's state and frame count, its images
    load, and it does not refresh itself once the batch has ended."""
    sync_playwright, chromium = _browser()
    spec = tmp_path / "jobs.yaml"
    broken = _broken_folder(frames_dir, tmp_path / "broken")
    spec.write_text(json.dumps({"jobs": [
        {"input": str(frames_dir), "style": str(style_image), "output": str(tmp_path / "good.mp4")},
        {"input": str(broken), "style": str(style_image), "output": str(tmp_path / "bad")}]}))
    page_file = tmp_path / "batch.html"
    result = run(batch_command(spec, weights_file, "--frame-iterations", "2", "--report", page_file))
    assert result.returncode == 1
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 420, "height": 900})  # a phone's width
            errors, requests = [], []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(page_file.as_uri())
            page.wait_for_load_state("load")
            assert errors == [] and requests == [page_file.as_uri()]
            states = page.eval_on_selector_all("section.job", "s => s.map(e => [e.dataset.state, e.dataset.done])")
            assert states == [["finished", "14"], ["failed", "4"]]
            assert "frame_4.png is not a readable image" in page.inner_text("#job-2")
            widths = page.evaluate("Array.from(document.images).map(i => i.complete ? i.naturalWidth : 0)")
            assert len(widths) >= 4 and all(w > 0 for w in widths)
            assert page.evaluate("document.querySelector('meta[http-equiv=refresh]') === null")
            assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        finally:
            browser.close()
    assert (tmp_path / "report.png").stat().st_size > 10_000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_answers_the_page_on_localhost_only_and_nothing_else(tmp_path, finished):
    out = finished
    (finished.parent / "secret.txt").write_text("private")
    port = _free_port()
    process = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), "status", str(out), "--serve", str(port)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                connection.request("GET", "/")
                response = connection.getresponse()
                break
            except ConnectionRefusedError:
                time.sleep(0.2)
        else:
            raise AssertionError(process.stderr.read())
        body = response.read().decode()
        assert response.status == 200 and 'data-state="finished"' in body
        idle = socket.create_connection(("127.0.0.1", port))  # says nothing: closed by the server in time
        opened = time.monotonic()
        for _ in range(3):  # clients that go away mid-request: no traceback for any of them
            gone = socket.create_connection(("127.0.0.1", port))
            gone.sendall(b"GET / HTTP/1.1\r\n")
            gone.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # reset, not close
            gone.close()
        for host, code in (("evil.example", 403), (f"evil.example:{port}", 403), (f"127.0.0.1.evil.example:{port}", 403),
                           (f"localhost:{port}", 200), (f"127.0.0.1:{port}", 200), ("localhost:1", 403)):
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.putrequest("GET", "/", skip_host=True)
            connection.putheader("Host", host)
            connection.endheaders()
            answer = connection.getresponse()
            assert answer.status == code, host  # DNS rebinding: a page of another name never reads ours
            assert (b"data-state" in answer.read()) == (code == 200)
        for path in ("/../secret.txt", "/%2e%2e/secret.txt", "/secret.txt", "/..%2fsecret.txt"):
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", path)
            answer = connection.getresponse()
            assert answer.status == 404 and b"private" not in answer.read(), path
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        connection.request("POST", "/", body=b"x")
        assert connection.getresponse().status == 501
        addresses = [a for a in _listening(port)]
        assert addresses == ["127.0.0.1"]
        busy = status(out, "--serve", str(port))
        assert busy.returncode == 1 and f"port {port} is in use" in busy.stderr
        idle.settimeout(15)
        assert idle.recv(1) == b"" and time.monotonic() - opened < 12
    finally:
        process.send_signal(signal.SIGINT)
        _, errors = process.communicate(timeout=30)
    assert "Traceback" not in errors and "Error" not in errors, errors
    other = _free_port()
    process = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), "status", str(out), "--serve", str(other),
                                "--host", "127.0.0.2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:  # another address only when asked for
        deadline = time.time() + 30
        while not _listening(other) and time.time() < deadline and process.poll() is None:
            time.sleep(0.2)
        assert _listening(other) == ["127.0.0.2"], process.stderr.read() if process.poll() is not None else ""
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=30)


def _listening(port: int) -> list[str]:
    """Local addresses listening on `port` (from /proc/net/tcp)."""
    out = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, hex_port = local.split(":")
        if int(hex_port, 16) == port and state == "0A":
            out.append(socket.inet_ntoa(bytes.fromhex(address)[::-1]))
    return out


def test_status_and_its_page_never_load_torch(tmp_path, content_image, style_image):
    """`status` answers from another shell at once: neither it nor the page it writes imports torch (the modules
    that load it are pipeline.HEAVY, imported on first use by the commands that run the model)."""
    jobs = tmp_path / "jobs.yaml"
    jobs.write_text(f"jobs:\n  - {{input: '{content_image}', style: '{style_image}', output: '{tmp_path / 'o.png'}'}}\n")
    code = ("import atexit, sys; atexit.register(lambda: print('torch loaded:', 'torch' in sys.modules, file=sys.stderr)); "
            f"sys.argv = ['nst-video', 'status', {str(jobs)!r}, '--html', {str(tmp_path / 'p.html')!r}]; "
            "import cli; cli.main()")
    result = run([sys.executable, "-c", code], cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "p.html").exists() and result.stderr.strip().endswith("torch loaded: False")
    import pipeline

    assert set(pipeline.HEAVY) <= {p.stem for p in (ROOT / "pipeline").glob("*.py")}
