"""The local web server of the grasp annotation page (standard library only).

`serve` starts a ``http.server.ThreadingHTTPServer`` on a background thread; `annotate_queue`
serves a queue until the labeller presses Finish and returns the labels.

HTTP API (all JSON answers carry ``Cache-Control: no-store``; errors are ``{"error": msg}``):

=======  ===============================  ===================================================
GET      ``/``, ``/app.js``, ``/style.css``  the page (a fixed whitelist, no file paths)
GET      ``/api/queue``                   round, image size, samples (index, id, grasp count),
                                          resume position, finished flag
GET      ``/api/samples/<i>``             ``{"index", "id", "rects", "revision"}``
GET      ``/api/samples/<i>/rgb.png``     the images (``depth.png`` likewise)
PUT      ``/api/samples/<i>/grasps``      body ``{"rects": [G][4][2], "revision": base}`` ->
                                          ``{"revision": new}``; 409 with the saved version
                                          when another tab saved first
PUT      ``/api/state``                   body ``{"current": i}``: the resume position
(both)   a sample whose saved labels cannot be read (`queue.CorruptLabels`) answers 423
         and is never overwritten; `Server` refuses to start on such a queue
POST     ``/api/finish``                  marks the queue finished, wakes `Server.wait_finished`
=======  ===============================  ===================================================

Security: samples are addressed by their integer position, checked against the manifest, so no
request string becomes a path; bodies are limited to `MAX_BODY` bytes, must be
``application/json`` (which a cross-site form cannot send without a CORS preflight, which this
server never grants) and are validated by `queue.validate_rects`. When bound to a loopback
address the ``Host`` header must name that address, which defeats DNS rebinding.
"""

from __future__ import annotations

import http.server
import ipaddress
import json
import logging
import pathlib
import re
import socket
import threading
import urllib.parse
from collections.abc import Callable
from typing import Self

import numpy as np

from dal_jax.annotate import queue as queue_lib

_LOG = logging.getLogger(__name__)

#: Largest request body accepted (100 grasps as JSON are ~10 KB).
MAX_BODY = 256 * 1024
#: Larger bodies are not even drained; the connection is closed instead.
_MAX_DRAIN = 8 * 1024 * 1024

STATIC_DIR = pathlib.Path(__file__).resolve().parent / "static"
_STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
}
_SAMPLE = re.compile(r"/api/samples/(\d{1,6})")
_IMAGE = re.compile(r"/api/samples/(\d{1,6})/(rgb|depth)\.png")
_GRASPS = re.compile(r"/api/samples/(\d{1,6})/grasps")


