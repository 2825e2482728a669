"""The web dashboard's files as the scheduler serves them: open without a token, only the packaged
files, nothing loaded from elsewhere, and described in the OpenAPI document."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest

from tests.support.api_server import Api, running_api
from zephyr.scheduler.dashboard import UI_DIR

TOKEN = "dashboard-test-token"


@pytest.fixture
async def api(database_url: str) -> AsyncIterator[Api]:
    async with running_api(database_url, ZEPHYR_API_TOKENS=TOKEN) as api:
        yield api


async def test_page_and_assets_are_served_without_a_token(api: Api) -> None:
    for path in ("/", "/ui/"):
        async with api.session.get(api.url(path)) as resp:
            assert resp.status == 200, path
            assert resp.content_type == "text/html"
            page = await resp.text()
            assert '<script type="module" src="/ui/app.js">' in page
            policy = resp.headers["Content-Security-Policy"]
            assert "default-src 'none'" in policy and "script-src 'self'" in policy
            assert resp.headers["X-Content-Type-Options"] == "nosniff"
    names = sorted(p.name for p in UI_DIR.iterdir() if p.suffix in (".js", ".css"))
    assert "app.js" in names and "style.css" in names
    for name in names:
        async with api.session.get(api.url(f"/ui/{name}")) as resp:
            assert resp.status == 200, name
            assert resp.content_type == ("text/css" if name.endswith(".css") else "text/javascript")
            assert await resp.read() == (UI_DIR / name).read_bytes()
    # The data stays behind the token.
    async with api.session.get(api.url("/v1/stats")) as resp:
        assert resp.status == 401


async def test_only_packaged_files_are_served(api: Api) -> None:
    for path in ("/ui/nothing.js", "/ui/..%2Fdashboard.py", "/ui/.hidden", "/ui/%00"):
        async with api.session.get(api.url(path)) as resp:
            assert resp.status == 404, path
            body = await resp.json()
            assert body["error"]["code"] == "not_found"


def test_assets_load_nothing_from_elsewhere() -> None:
    """No URL of another origin in any asset (the SVG namespace is a name, not a fetch)."""
    for path in UI_DIR.iterdir():
        text = path.read_text()
        text = text.replace("http://www.w3.org/2000/svg", "")
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.IGNORECASE), path.name
        assert not re.search(r"\.(innerHTML|outerHTML)\s*=|insertAdjacentHTML|document\.write", text), (
            f"{path.name}: text goes in as text nodes only"
        )


async def test_openapi_describes_the_dashboard_paths_as_open(api: Api) -> None:
    status, doc = await api.call("GET", "/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"})
    assert status == 200
    for path in ("/", "/ui/", "/ui/{name}"):
        assert doc["paths"][path]["get"]["security"] == [], path
    assert set(doc["paths"]["/"]["get"]["responses"]) == {"200"}
    assert set(doc["paths"]["/ui/{name}"]["get"]["responses"]) == {"200", "404"}
