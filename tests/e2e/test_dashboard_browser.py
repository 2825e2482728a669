"""The web dashboard in a real browser (headless Chromium, Selenium) against a real cluster
(scheduler with API tokens, coordinator, two workers, PostgreSQL): the token prompt, the overview,
submitting from the form (and the API's own validation messages), a shell task's logs followed
live, cancel, the dead letter's retry, keyset pages, pause and resume, drain, axe-core on every
page, and a screenshot of each page in test-artifacts/ui/.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.support.browser import axe_source, axe_violations, chromium
from tests.support.cluster import Cluster, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "ui"
TOKEN = "ui-test-token-0f3c9a"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SECRET_VALUE = "s3cret-value-never-shown"
SHELL_WORKER = "ui-worker-shell"
SPARE_WORKER = "ui-worker-spare"
WAIT_S = 30.0


class Page:
    """The browser on the dashboard, with the waits and checks the test repeats."""

    def __init__(self, driver: WebDriver, base: str, axe: str) -> None:
        self.driver = driver
        self.base = base
        self.axe = axe
        self.checked: list[str] = []

    def open(self, hash_path: str) -> None:
        self.driver.get(f"{self.base}/{hash_path}")

    def wait(self, condition: Callable[[WebDriver], Any], what: str) -> Any:
        # The page redraws its tables as they refresh: an element found a moment ago may be gone.
        waiter = WebDriverWait(
            self.driver, WAIT_S, poll_frequency=0.1, ignored_exceptions=(StaleElementReferenceException,)
        )
        return waiter.until(condition, f"waiting for {what}")

    def click(self, css: str) -> None:
        """Click the element `css` names, finding it again if a refresh replaced it meanwhile."""

        def clicked(driver: WebDriver) -> bool:
            driver.find_element(By.CSS_SELECTOR, css).click()
            return True

        self.wait(clicked, f"a click on {css}")

    def find(self, css: str) -> WebElement:
        found: WebElement = self.wait(lambda d: d.find_element(By.CSS_SELECTOR, css), css)
        return found

    def ids(self, css: str, attribute: str) -> set[str]:
        values: list[str] = self.driver.execute_script(
            "return Array.from(document.querySelectorAll(arguments[0])).map((e) => e.getAttribute(arguments[1]));",
            css,
            attribute,
        )
        return set(values)

    def text_of(self, css: str) -> str:
        """The text of every element `css` names, read in one step in the page."""
        text: str = self.driver.execute_script(
            "return Array.from(document.querySelectorAll(arguments[0])).map((e) => e.innerText).join(' ');",
            css,
        )
        return text

    def wait_text(self, css: str, text: str) -> None:
        self.wait(lambda d: text in self.text_of(css), f"{text!r} in {css}")

    def fill(self, css: str, value: str) -> None:
        element = self.find(css)
        element.clear()
        element.send_keys(value)

    def submit_form(self, name: str, fields: dict[str, str]) -> str:
        """Fill the submit form's `fields` (CSS selector -> text) and the name, submit, and return
        the id of the task whose page the browser lands on."""
        for css, value in {**fields, "#f-name": name}.items():
            self.fill(css, value)
        self.click("#submit-task")
        self.wait(lambda d: "#/tasks/" in d.current_url, f"the page of {name}")
        return self.driver.current_url.rsplit("/", 1)[1]

    def choose(self, css: str, value: str) -> None:
        """Pick `value` in the select `css` names, once it offers it (the task filters fill their
        choices from the API's OpenAPI document)."""
        self.find(f"{css} option[value='{value}']")
        Select(self.find(css)).select_by_value(value)

    def shot(self, name: str) -> Path:
        """The whole page (not only the window) as test-artifacts/ui/<name>."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / name
        size = self.driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 6000), "scale": 1}
        shot = self.driver.execute_cdp_cmd(
            "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip}
        )
        path.write_bytes(base64.b64decode(shot["data"]))
        return path

    def accessible(self, page: str) -> None:
        violations = axe_violations(self.driver, self.axe)
        assert violations == [], f"{page}: {json.dumps(violations, indent=1)}"
        self.checked.append(page)

    def assert_no_secret(self) -> None:
        source = self.driver.page_source
        assert SECRET_VALUE not in source and TOKEN not in source


class Api:
    def __init__(self, base: str, session: aiohttp.ClientSession) -> None:
        self.base = base
        self.session = session

    async def call(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        async with self.session.request(method, self.base + path, headers=AUTH, **kwargs) as resp:
            return resp.status, await resp.json()

    async def submit(self, task: dict[str, Any]) -> dict[str, Any]:
        status, body = await self.call("POST", "/v1/tasks", json=task)
        assert status == 201, body
        return body  # type: ignore[no-any-return]

    async def task(self, task_id: str) -> dict[str, Any]:
        status, body = await self.call("GET", f"/v1/tasks/{task_id}")
        assert status == 200, body
        return body  # type: ignore[no-any-return]

    async def wait_status(self, task_id: str, *statuses: str) -> dict[str, Any]:
        async def reached() -> dict[str, Any] | None:
            task = await self.task(task_id)
            return task if task["status"] in statuses else None

        found: dict[str, Any] = await wait_until(reached, timeout=WAIT_S, what=f"task {task_id} {statuses}")
        return found


@pytest.fixture
async def cluster(database_url: str, tmp_path: Path) -> AsyncIterator[Cluster]:
    async with Cluster(database_url, tmp_path, ZEPHYR_API_TOKENS=TOKEN) as cluster:
        await cluster.start_scheduler()
        await cluster.start_coordinator()
        await cluster.start_worker(
            ZEPHYR_WORKER_ID=SHELL_WORKER,
            ZEPHYR_SHELL_ALLOW="*",
            ZEPHYR_WORKER_CONCURRENCY="8",
            ZEPHYR_SECRET_UI_SECRET=SECRET_VALUE,
        )
        await cluster.start_worker(ZEPHYR_WORKER_ID=SPARE_WORKER, ZEPHYR_WORKER_CONCURRENCY="4")
        yield cluster


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    with chromium(tmp_path / "chromium-profile", tmp_path / "chromedriver.log") as driver:
        yield driver


async def test_dashboard_in_a_real_browser(cluster: Cluster, browser: WebDriver, tmp_path: Path) -> None:
    page = Page(browser, cluster.api_url, axe_source())
    async with aiohttp.ClientSession() as session:
        api = Api(cluster.api_url, session)

        # --- Token prompt: asked for, a wrong token refused, the right one kept in the session only.
        page.open("")
        page.find("#token-input")
        page.shot("01-token-prompt.png")
        page.accessible("token prompt")
        page.fill("#token-input", "not-the-token")
        page.click("#token-form button[type=submit]")
        page.find("#token-refused")
        page.fill("#token-input", TOKEN)
        page.click("#token-form button[type=submit]")
        page.find("#cards .card-value")
        assert TOKEN not in browser.current_url
        assert browser.execute_script("return sessionStorage.getItem('zephyr.api_token')") == TOKEN
        assert browser.execute_script("return localStorage.length") == 0

        # --- Overview: work for a type no worker offers (email) is highlighted; charts fill up.
        email = await api.submit(
            {
                "type": "email",
                "name": "ui-unserved",
                "payload": {"to": "a@example.com", "subject": "hi", "body": "hello"},
            }
        )
        status, _ = await api.call(
            "POST",
            "/v1/tasks/batch",
            json={"tasks": [{"type": "internal", "payload": {"function": "zephyr.noop"}} for _ in range(40)]},
        )
        assert status == 201
        page.wait_text("#unserved", "email")
        page.wait_text("#unserved-news", "Work no worker can run: email")
        page.wait_text("#queue-by-type", "email")
        # A few polls (2 s apart), so each chart has a line of five points.
        page.wait(
            lambda d: _points(d, "#chart-throughput polyline") >= 5, "five points on the throughput chart"
        )
        page.wait_text("#card-workers", "2")
        page.shot("02-overview.png")
        page.accessible("overview")
        await api.call("POST", f"/v1/tasks/{email['id']}/cancel")
        page.wait(lambda d: "email" not in page.text_of("#unserved"), "the email highlight to clear")

        # --- Submit form: the API's own messages beside the field they name.
        page.open("#/submit")
        page.choose("#f-type", "internal")
        page.find("#f-payload-function")
        # The hints are the API's descriptions: its backticked names show as code, not backticks.
        assert "`" not in page.text_of(".hint"), page.text_of(".hint")
        assert "@zephyr.task(name)" in page.text_of(".hint code")
        page.shot("03-submit-form.png")
        page.accessible("submit form")
        page.click("#submit-task")
        _, expected = await api.call("POST", "/v1/tasks", json={"type": "internal", "payload": {}})
        page.wait_text("#api-error", expected["error"]["message"])
        assert page.find("#f-payload-function").get_attribute("aria-invalid") == "true"
        assert page.text_of("#f-payload-function-error") == expected["error"]["message"]
        page.fill("#f-payload-function", "zephyr.echo")
        page.choose("#f-schedule-kind", "cron")
        page.fill("#f-schedule-cron", "every tuesday")
        page.click("#submit-task")
        _, expected = await api.call(
            "POST",
            "/v1/tasks",
            json={
                "type": "internal",
                "payload": {"function": "zephyr.echo"},
                "schedule": {"cron": "every tuesday"},
            },
        )
        assert expected["error"]["field"] == "schedule.cron"
        page.wait_text("#f-schedule-cron-error", expected["error"]["message"])
        assert page.find("#f-schedule-cron").get_attribute("aria-invalid") == "true"
        page.shot("04-submit-error.png")
        page.accessible("submit form with an error")

        # --- ... then a valid one: it appears and finishes.
        page.choose("#f-schedule-kind", "now")
        task_id = page.submit_form("ui-form-echo", {"#f-payload-kwargs": '{"greeting": "from the form"}'})
        page.wait_text("h1", "succeeded")
        page.wait_text("#runs-table", "from the form")
        task = await api.task(task_id)
        assert task["name"] == "ui-form-echo" and task["status"] == "succeeded"
        assert task["payload"] == {"function": "zephyr.echo", "kwargs": {"greeting": "from the form"}}
        page.open("#/tasks?name=ui-form-echo")
        page.wait_text("#tasks", "ui-form-echo")

        # --- A shell task's logs, live: the first line shows while the run still waits for a file.
        go = tmp_path / "go"
        page.open("#/submit")
        page.choose("#f-type", "shell")
        command = f'echo "first line, greeting=$GREETING"; while [ ! -e {go} ]; do sleep 0.05; done; echo "second line"'
        shell_id = page.submit_form(
            "ui-live-logs",
            {"#f-payload-command": command, "#f-payload-env": '{"GREETING": {"$secret": "UI_SECRET"}}'},
        )
        page.wait_text("#log-lines", "first line, greeting=***")
        page.wait_text("#log-state", "Following live")
        assert (await api.task(shell_id))["status"] == "running"
        assert "second line" not in page.text_of("#log-lines")
        page.wait_text("#task-facts", '"$secret": "UI_SECRET"')
        page.assert_no_secret()
        page.shot("05-live-logs.png")
        page.accessible("task detail, logs following")
        go.touch()
        page.wait_text("#log-lines", "second line")
        page.wait_text("#log-state", "Run ended: succeeded")
        page.wait_text("h1", "succeeded")
        page.assert_no_secret()

        # --- Cancel a running task.
        sleeper = await api.submit(
            {"type": "shell", "name": "ui-cancel-me", "payload": {"command": "sleep 60"}}
        )
        page.open(f"#/tasks/{sleeper['id']}")
        page.wait_text("h1", "running")
        page.click("#task-actions button[data-action=cancel]")
        page.wait_text("h1", "cancelled")
        page.wait_text("#notices", "cancel done")
        await api.wait_status(sleeper["id"], "cancelled")

        # --- The dead letter, and Retry: the task fails once (no retries left), then succeeds.
        mark = tmp_path / "failed-once"
        command = f'test -e {mark} || {{ touch {mark}; echo "failing on purpose" >&2; exit 3; }}'
        flaky = await api.submit(
            {"type": "shell", "name": "ui-flaky", "max_attempts": 1, "payload": {"command": command}}
        )
        await api.wait_status(flaky["id"], "dead")
        page.open("#/tasks?status=dead")
        row = f"#tasks tr[data-task-id='{flaky['id']}']"
        page.wait_text(row, "ui-flaky")
        page.shot("06-dead-letter.png")
        page.accessible("dead letter")
        page.click(f"{row} button[data-action=retry]")
        page.wait_text("#notices", "retry done")
        done = await api.wait_status(flaky["id"], "succeeded")
        assert done["last_run"]["attempt"] == 1
        status, runs = await api.call("GET", f"/v1/tasks/{flaky['id']}/runs")
        assert [r["status"] for r in runs["runs"]] == ["succeeded", "failed"]
        page.open(f"#/tasks/{flaky['id']}")
        page.wait_text("#runs-table", "exit_code")
        page.shot("07-task-detail.png")
        page.accessible("task detail, runs")

        # --- The list: keyset pages, a filter, pause and resume.
        later = {
            "type": "internal",
            "name": "ui-page",
            "payload": {"function": "zephyr.noop"},
            "schedule": {"delay_s": 3600},
        }
        status, batch = await api.call("POST", "/v1/tasks/batch", json={"tasks": [later] * 30})
        assert status == 201
        page.open("#/tasks?name=ui-page")
        rows = "#tasks tbody tr"
        page.wait(lambda d: len(d.find_elements(By.CSS_SELECTOR, rows)) == 25, "a first page of 25")
        first = page.ids(rows, "data-task-id")
        page.shot("08-tasks.png")
        page.accessible("task list")
        page.click("#page-next")
        page.wait(lambda d: len(d.find_elements(By.CSS_SELECTOR, rows)) == 5, "a second page of 5")
        second = page.ids(rows, "data-task-id")
        assert first | second == set(batch["ids"]) and not first & second
        assert page.find("#page-next").get_attribute("disabled") is not None
        paused_id = sorted(second)[0]
        page.click(f"#tasks tr[data-task-id='{paused_id}'] button[data-action=pause]")
        await api.wait_status(paused_id, "paused")
        page.wait(
            lambda d: d.find_elements(
                By.CSS_SELECTOR, f"tr[data-task-id='{paused_id}'] button[data-action=resume]"
            ),
            "Resume",
        )
        page.click(f"#tasks tr[data-task-id='{paused_id}'] button[data-action=resume]")
        await api.wait_status(paused_id, "pending")
        page.choose("#filter-status", "succeeded")
        page.fill("#filter-name", "")
        page.click("form.filters button[type=submit]")
        page.wait(lambda d: "status=succeeded" in d.current_url, "the status filter in the address")
        page.wait_text("#tasks", "ui-live-logs")
        assert "ui-cancel-me" not in page.text_of("#tasks")

        # --- Workers: drain the spare one.
        page.open("#/workers")
        spare = f"#workers tr[data-worker-id='{SPARE_WORKER}']"
        page.wait_text(spare, "active")
        page.wait_text(f"#workers tr[data-worker-id='{SHELL_WORKER}']", "shell")
        page.shot("09-workers.png")
        page.accessible("workers")
        # Keyboard: the table refreshes with each heartbeat and the focused button keeps focus;
        # Enter on it drains the worker.
        browser.execute_script(
            "document.querySelector(arguments[0]).focus(); document.querySelector('#workers').dataset.old = '1';",
            f"{spare} button[data-action=drain]",
        )
        page.wait(
            lambda d: d.execute_script("return !document.querySelector('#workers[data-old]')"), "a refresh"
        )
        focused = browser.execute_script("return document.activeElement.dataset.focusKey")
        assert focused == f"drain:{SPARE_WORKER}"
        browser.switch_to.active_element.send_keys(Keys.ENTER)
        page.wait_text(spare, "draining")
        status, workers = await api.call("GET", "/v1/workers")
        assert {w["id"]: w["status"] for w in workers["workers"]} == {
            SHELL_WORKER: "active",
            SPARE_WORKER: "draining",
        }
        spare_process = next(s for s in cluster.services if s.addr == SPARE_WORKER)

        async def drain_received() -> bool:
            return "coordinator asked to drain" in spare_process.output()

        await wait_until(drain_received, what="the worker to get Drain")
        page.assert_no_secret()

    assert page.checked == [
        "token prompt",
        "overview",
        "submit form",
        "submit form with an error",
        "task detail, logs following",
        "dead letter",
        "task detail, runs",
        "task list",
        "workers",
    ]


def _points(driver: WebDriver, css: str) -> int:
    """Points of the first SVG polyline matching `css` (0 when none is drawn yet)."""
    count: int = driver.execute_script(
        "const line = document.querySelector(arguments[0]);"
        "return line ? line.getAttribute('points').trim().split(' ').length : 0;",
        css,
    )
    return count