class HTTPError(Exception):
    """An error answered to the client as ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str, extra: dict | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra or {}


def _reject_constant(name):
    # json accepts NaN/Infinity by default; they are not valid JSON nor valid corners.
    raise ValueError(f"{name} is not allowed")


class _Handler(http.server.BaseHTTPRequestHandler):
    server_version = "dal_jax-annotate/1"
    server: _HTTPServer

    # ------------------------------------------------------------------ plumbing

    def log_message(self, format, *args):
        _LOG.debug("annotate %s - %s", self.address_string(), format % args)

    def _send(self, status: int, body: bytes, content_type: str, cache: str = "no-store"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", cache)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self'; frame-ancestors 'none'",
        )
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, obj) -> None:
        self._send(status, json.dumps(obj, allow_nan=False).encode(), "application/json")

    def _dispatch(self, method: str) -> None:
        try:
            self._check_host()
            path = urllib.parse.urlsplit(self.path).path
            getattr(self, f"_{method}")(path)
        except HTTPError as e:
            self._json(e.status, {"error": e.message, **e.extra})
        except Exception as e:  # noqa: BLE001 - a bug must not kill the server; tell the page
            _LOG.exception("annotation server error")
            self._json(500, {"error": f"internal error: {type(e).__name__}: {e}"})

    def do_GET(self):
        self._dispatch("get")

    def do_HEAD(self):
        self._dispatch("get")

    def do_PUT(self):
        self._dispatch("put")

    def do_POST(self):
        self._dispatch("post")

    def do_DELETE(self):
        self._json(405, {"error": "method not allowed"})

    do_PATCH = do_DELETE
    do_OPTIONS = do_DELETE  # no CORS preflight is ever granted

    def _check_host(self) -> None:
        allowed = self.server.app.allowed_hosts
        if allowed is None:
            return
        host = (self.headers.get("Host") or "").lower()
        if host not in allowed:
            raise HTTPError(403, f"unexpected Host header {host!r}")
        origin = self.headers.get("Origin")
        if origin and urllib.parse.urlsplit(origin.lower()).netloc not in allowed:
            raise HTTPError(403, f"cross-origin request from {origin!r} refused")

    def _body(self) -> dict:
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if self.headers.get("Transfer-Encoding"):
            raise HTTPError(411, "send a Content-Length; chunked bodies are not accepted")
        length = self.headers.get("Content-Length")
        if length is None:
            raise HTTPError(411, "Content-Length required")
        try:
            n = int(length)
            if n < 0:
                raise ValueError
        except ValueError:
            raise HTTPError(400, "bad Content-Length") from None
        if n > MAX_BODY:
            if n <= _MAX_DRAIN:
                self.rfile.read(n)  # drain so the client reads our answer, not a reset
            self.close_connection = True
            raise HTTPError(413, f"body of {n} bytes exceeds the limit of {MAX_BODY}")
        raw = self.rfile.read(n)
        if ctype != "application/json":
            raise HTTPError(415, "Content-Type must be application/json")
        try:
            obj = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
        except (UnicodeDecodeError, ValueError) as e:
            raise HTTPError(400, f"body is not valid JSON: {e}") from None
        if not isinstance(obj, dict):
            raise HTTPError(400, "body must be a JSON object")
        return obj

    def _index(self, text: str) -> int:
        index = int(text)
        if not 0 <= index < len(self.server.app.manifest["samples"]):
            raise HTTPError(404, f"no sample {index} in this queue")
        return index

    # ------------------------------------------------------------------ routes

    def _get(self, path: str) -> None:
        app = self.server.app
        if path in _STATIC:
            name, ctype = _STATIC[path]
            self._send(200, (STATIC_DIR / name).read_bytes(), ctype, cache="no-cache")
        elif path == "/favicon.ico":
            self._send(204, b"", "image/x-icon")  # no icon; spares the console a 404
        elif path == "/api/queue":
            self._json(200, app.queue_summary())
        elif m := _SAMPLE.fullmatch(path):
            index = self._index(m.group(1))
            try:
                rects, revision = queue_lib.read_sample(app.queue_dir, index, app.manifest)
            except queue_lib.CorruptLabels as e:  # 423 Locked: not the 409 of a conflict
                raise HTTPError(423, str(e)) from None
            sid = app.manifest["samples"][index]["id"]
            self._json(
                200, {"index": index, "id": sid, "rects": rects.tolist(), "revision": revision}
            )
        elif m := _IMAGE.fullmatch(path):
            index = self._index(m.group(1))
            entry = app.manifest["samples"][index]
            name = entry[m.group(2)]  # "rgb.png"/"depth.png" from the manifest, or None
            if name not in ("rgb.png", "depth.png"):
                raise HTTPError(404, f"sample {index} has no {m.group(2)} image")
            file = app.queue_dir / queue_lib.SAMPLES / f"{index:04d}" / name
            self._send(200, file.read_bytes(), "image/png", cache="no-cache")
        else:
            raise HTTPError(404, f"not found: {path}")

    def _put(self, path: str) -> None:
        app = self.server.app
        if m := _GRASPS.fullmatch(path):
            index = self._index(m.group(1))
            body = self._body()
            revision = body.get("revision")
            if isinstance(revision, bool) or not isinstance(revision, int):
                raise HTTPError(
                    400, "'revision' (the revision the edit is based on) must be an int"
                )
            if "rects" not in body:
                raise HTTPError(400, "'rects' missing")
            try:
                new = queue_lib.save_sample(
                    app.queue_dir, index, body["rects"], revision, app.manifest
                )
            except queue_lib.CorruptLabels as e:  # nothing was written
                raise HTTPError(423, str(e)) from None
            except (TypeError, ValueError) as e:
                raise HTTPError(400, str(e)) from None
            except queue_lib.RevisionConflict as e:
                raise HTTPError(
                    409,
                    str(e),
                    {"revision": e.current_revision, "rects": e.current_rects.tolist()},
                ) from None
            self._json(200, {"index": index, "revision": new})
        elif path == "/api/state":
            body = self._body()
            current = body.get("current")
            if isinstance(current, bool) or not isinstance(current, int):
                raise HTTPError(400, "'current' must be an int")
            if not 0 <= current < len(app.manifest["samples"]):
                raise HTTPError(400, f"'current' must be a sample index, got {current}")
            self._json(200, queue_lib.write_state(app.queue_dir, current=current))
        else:
            raise HTTPError(404, f"not found: PUT {path}")

    def _post(self, path: str) -> None:
        app = self.server.app
        if path == "/api/finish":
            self._body()  # same content-type rule as every write (blocks cross-site forms)
            state = queue_lib.write_state(app.queue_dir, finished=True)
            app.finished_event.set()
            self._json(200, state)
        else:
            raise HTTPError(404, f"not found: POST {path}")


class _HTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    app: Server


class _HTTPServer6(_HTTPServer):
    address_family = socket.AF_INET6


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Server:
    """A running annotation server; use `serve` to make one. Also a context manager."""

    def __init__(self, queue_dir, host: str = "127.0.0.1", port: int = 0):
        self.queue_dir = pathlib.Path(queue_dir).resolve()
        self.manifest = queue_lib.load_manifest(self.queue_dir)
        # Samples whose labels cannot be read would show as "0 grasps" and a save would
        # overwrite them: refuse to serve the queue until they are repaired or moved aside.
        problems, self.notes = queue_lib.check_queue(self.queue_dir, self.manifest)
        if problems:
            raise queue_lib.CorruptLabels(self.queue_dir, problems)
        if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
            raise ValueError(f"port must be 0..65535 (0 picks a free one); got {port!r}")
        self.finished_event = threading.Event()
        cls = _HTTPServer6 if ":" in host else _HTTPServer
        self._httpd = cls((host, port), _Handler)
        self._httpd.app = self
        self.host = host
        self.port = self._httpd.server_address[1]
        url_host = f"[{host}]" if ":" in host else host
        if host in ("0.0.0.0", "::"):
            url_host = "127.0.0.1" if host == "0.0.0.0" else "[::1]"
        self.url = f"http://{url_host}:{self.port}/"
        # Loopback binds only answer requests naming a loopback host (DNS-rebinding guard);
        # a server deliberately exposed on another address cannot know its public names.
        self.allowed_hosts = None
        if _is_loopback(host):
            p = self.port
            self.allowed_hosts = {f"127.0.0.1:{p}", f"localhost:{p}", f"[::1]:{p}"}
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"annotate-{self.port}",
            daemon=True,
        )
        self._thread.start()

    def queue_summary(self) -> dict:
        """What ``GET /api/queue`` answers."""
        samples = []
        for i, s in enumerate(self.manifest["samples"]):
            entry = {"index": i, "id": s["id"], "has_rgb": s["rgb"] is not None}
            try:
                rects, revision = queue_lib.read_sample(self.queue_dir, i, self.manifest)
                entry.update(grasps=len(rects), revision=revision)
            except queue_lib.CorruptLabels as e:  # damaged while serving: say so, never "0"
                entry.update(grasps=None, revision=None, error=str(e))
            samples.append(entry)
        state = queue_lib.read_state(self.queue_dir)
        return {
            "round": self.manifest["round"],
            "height": self.manifest["height"],
            "width": self.manifest["width"],
            "max_grasps": self.manifest.get("max_grasps", queue_lib.MAX_GRASPS),
            "samples": samples,
            "current": min(max(state["current"], 0), max(len(samples) - 1, 0)),
            "finished": state["finished"],
        }

    def wait_finished(self, timeout: float | None = None) -> bool:
        """Blocks until Finish is pressed (True) or ``timeout`` seconds pass (False)."""
        return self.finished_event.wait(timeout)

    def close(self) -> None:
        """Stops serving and frees the port."""
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def serve(queue_dir, host: str = "127.0.0.1", port: int = 0) -> Server:
    """Serves the annotation page for ``queue_dir`` on a background thread.

    Raises FileNotFoundError (no queue.json), ValueError (a damaged queue.json, a bad port),
    `queue.CorruptLabels` (samples whose labels cannot be read; nothing is served then) and
    OSError (the address cannot be bound).

    Args:
      queue_dir: a folder written by `queue.write_queue`.
      host: address to bind; loopback by default. Binding anything else exposes the page (and
        write access to the labels) to the network.
      port: TCP port; 0 picks a free one (see ``Server.url``).
    """
    return Server(queue_dir, host, port)


def annotate_queue(
    queue_dir,
    host: str = "127.0.0.1",
    port: int = 0,
    on_url: Callable[[str], object] = print,
) -> dict[str, np.ndarray]:
    """Serves ``queue_dir`` until the labeller presses Finish; returns `queue.read_labels`.

    ``on_url(url)`` is called once the server listens (prints it by default). A queue that is
    already finished (e.g. a run restarted after Finish) returns its labels at once.
    """
    if queue_lib.is_finished(queue_dir):
        return queue_lib.read_labels(queue_dir)
    with serve(queue_dir, host, port) as server:
        on_url(server.url)
        # Short waits keep Ctrl+C responsive in the main thread.
        while not server.wait_finished(0.5):
            pass
    return queue_lib.read_labels(queue_dir)
