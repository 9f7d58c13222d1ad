"""`nst-video status ... --serve [PORT]`: the report page over HTTP with the standard library's server, for a
user looking from another machine through an SSH tunnel. Read-only (GET and HEAD), on 127.0.0.1 unless
another address is asked for. It answers `/` (or /index.html) with the page, built afresh at most every two
seconds, and nothing else: no other file, no folder listing, no path outside the page. On a loopback address
it answers only requests whose Host names that address or localhost (a page of another site that renamed
itself to 127.0.0.1, DNS rebinding, gets 403); a client that goes away is no error, and an idle connection is
closed after IDLE_SECONDS."""
from __future__ import annotations

import errno
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable
from urllib.parse import unquote, urlsplit

from .errors import NSTError
from .report import render
from .status import statuses

FRESH_SECONDS = 2.0
IDLE_SECONDS = 5.0      # a connection that sends no request for this long is closed (each holds a thread)
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def host_allowed(header: str | None, host: str, port: int) -> bool:
    """Whether a request's Host header names the loopback address we are bound to (or localhost), with our port
    or none. No header (HTTP/1.0) is allowed: a browser always sends one."""
    if header is None:
        return True
    try:
        parts = urlsplit("//" + header.strip())
        given = parts.port
    except ValueError:
        return False
    return (given is None or given == port) and parts.hostname in {host, "localhost", "127.0.0.1", "::1"}


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        import sys

        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return  # the client went away or said nothing: nothing to report
        super().handle_error(request, client_address)


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

    check_host = host in LOOPBACK

    class Handler(BaseHTTPRequestHandler):
        server_version = "nst-video"
        timeout = IDLE_SECONDS

        def _answer(self, with_body: bool) -> None:
            if check_host and not host_allowed(self.headers.get("Host"), host, self.server.server_address[1]):
                self.send_error(403, "this server answers only requests for localhost")
                return
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
        return _Server((host, port), Handler)
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
