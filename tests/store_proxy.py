"""A TCP proxy in front of the test S3 server, for store faults (bench/chaos.py, tests/reliability): the
store itself stays real; the network between it and the service fails.

- `outage(seconds)`: every open connection is cut and new ones are refused for that long, then it serves
  again (a store or network outage).
- `stall(marker)`: the next request whose first line contains `marker` (b"/results/") is forwarded up to its
  headers and the first bytes of its body, then held: the upload is in flight when the test kills the
  process that makes it. `stalled` is set then, and `stalled_line` is the request line.
"""

from __future__ import annotations

import socket
import threading
import time
from urllib.parse import urlparse


class StoreProxy:
    def __init__(self, target: str) -> None:
        url = urlparse(target)
        self.target = (url.hostname or "127.0.0.1", url.port or 80)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self._down_until = 0.0
        self._marker: bytes | None = None
        self.stalled = threading.Event()
        self.stalled_line = b""
        self._release = threading.Event()
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    # --------------------------------------------------------------------------- faults

    def outage(self, seconds: float) -> None:
        """Cut every connection and refuse new ones for `seconds` (blocks for that long)."""
        self._down_until = time.monotonic() + seconds
        with self._lock:
            doomed = list(self._open)
        for sock in doomed:
            _close(sock)
        time.sleep(seconds)

    def stall(self, marker: bytes) -> None:
        self.stalled.clear()
        self._release.clear()
        self._marker = marker

    def release(self) -> None:
        """End a stall: the held connection is closed (its request never completes)."""
        self._marker = None
        self._release.set()

    def close(self) -> None:
        self._closed = True
        self.release()
        _close(self.listener)
        with self._lock:
            for sock in list(self._open):
                _close(sock)

    # --------------------------------------------------------------------------- plumbing

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if time.monotonic() < self._down_until:
                _close(client)
                continue
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                _close(client)
                continue
            server.settimeout(None)
            with self._lock:
                self._open.update((client, server))
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, upstream: bool) -> None:
        try:
            while chunk := source.recv(65536):
                if upstream and self._marker is not None and self._marker in chunk.split(b"\r\n", 1)[0]:
                    self._hold(chunk, sink)
                    return
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                _close(sock)
                with self._lock:
                    self._open.discard(sock)

    def _hold(self, chunk: bytes, sink: socket.socket) -> None:
        """Forward the request's headers and a few bytes of its body, then nothing until released."""
        self._marker = None  # one request only
        end = chunk.find(b"\r\n\r\n")
        sink.sendall(chunk[: end + 4 + 16] if end >= 0 else chunk)
        self.stalled_line = chunk.split(b"\r\n", 1)[0]
        self.stalled.set()
        self._release.wait()


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass
