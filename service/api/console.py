"""The web console at /console: static files (service/api/console/), served by the API itself.

No separate server and no CDN: the page, its script and its style are files of this package, so the
console works offline. It talks only to this origin's public HTTP API, with the key the user pastes
(kept in the tab's sessionStorage).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

FILES = Path(__file__).parent / "console"


def install(app: FastAPI) -> None:
    @app.get("/console", include_in_schema=False)
    async def console() -> RedirectResponse:
        return RedirectResponse("/console/")

    app.mount("/console/", StaticFiles(directory=FILES, html=True), name="console")
