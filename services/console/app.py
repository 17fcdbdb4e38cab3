"""The ASGI app: the single-page console under /console/, its public config, and /healthz.

Every page path (/console/ml/skills, /console/ml/serving, ...) answers index.html, and the page routes
itself. index.html is never cached (a new build takes effect at once); the hashed assets are immutable.
Strict headers on everything: the page may load and call only its own origin, which is Envoy's.
"""

from __future__ import annotations

from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

BASE = "/console"
HEALTH_PATH = "/healthz"
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; "
                               "object-src 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
}
NOT_BUILT = "The console is not built: run `make console` (npm ci + npm run build in console/).\n"


class SecurityHeaders:
    """Adds SECURITY_HEADERS to every response (pure ASGI, so streaming and files pass through untouched)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.decode().lower() not in SECURITY_HEADERS]
                headers += [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


def _inside(root: Path, relative: str) -> Path | None:
    """A regular file under `root`, never outside it (no `..`, no links out)."""
    candidate = (root / relative).resolve()
    return candidate if candidate.is_relative_to(root.resolve()) and candidate.is_file() else None


def build_app(dist: Path, *, serving_replicas: list[str], replica_header: str) -> ASGIApp:
    """`serving_replicas`: each replica's name as it reports itself; the page watches each one through Envoy."""
    config = {"base": f"{BASE}/", "servingReplicas": serving_replicas, "replicaHeader": replica_header}

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "built": (dist / "index.html").is_file()})

    async def public_config(request: Request) -> Response:
        return JSONResponse(config, headers={"cache-control": "no-store"})

    async def page(request: Request) -> Response:
        path = request.path_params.get("path", "")
        last = path.rsplit("/", 1)[-1]
        if "." in last:   # a file (favicon.svg, robots.txt): served when the build has it, else 404
            found = _inside(dist, path)
            return FileResponse(found) if found else PlainTextResponse("not found\n", status_code=404)
        index = dist / "index.html"
        if not index.is_file():
            return PlainTextResponse(NOT_BUILT, status_code=503, headers={"cache-control": "no-store"})
        return FileResponse(index, headers={"cache-control": "no-store"})

    assets = StaticFiles(directory=dist / "assets", check_dir=False)

    async def immutable_assets(scope: Scope, receive: Receive, send: Send) -> None:
        async def cached(message: Message) -> None:
            if message["type"] == "http.response.start" and message.get("status") == 200:
                message = {**message, "headers": [*message.get("headers", []),
                                                  (b"cache-control", b"public, max-age=31536000, immutable")]}
            await send(message)
        await assets(scope, receive, cached)

    app = Starlette(routes=[
        Route(HEALTH_PATH, health, methods=["GET"]),
        Route(f"{BASE}/config.json", public_config, methods=["GET"]),
        Mount(f"{BASE}/assets", app=immutable_assets),
        Route(f"{BASE}/", page, methods=["GET", "HEAD"]),
        Route(f"{BASE}/{{path:path}}", page, methods=["GET", "HEAD"]),
    ])
    return SecurityHeaders(app)
