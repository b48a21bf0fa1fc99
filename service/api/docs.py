"""The OpenAPI document and the interactive documentation, served from the package's own files.

- `/docs` works offline: FastAPI's default pages load Swagger UI and ReDoc from a CDN, which an
  air-gapped deployment (or this project's test machine) cannot reach. Swagger UI comes instead from
  the `swagger-ui-bundle-v2` package (Swagger UI 5, which reads OpenAPI 3.1), under `/docs/assets`.
- Multipart has no null: an optional form field or file is left out, not sent as null. FastAPI
  documents `int | None` form fields as "integer or null", which makes clients generated from the
  document (and schemathesis) send the text "null"; the document says what the API parses instead.
"""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

ASSETS = "/docs/assets"


def install(app: FastAPI) -> None:
    """Mount the Swagger UI assets and the `/docs` page (the app is built with docs_url=None), and
    build the OpenAPI document without nulls in multipart bodies."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = strip_multipart_nulls(build())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.mount(ASSETS, StaticFiles(directory=swagger_ui_path), name="docs-assets")

    page = get_swagger_ui_html(
        openapi_url=app.openapi_url or "/openapi.json",
        title=f"{app.title}: API",
        swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
        swagger_css_url=f"{ASSETS}/swagger-ui.css",
        swagger_favicon_url=f"{ASSETS}/favicon-32x32.png",
        swagger_ui_parameters={"persistAuthorization": False},
    )
    policy = docs_policy(bytes(page.body).decode())

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse(page.body, headers={"Content-Security-Policy": policy})


def docs_policy(html: str) -> str:
    """The Content-Security-Policy of the docs page: its own assets, and its inline start-up script by
    its hash (never 'unsafe-inline' for scripts); Swagger UI sets inline styles as it renders."""
    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()}'"
        for body in re.findall(r"<script>(.*?)</script>", html, flags=re.S)
    )
    return (
        f"default-src 'self'; script-src 'self' {hashes}; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )


def strip_multipart_nulls(document: dict[str, Any]) -> dict[str, Any]:
    """`anyOf: [X, {type: null}]` → X for every property of a multipart request body (in place)."""
    schemas = document.get("components", {}).get("schemas", {})
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            content = operation.get("requestBody", {}).get("content", {})
            ref = content.get("multipart/form-data", {}).get("schema", {}).get("$ref", "")
            body = schemas.get(ref.rsplit("/", 1)[-1], {})
            for name, prop in body.get("properties", {}).items():
                options = [o for o in prop.get("anyOf", []) if o.get("type") != "null"]
                if "anyOf" in prop and len(options) == 1:
                    rest = {k: v for k, v in prop.items() if k != "anyOf"}
                    body["properties"][name] = {**options[0], **rest}
    return document
