"""The web dashboard: static assets shipped in the package (`zephyr/scheduler/ui/`), served at `/`
and under `/ui/`. They are open without a token (they hold no data: the page asks for the token
and sends it with each API call), and are served with a Content-Security-Policy that allows
nothing but this origin, so the page loads no script, style or font from anywhere else.
"""

from __future__ import annotations

import mimetypes
from functools import cache
from pathlib import Path

from aiohttp import web

from zephyr.errors import NotFound

UI_DIR = Path(__file__).resolve().parent / "ui"
INDEX = "index.html"
UI_PREFIX = "/ui/"
OPEN_PATHS = frozenset({"/", UI_PREFIX})

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # A new version of the package must reach open browsers: revalidate on every load.
    "Cache-Control": "no-cache",
}
CONTENT_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html"}

routes = web.RouteTableDef()


def is_dashboard_path(path: str) -> bool:
    """True for the paths served from the packaged assets (open without a token)."""
    return path in OPEN_PATHS or path.startswith(UI_PREFIX)


@cache
def assets() -> dict[str, tuple[bytes, str]]:
    """Every file of the ui folder by name: (content, content type). Read once; only these names
    are ever served, so no request path can reach another file."""
    found: dict[str, tuple[bytes, str]] = {}
    for path in sorted(UI_DIR.iterdir()):
        if path.is_file() and not path.name.startswith("."):
            kind = (
                CONTENT_TYPES.get(path.suffix)
                or mimetypes.guess_type(path.name)[0]
                or "application/octet-stream"
            )
            found[path.name] = (path.read_bytes(), kind)
    return found


def asset_response(name: str) -> web.Response:
    try:
        body, kind = assets()[name]
    except KeyError:
        raise NotFound(f"no dashboard file {name!r}") from None
    return web.Response(body=body, content_type=kind, charset="utf-8", headers=SECURITY_HEADERS)


@routes.get("/")
async def index(request: web.Request) -> web.Response:
    """The dashboard's page."""
    return asset_response(INDEX)


@routes.get("/ui/")
async def ui_index(request: web.Request) -> web.Response:
    return asset_response(INDEX)


@routes.get("/ui/{name}")
async def ui_file(request: web.Request) -> web.Response:
    """One asset of the dashboard (scripts, style sheet); 404 for any other name."""
    return asset_response(request.match_info["name"])
