"""Where each frame's record goes: stdout, a TCP listener, or a ROS topic (`ros.RosSink`).

A sink has ``send(record: dict)`` (one JSON object per frame) and ``close()``.
"""

from __future__ import annotations

import json
import socket
import sys

from dal_jax.robot.ros import RosSink


class StdoutSink:
    """JSON lines on stdout (or any text stream)."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout

    def send(self, record: dict):
        self.stream.write(json.dumps(record) + "\n")
        self.stream.flush()

    def close(self):
        pass


class TcpSink:
    """JSON lines to a TCP listener at host:port (the robot controller). Raises ConnectionError
    naming the address when nothing listens there."""

    def __init__(self, host: str, port: int, timeout: float = 5.0):
        self.address = (host, int(port))
        try:
            self.sock = socket.create_connection(self.address, timeout=timeout)
        except OSError as e:
            raise ConnectionError(f"cannot connect to {host}:{port}: {e}") from e

    def send(self, record: dict):
        self.sock.sendall((json.dumps(record) + "\n").encode())

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        self.sock.close()


def make_sink(spec: str):
    """``stdout`` | ``tcp:HOST:PORT`` | ``ros:/topic`` -> a sink."""
    if spec == "stdout":
        return StdoutSink()
    kind, _, arg = spec.partition(":")
    if kind == "tcp":
        host, _, port = arg.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"--sink=tcp:HOST:PORT expected; got {spec!r}")
        return TcpSink(host, int(port))
    if kind == "ros" and arg:
        return RosSink(arg)
    raise ValueError(f"--sink must be stdout, tcp:HOST:PORT or ros:/topic; got {spec!r}")
