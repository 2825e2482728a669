"""Every task type end to end through the running cluster (scheduler, coordinator and worker as
subprocesses on a real PostgreSQL), plus cancel, type offering, drain on SIGTERM and secrets."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from tests.support.cluster import Cluster, free_port, wait_until
from tests.support.smtp import Mailbox, port_of, start_smtp
from tests.support.worker import process_alive

pytestmark = pytest.mark.slow

SECRET = "zz-Very-Secret-Value-8f3a"


def redis_answers() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture
async def target() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """A real HTTP server that records requests and echoes their headers back in its body."""
    hits: list[dict[str, Any]] = []

    async def handle(request: web.Request) -> web.Response:
        hits.append({"path": request.path, "headers": dict(request.headers), "body": await request.text()})
        return web.json_response({"path": request.path, "headers": dict(request.headers)})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}", hits
    await runner.cleanup()


class Api:
    """The scheduler's HTTP API, as a test drives it."""

    def __init__(self, url: str, session: aiohttp.ClientSession) -> None:
        self.url = url
        self.session = session

    async def submit(self, body: dict[str, Any]) -> dict[str, Any]:
        async with self.session.post(f"{self.url}/v1/tasks", json=body) as resp:
            assert resp.status == 201, await resp.text()
            task: dict[str, Any] = await resp.json()
            return task

    async def get(self, path: str) -> Any:
        async with self.session.get(f"{self.url}{path}") as resp:
            assert resp.status == 200, await resp.text()
            return await resp.json()

    async def post(self, path: str) -> Any:
        async with self.session.post(f"{self.url}{path}") as resp:
            assert resp.status == 200, await resp.text()
            return await resp.json()

    async def wait_status(self, task_id: str, *statuses: str, timeout: float = 30) -> dict[str, Any]:
        async def reached() -> dict[str, Any] | None:
            task: dict[str, Any] = await self.get(f"/v1/tasks/{task_id}")
            return task if task["status"] in statuses else None

        result: dict[str, Any] = await wait_until(reached, timeout=timeout, what=f"task {task_id} {statuses}")
        return result

    async def logs(self, run_id: str) -> list[dict[str, Any]]:
        body = await self.get(f"/v1/runs/{run_id}/logs?limit=1000")
        logs: list[dict[str, Any]] = body["logs"]
        return logs


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def test_every_task_type_runs_end_to_end(
    database_url: str,
    tmp_path: Path,
    target: tuple[str, list[dict[str, Any]]],
    session: aiohttp.ClientSession,
) -> None:
    url, hits = target
    mailbox = Mailbox()
    smtp = await start_smtp(mailbox)
    listener = await asyncpg.connect(database_url)
    notified: asyncio.Queue[str] = asyncio.Queue()
    await listener.add_listener("app_e2e", lambda _c, _p, _ch, payload: notified.put_nowait(payload))
    env = {
        "ZEPHYR_SHELL_ALLOW": r"echo [a-z ]+|seq .+",
        "ZEPHYR_SMTP_URL": f"smtp://127.0.0.1:{port_of(smtp)}",
        "ZEPHYR_WORKER_IMPORTS": "tests.support.tasks.sample",
    }
    with_redis = redis_answers()
    if with_redis:
        env["ZEPHYR_REDIS_URL"] = "redis://127.0.0.1:6379/0"
    try:
        async with Cluster(database_url, tmp_path) as cluster:
            await cluster.start_scheduler()
            await cluster.start_coordinator()
            await cluster.start_worker(True, **env)
            api = Api(cluster.api_url, session)
            workers = (await api.get("/v1/workers"))["workers"]
            types = {"email", "http", "internal", "publish", "shell"}
            assert set(workers[0]["task_types"]) == types

            tasks = {
                "http": await api.submit(
                    {"type": "http", "payload": {"method": "POST", "url": f"{url}/hook", "body": {"a": 1}}}
                ),
                "email": await api.submit(
                    {
                        "type": "email",
                        "payload": {
                            "to": ["x@example.com"],
                            "subject": "hi",
                            "body": "text",
                            "html": "<b>html</b>",
                            "bcc": "y@example.com",
                        },
                    }
                ),
                "shell": await api.submit({"type": "shell", "payload": {"command": "seq 1 5"}}),
                "shell_refused": await api.submit(
                    {"type": "shell", "payload": {"command": "rm -rf /tmp/nothing"}, "max_attempts": 3}
                ),
                "shell_exit": await api.submit(
                    {"type": "shell", "payload": {"argv": ["seq", "1", "x"]}, "max_attempts": 1}
                ),
                "internal": await api.submit(
                    {"type": "internal", "payload": {"function": "tests.add", "args": [20, 22]}}
                ),
                "internal_fail": await api.submit(
                    {
                        "type": "internal",
                        "payload": {"function": "tests.boom", "args": ["kaput"]},
                        "max_attempts": 1,
                    }
                ),
                "publish_pg": await api.submit(
                    {
                        "type": "publish",
                        "payload": {"channel": "app_e2e", "message": {"m": 1}, "backend": "postgres"},
                    }
                ),
            }
            if with_redis:
                tasks["publish_redis"] = await api.submit(
                    {
                        "type": "publish",
                        "payload": {"channel": "zephyr-e2e", "message": "hello", "backend": "redis"},
                    }
                )
            done = {name: await api.wait_status(t["id"], "succeeded", "dead") for name, t in tasks.items()}

            assert done["http"]["status"] == "succeeded", done["http"]
            assert done["http"]["last_run"]["result"]["status"] == 200
            assert [h["path"] for h in hits] == ["/hook"] and json.loads(hits[0]["body"]) == {"a": 1}

            assert done["email"]["status"] == "succeeded", done["email"]
            (mail,) = mailbox.received
            assert mail.message["Subject"] == "hi" and sorted(mail.recipients) == [
                "x@example.com",
                "y@example.com",
            ]

            assert done["shell"]["status"] == "succeeded", done["shell"]
            lines = await api.logs(done["shell"]["last_run"]["id"])
            assert [x["line"] for x in lines if x["stream"] == "stdout"] == ["1", "2", "3", "4", "5"]

            refused = done["shell_refused"]
            assert refused["status"] == "dead" and refused["attempts"] == 1, refused
            assert refused["last_run"]["error"]["code"] == "not_allowed"

            exited = done["shell_exit"]
            assert exited["status"] == "dead", exited
            assert exited["last_run"]["error"]["code"] == "exit_code"
            assert exited["last_run"]["result"] == {"exit_code": 1}
            assert any(x["stream"] == "stderr" for x in await api.logs(exited["last_run"]["id"]))

            assert done["internal"]["status"] == "succeeded"
            assert done["internal"]["last_run"]["result"] == 42
            assert done["internal_fail"]["status"] == "dead"
            assert done["internal_fail"]["last_run"]["error"] == {
                "code": "exception",
                "message": "ValueError: kaput",
            }

            assert done["publish_pg"]["status"] == "succeeded", done["publish_pg"]
            assert await asyncio.wait_for(notified.get(), 5) == '{"m":1}'
            if with_redis:
                assert done["publish_redis"]["status"] == "succeeded", done["publish_redis"]
    finally:
        smtp.close()
        await listener.close()


