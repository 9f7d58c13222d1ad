"""`nst-video status ... --serve [PORT]`: the report page over HTTP with the standard library's server, for a
user looking from another machine through an SSH tunnel. Read-only (GET and HEAD), on 127.0.0.1 unless
another address is asked for. It answers `/` (or /index.html) with the page, built afresh at most every two
seconds, and nothing else: no other file, no folder listing, no path outside the page."""
from __future__ import annotations

import errno
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable
from urllib.parse import unquote, urlsplit

from .config import NSTError
from .report import render
from .status import statuses

FRESH_SECONDS = 2.0


class _Page:
    def __init__(self, paths: list[str], work_dir: str | None):
        self.paths, self.work_dir = paths, work_dir
        self.lock = threading.Lock()
        self.built = 0.0
        self.body = b""

    def get(self) -> bytes:
        with self.lock:
            if time.monotonic() - self.built >= FRESH_SECONDS:
                jobs = statuses(self.paths, work_dir=self.work_dir)
                self.body = render(jobs, live=any(j.state == "running" for j in jobs), title="nst-video status").encode()
                self.built = time.monotonic()
            return self.body


def make_server(paths: list[str], work_dir: str | None, host: str, port: int) -> ThreadingHTTPServer:
    page = _Page(paths, work_dir)
    page.get()  # a bad path is an error now, not at the first request

    class Handler(BaseHTTPRequestHandler):
        server_version = "nst-video"

        def _answer(self, with_body: bool) -> None:
            path = unquote(urlsplit(self.path).path)
            if path not in ("/", "/index.html"):
                self.send_error(404, "only the report page is served here")
                return
            try:
                body = page.get()
            except NSTError as error:
                self.send_error(500, str(error))
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            if with_body:
                self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 (the standard library's names)
            self._answer(True)

        def do_HEAD(self) -> None:  # noqa: N802
            self._answer(False)

        def log_message(self, format: str, *args: object) -> None:
            pass

    try:
        return ThreadingHTTPServer((host, port), Handler)
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            raise NSTError(f"port {port} is in use on {host}: give another with --serve PORT") from None
        raise NSTError(f"cannot serve on {host}:{port}: {error.strerror}") from None


def serve(paths: list[str], work_dir: str | None, host: str, port: int, *,
          echo: Callable[[str], None] = print) -> None:
    server = make_server(paths, work_dir, host, port)
    bound_host, bound_port = server.server_address[:2]
    echo(f"serving the report on http://{bound_host}:{bound_port}/ (read-only; Ctrl-C stops)")
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
