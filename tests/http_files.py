"""A real HTTP file server on 127.0.0.1 for download tests: serves a folder, honours Range, and can
drop the connection half-way through the next response (a cut link)."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class FileServer(http.server.ThreadingHTTPServer):
    folder: Path
    cut_next: bool = False
    requests: list[tuple[str, str | None]]  # (path, Range header)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        server: FileServer = self.server  # type: ignore[assignment]
        wanted = self.headers.get("Range")
        server.requests.append((self.path, wanted))
        path = server.folder / self.path.lstrip("/")
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        start = int(wanted.split("=")[1].split("-")[0]) if wanted else 0
        body = data[start:]
        self.send_response(206 if wanted else 200)
        self.send_header("Content-Length", str(len(body)))
        if wanted:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        if server.cut_next:
            server.cut_next = False
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.connection.shutdown(2)
            return
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def serve_folder(folder: Path) -> Iterator[FileServer]:
    server = FileServer(("127.0.0.1", 0), _Handler)
    server.folder, server.requests = folder, []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