async def test_cancel_kills_a_running_shell_process_group(
    database_url: str, tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    pid_file = tmp_path / "child.pid"
    async with Cluster(database_url, tmp_path) as cluster:
        await cluster.start_scheduler()
        await cluster.start_coordinator()
        await cluster.start_worker(ZEPHYR_SHELL_ALLOW="*")
        api = Api(cluster.api_url, session)
        task = await api.submit(
            {"type": "shell", "payload": {"command": f"sleep 300 & echo $! > {pid_file}; echo started; wait"}}
        )
        await wait_until(lambda: _async(pid_file.exists()), what="child started")
        await api.post(f"/v1/tasks/{task['id']}/cancel")
        cancelled = await api.wait_status(task["id"], "cancelled")
        runs = (await api.get(f"/v1/tasks/{cancelled['id']}/runs"))["runs"]
        await wait_until(lambda: _run_status(api, runs[0]["id"], "cancelled"), what="run cancelled")
        pid = int(pid_file.read_text())
        await wait_until(lambda: _async(not process_alive(pid)), what="child gone")


async def _run_status(api: Api, run_id: str, status: str) -> bool:
    run = await api.get(f"/v1/runs/{run_id}")
    return bool(run["status"] == status)


async def _async(value: bool) -> bool:
    return value


async def test_shell_waits_for_a_worker_that_offers_it(
    database_url: str, tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    async with Cluster(database_url, tmp_path) as cluster:
        await cluster.start_scheduler()
        await cluster.start_coordinator()
        await cluster.start_worker()
        api = Api(cluster.api_url, session)
        workers = (await api.get("/v1/workers"))["workers"]
        assert "shell" not in workers[0]["task_types"]
        shell = await api.submit({"type": "shell", "payload": {"command": "echo hello"}})
        noop = await api.submit({"type": "internal", "payload": {"function": "zephyr.noop"}})
        await api.wait_status(noop["id"], "succeeded")  # the worker is busy with work it can do...
        assert (await api.get(f"/v1/tasks/{shell['id']}"))["status"] == "pending"  # ...but not shell
        await cluster.start_worker(ZEPHYR_SHELL_ALLOW="echo .*")
        await api.wait_status(shell["id"], "succeeded")


async def test_sigterm_drains_running_runs_to_completion(
    database_url: str, tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    async with Cluster(database_url, tmp_path) as cluster:
        await cluster.start_scheduler()
        await cluster.start_coordinator()
        worker = await cluster.start_worker(ZEPHYR_DRAIN_S="30")
        api = Api(cluster.api_url, session)
        task = await api.submit(
            {"type": "internal", "payload": {"function": "zephyr.sleep", "kwargs": {"seconds": 5}}}
        )
        await api.wait_status(task["id"], "running")

        # `running` is committed before the assignment is pushed: wait until the worker itself
        # reports the run in a heartbeat, so the signal finds it executing, not still in transit.
        async def worker_has_it() -> bool:
            workers = (await api.get("/v1/workers"))["workers"]
            return any(w["id"] == worker.addr and w["running"] >= 1 for w in workers)

        await wait_until(worker_has_it, what="the worker to report the run")
        worker.signal(signal.SIGTERM)
        done = await api.wait_status(task["id"], "succeeded", "dead", "pending")
        assert done["status"] == "succeeded", done
        assert await asyncio.to_thread(worker.process.wait, 20) == 0


async def test_secrets_never_reach_a_table_or_any_process_output(
    database_url: str,
    tmp_path: Path,
    target: tuple[str, list[dict[str, Any]]],
    session: aiohttp.ClientSession,
) -> None:
    url, hits = target
    ref = {"$secret": "API_TOKEN"}
    async with Cluster(database_url, tmp_path) as cluster:
        await cluster.start_scheduler()
        await cluster.start_coordinator()
        await cluster.start_worker(
            ZEPHYR_SHELL_ALLOW="*",
            ZEPHYR_SECRET_API_TOKEN=SECRET,
            ZEPHYR_WORKER_IMPORTS="tests.support.tasks.sample",
            ZEPHYR_LOG_LEVEL="DEBUG",
        )
        api = Api(cluster.api_url, session)
        bodies: list[dict[str, Any]] = [
            # the target echoes the header back: the result body would carry the secret
            {"type": "http", "payload": {"url": f"{url}/s", "headers": {"X-Token": ref}}},
            {"type": "shell", "payload": {"command": 'echo "token is $T"; echo "$T" >&2', "env": {"T": ref}}},
            {
                "type": "shell",
                "payload": {"command": 'echo "$T"; exit 4', "env": {"T": ref}},
                "max_attempts": 1,
            },
            {"type": "internal", "payload": {"function": "tests.echo_secret", "args": [ref]}},
            {
                "type": "internal",
                "payload": {"function": "zephyr.fail", "kwargs": {"message": ref}},
                "max_attempts": 2,
            },
            {"type": "internal", "payload": {"function": "tests.boom", "args": [ref]}, "max_attempts": 1},
        ]
        tasks = [await api.submit(body) for body in bodies]
        for task in tasks:
            await api.wait_status(task["id"], "succeeded", "dead", timeout=60)
        assert hits and hits[0]["headers"]["X-Token"] == SECRET  # it really was resolved and used
        shell_logs = await api.logs((await api.get(f"/v1/tasks/{tasks[1]['id']}"))["last_run"]["id"])
        assert [x["line"] for x in shell_logs if x["stream"] != "system"] == ["token is ***", "***"]
        api_views = [await api.get(f"/v1/tasks/{t['id']}/runs") for t in tasks]
        assert SECRET not in json.dumps(api_views)
        assert (await api.get(f"/v1/tasks/{tasks[0]['id']}"))["payload"]["headers"]["X-Token"] == ref

    conn = await asyncpg.connect(database_url)
    try:
        tables = await conn.fetch(
            "SELECT quote_ident(table_schema) || '.' || quote_ident(table_name) AS name "
            "FROM information_schema.tables WHERE table_schema NOT IN ('pg_catalog', 'information_schema') "
            "AND table_type = 'BASE TABLE'"
        )
        names = [row["name"] for row in tables]
        assert any(name.endswith("task_logs") for name in names)
        for name in names:
            leaked = await conn.fetchval(
                f"SELECT count(*) FROM {name} t WHERE t::text LIKE '%' || $1 || '%'", SECRET
            )
            assert leaked == 0, f"the secret is stored in {name}"
        logged = await conn.fetchval("SELECT count(*) FROM task_logs")
        assert logged > 0
    finally:
        await conn.close()
    output = cluster.dump_logs()
    assert "registered" in output  # the output was captured at all
    assert SECRET not in output


async def test_worker_fails_over_to_another_coordinator_keeping_its_run(
    database_url: str, tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    async with Cluster(database_url, tmp_path) as cluster:
        await cluster.start_scheduler()
        first = await cluster.start_coordinator()
        second_port = free_port()
        # B is listed but not up yet, so the worker can only settle on A.
        await cluster.start_worker(ZEPHYR_COORDINATORS=f"{first.addr},127.0.0.1:{second_port}")
        await cluster.start_coordinator(port=str(second_port))
        api = Api(cluster.api_url, session)
        task = await api.submit(
            {"type": "internal", "payload": {"function": "zephyr.sleep", "kwargs": {"seconds": 3}}}
        )
        await api.wait_status(task["id"], "running")
        first.kill()
        done = await api.wait_status(task["id"], "succeeded", "dead", "pending", "cancelled")
        assert done["status"] == "succeeded", done
        assert done["attempts"] == 1 and done["last_run"]["attempt"] == 1  # the same run, not a retry
