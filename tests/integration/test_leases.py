"""Leases fenced to the worker's registration, across a database outage (issue 13)."""

from __future__ import annotations

import asyncpg
import grpc
import pytest

from tests.integration.test_coordinator_maintenance import register
from tests.support.cluster import wait_until
from tests.support.fake_worker import FakeWorker, running_coordinator
from zephyr.coordinator.completions import Backoff
from zephyr.coordinator.maintenance import Maintenance

BACKOFF = Backoff(0.05, 0.2)
# Long enough that neither rescue nor the silent-stream check acts during a test.
LONG_LEASE = {"ZEPHYR_LEASE_S": "60"}


async def worker_row(db: asyncpg.Pool, worker_id: str) -> asyncpg.Record:
    row = await db.fetchrow("SELECT status, coordinator_id FROM workers WHERE id = $1", worker_id)
    assert row is not None
    return row


async def test_a_late_renewal_never_revives_a_gone_worker(database_url: str, db: asyncpg.Pool) -> None:
    async with running_coordinator(database_url, **LONG_LEASE) as coord:
        worker = FakeWorker(coord.addr, "w1", heartbeat_s=None)
        await worker.connect()
        try:
            # Rescue took the worker for gone (say, its renewals were stuck in an outage) ...
            await db.execute("UPDATE workers SET status = 'gone' WHERE id = 'w1'")
            # ... then a renewal of its stream lands. Before the fix it made the worker active again
            # (with its runs already lost and retried elsewhere).
            await worker.heartbeat()
            await wait_until(worker.ended.wait, timeout=10, what="the stale stream closed")
            assert (await worker_row(db, "w1"))["status"] == "gone"
        finally:
            await worker.close()


async def test_a_renewal_from_a_stream_the_worker_left_does_not_point_it_back(
    database_url: str, db: asyncpg.Pool
) -> None:
    async with (
        running_coordinator(database_url, ZEPHYR_COORDINATOR_ID="old", **LONG_LEASE) as old,
        running_coordinator(database_url, ZEPHYR_COORDINATOR_ID="new", **LONG_LEASE) as new,
    ):
        left = FakeWorker(old.addr, "w1", heartbeat_s=None)
        await left.connect()
        try:
            async with FakeWorker(new.addr, "w1", heartbeat_s=None) as moved:
                await moved.heartbeat_acked()
                assert (await worker_row(db, "w1"))["coordinator_id"] == "new"
                # The old stream is still open on the old coordinator; a heartbeat arrives there.
                await left.heartbeat()
                await wait_until(left.ended.wait, timeout=10, what="the old stream closed")
                # Before the fix the old coordinator's renewal took the worker back: its runs
                # were then claimed for a stream the worker had left.
                assert (await worker_row(db, "w1"))["coordinator_id"] == "new"
        finally:
            await left.close()


async def test_a_second_live_worker_with_the_same_id_is_refused(database_url: str, db: asyncpg.Pool) -> None:
    async with running_coordinator(database_url) as coord, FakeWorker(coord.addr, "twin", pid=100):
        second = FakeWorker(coord.addr, "twin", pid=200)
        with pytest.raises((grpc.aio.AioRpcError, ConnectionError)):
            await second.connect()
        code, details = await second._call.code(), await second._call.details()
        await second.close()
        # Before the fix the second took over silently, and each marked the other's runs lost.
        assert code == grpc.StatusCode.ALREADY_EXISTS
        assert "twin" in details and "ZEPHYR_WORKER_ID" in details and "pid 100" in details
        assert (await db.fetchval("SELECT pid FROM workers WHERE id = 'twin'")) == 100


async def test_rescue_after_an_outage_waits_a_lease_for_live_streams_to_renew(db: asyncpg.Pool) -> None:
    maintenance = Maintenance(db, BACKOFF, lease_s=2, retention_s=3600)
    await maintenance.rescue_once()  # the clock ticks
    await register(db, "live", lease_s=0.001)  # its lease ran out during the outage
    # Nobody ticked for 10 s: the database was away (a lease is 2 s).
    await db.execute("UPDATE rescue_clock SET last_tick = now() - interval '10 seconds'")
    await maintenance.rescue_once()
    # Before the fix the worker was gone at once, its runs lost while its stream still beat.
    assert (await worker_row(db, "live"))["status"] == "active"
    # A lease after the database came back, a worker that has not renewed is gone.
    await db.execute("UPDATE rescue_clock SET resumed_at = now() - interval '3 seconds'")
    await maintenance.rescue_once()
    assert (await worker_row(db, "live"))["status"] == "gone"
