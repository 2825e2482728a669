"""zephyr.v1.WorkerGateway: one long-lived stream per worker connection.

Protocol (proto/zephyr/v1/worker.proto): register first; then heartbeats (each acked and each
renewing the worker's lease with one UPDATE), completions (applied in batches, each acked with
accepted or refused), log lines up; assignments, cancels and drain down. On (re)registration the
worker's runs in flight are reconciled with the database: runs still running under it are kept,
listed runs that are not come back in `abandon`, and running runs it did not list are lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import grpc

from zephyr import ids
from zephyr.coordinator.completions import CompletionBatcher, RunEnding
from zephyr.coordinator.logs_sink import LogSink
from zephyr.coordinator.registry import Registry, WorkerSession
from zephyr.db.pool import DB_ERRORS
from zephyr.db.queries import QUERIES
from zephyr.rpc import RUN_STATUS_OF_OUTCOME
from zephyr.runoutput import MAX_ERROR_CHARS, MESSAGE_BUDGET_BYTES, Unstorable, check_result_json, clean_text
from zephyr.tls import names_worker, peer_names
from zephyr.v1 import worker_pb2, worker_pb2_grpc

log = logging.getLogger(__name__)

DRAIN_GRACE_S = 30.0
MAX_MERGED_ITEMS = 1000
MAX_ERROR_CODE_CHARS = 64
NOT_STARTED = "not_started"  # a stopping worker handed the run back without starting it


class Gateway(worker_pb2_grpc.WorkerGatewayServicer):
    """Serves worker streams; shares the registry with the dispatcher."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        registry: Registry,
        batcher: CompletionBatcher,
        logs: LogSink,
        *,
        coordinator_id: str,
        heartbeat_s: float,
        lease_s: float,
        check_peer_identity: bool = False,
    ) -> None:
        self._pool = pool
        self._check_peer_identity = check_peer_identity
        self._registry = registry
        self._batcher = batcher
        self._logs = logs
        self._coordinator_id = coordinator_id
        self._heartbeat_s = heartbeat_s
        self._lease_s = lease_s
        self._background: set[asyncio.Task[Any]] = set()
        self._sweeps: set[asyncio.Task[None]] = set()  # cancel sweeps after a listener reconnect

    async def Connect(
        self,
        request_iterator: AsyncIterator[worker_pb2.WorkerMessage],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[worker_pb2.CoordinatorMessage]:
        messages = request_iterator.__aiter__()
        try:
            first = await messages.__anext__()
        except StopAsyncIteration:
            return
        reg = await self._valid_register(first, context)
        session = WorkerSession(reg.worker_id, reg.capacity, frozenset(reg.task_types))
        try:
            registered = await self._register(reg, session)
        except WorkerIdInUse as exc:
            log.error("%s", exc)
            await context.abort(grpc.StatusCode.ALREADY_EXISTS, str(exc))
        except DB_ERRORS as exc:
            log.warning("registering worker %s failed: %s", reg.worker_id, exc)
            await context.abort(grpc.StatusCode.UNAVAILABLE, "database unavailable; reconnect")
        previous = self._registry.get(reg.worker_id)
        if previous is not None:
            # The same worker reconnected here: its old stream is dead to it, close ours too.
            self._registry.remove(previous)
            previous.outbox.put_nowait(None)
        log.info(
            "worker %s registered (capacity %d, types %s, %d runs kept, %d abandoned)",
            reg.worker_id,
            reg.capacity,
            ",".join(sorted(reg.task_types)),
            len(session.outstanding),
            len(registered.abandon),
            extra={"worker_id": reg.worker_id},
        )
        yield worker_pb2.CoordinatorMessage(registered=registered)
        self._registry.add(session)
        reader = asyncio.create_task(self._read(session, messages), name=f"read-{reg.worker_id}")
        try:
            while (message := await self._next_down(session)) is not None:
                yield self._merge(message, session)
        finally:
            reader.cancel()
            self._registry.remove(session)
            log.info("worker %s stream closed", reg.worker_id, extra={"worker_id": reg.worker_id})

    async def _valid_register(
        self, first: worker_pb2.WorkerMessage, context: grpc.aio.ServicerContext[Any, Any]
    ) -> worker_pb2.Register:
        """The Register the stream opened with; the call is aborted, naming the field, when the first
        message is not one, is not valid, or names a worker the client certificate does not."""
        if not first.HasField("register"):
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "the first message must be register")
        reg = first.register
        if not reg.worker_id:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "register.worker_id: required")
        if reg.capacity < 1:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "register.capacity: must be at least 1")
        if self._check_peer_identity:
            names = peer_names(context)
            if not names_worker(names, reg.worker_id):
                log.warning(
                    "refused worker %r: its client certificate names %s", reg.worker_id, sorted(names)
                )
                await context.abort(
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"register.worker_id {reg.worker_id!r} is not a name of the client certificate "
                    f"(subject CN or DNS SAN, *.SUFFIX covering LABEL.SUFFIX: {', '.join(sorted(names)) or 'none'})",
                )
        return reg

    async def _next_down(self, session: WorkerSession) -> worker_pb2.CoordinatorMessage | None:
        """The next message to send down the stream, or None to close it: asked to, or the worker
        was silent past its lease."""
        while True:
            if session.carry:
                return session.carry.pop()
            try:
                return await asyncio.wait_for(session.outbox.get(), self._lease_s / 2)
            except TimeoutError:
                # A stream silent past the lease is a zombie (the worker may be frozen or gone
                # elsewhere): stop sending it work; a live worker reconnects.
                if time.monotonic() - session.last_heard > self._lease_s:
                    log.warning(
                        "worker %s silent for over %.1fs: closing its stream",
                        session.worker_id,
                        self._lease_s,
                    )
                    return None

    @staticmethod
    def _merge(
        message: worker_pb2.CoordinatorMessage, session: WorkerSession
    ) -> worker_pb2.CoordinatorMessage:
        """Fold queued assignment/ack/cancel messages into `message`: many items, one send, at most
        MAX_MERGED_ITEMS items and MESSAGE_BUDGET_BYTES bytes (a message over budget goes alone)."""
        size = message.ByteSize() if message.assignments else 0
        while not session.outbox.empty():
            nxt = session.outbox.get_nowait()
            if (
                nxt is None
                or nxt.HasField("registered")
                or nxt.HasField("drain")
                or (nxt.HasField("heartbeat_ack") and message.HasField("heartbeat_ack"))
                or len(message.assignments) + len(message.completion_acks) > MAX_MERGED_ITEMS
            ):
                session.carry.append(nxt)  # sent on its own, right after this message
                break
            if nxt.assignments:
                size += nxt.ByteSize()
                if size > MESSAGE_BUDGET_BYTES:
                    session.carry.append(nxt)
                    break
            message.MergeFrom(nxt)
        return message

    async def _register(self, reg: worker_pb2.Register, session: WorkerSession) -> worker_pb2.Registered:
        listed = {ref.run_id: ref.attempt for ref in reg.in_flight}
        session.registration = ids.new_id()
        async with self._pool.acquire() as conn:
            taken = await conn.fetchval(
                QUERIES["upsert_worker"],
                reg.worker_id,
                reg.host,
                reg.pid or None,
                reg.version,
                reg.capacity,
                list(reg.task_types),
                self._coordinator_id,
                self._lease_s,
                session.registration,
            )
            if taken is None:
                holder = await conn.fetchrow(QUERIES["worker_holder"], reg.worker_id)
                raise WorkerIdInUse(reg, holder)
            running = {
                str(r["id"]): (r["id"], r["attempt"])
                for r in await conn.fetch(QUERIES["running_runs_of_worker"], reg.worker_id)
            }
        abandon = []
        for run_id, attempt in listed.items():
            if run_id in running and running[run_id][1] == attempt:
                session.outstanding[run_id] = attempt
            else:
                abandon.append(worker_pb2.RunRef(run_id=run_id, attempt=attempt))
        unlisted = [
            RunEnding(
                raw_id, attempt, reg.worker_id, "lost", error={"code": "lost", "message": "not in flight"}
            )
            for run_id, (raw_id, attempt) in running.items()
            if run_id not in session.outstanding
        ]
        if unlisted:
            log.info("worker %s no longer runs %d of its runs: lost", reg.worker_id, len(unlisted))
            self._batcher.submit(unlisted)
        return worker_pb2.Registered(
            coordinator_id=self._coordinator_id,
            heartbeat_s=self._heartbeat_s,
            lease_s=self._lease_s,
            abandon=abandon,
        )

    async def _read(self, session: WorkerSession, messages: AsyncIterator[worker_pb2.WorkerMessage]) -> None:
        try:
            async for message in messages:
                session.last_heard = time.monotonic()
                if message.HasField("register"):
                    log.warning("worker %s sent register twice; ignored", session.worker_id)
                if message.HasField("heartbeat"):
                    self._heartbeat(session, message.heartbeat)
                if message.completions:
                    self._complete(session, message.completions)
                if message.logs:
                    self._logs.add(session.worker_id, message.logs)
        except grpc.aio.AioRpcError as exc:
            log.info("worker %s stream ended: %s", session.worker_id, exc.code())
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("worker %s stream failed", session.worker_id)
        finally:
            session.closed = True
            session.outbox.put_nowait(None)

    def _heartbeat(self, session: WorkerSession, beat: worker_pb2.Heartbeat) -> None:
        """Ack at once (the ack proves the stream lives), renew the lease in the background: a slow
        database never stalls the stream. One renewal in flight per worker; a beat arriving while
        one runs is folded into the next."""
        if beat.draining:
            session.draining = True
        session.send(worker_pb2.CoordinatorMessage(heartbeat_ack=worker_pb2.HeartbeatAck(seq=beat.seq)))
        if session.renewal is None or session.renewal.done():
            session.renewal = asyncio.create_task(self._renew(session, beat))

    async def _renew(self, session: WorkerSession, beat: worker_pb2.Heartbeat) -> None:
        """Renew the lease of the stream's own registration. None left (rescue took the worker for
        gone, or it registered again elsewhere): the stream is stale and is closed, so that a live
        worker registers afresh and learns which of its runs are still its own."""
        try:
            async with self._pool.acquire() as conn:
                renewed = await conn.fetchval(
                    QUERIES["heartbeat"],
                    session.worker_id,
                    self._lease_s,
                    beat.running,
                    beat.free_slots,
                    beat.load,
                    session.draining,
                    self._coordinator_id,
                    session.registration,
                )
        except DB_ERRORS as exc:
            log.warning("lease of worker %s not renewed: %s", session.worker_id, exc)
            return
        if renewed is None and not session.closed:
            log.warning(
                "worker %s: its registration here is over (gone, or registered again); closing",
                session.worker_id,
            )
            self._registry.remove(session)
            session.outbox.put_nowait(None)

    def _complete(self, session: WorkerSession, completions: Any) -> None:
        endings = [completion_ending(session.worker_id, c) for c in completions]
        valid = [e for e in endings if e.run_id is not None]
        futures = self._batcher.submit(valid)
        if sum(session.report_finished(c.run_id) for c in completions):
            self._registry.freed()  # the worker's slots are free now; the commit follows
        task = asyncio.create_task(self._ack(session, [c.run_id for c in completions], endings, futures))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _ack(
        self,
        session: WorkerSession,
        run_ids: list[str],
        endings: list[RunEnding],
        futures: list[asyncio.Future[bool]],
    ) -> None:
        results = iter(await asyncio.gather(*futures))
        acks = []
        free = session.free
        for run_id, ending in zip(run_ids, endings, strict=True):
            accepted = next(results) if ending.run_id is not None else False
            acks.append(worker_pb2.CompletionAck(run_id=run_id, accepted=accepted))
            session.settle(run_id)  # its slot was freed when the completion arrived, or is now
        session.send(worker_pb2.CoordinatorMessage(completion_acks=acks))
        if session.free > free:  # slots held back while more finished runs awaited their commit
            self._registry.freed()

    def on_cancel_notify(self, payload: str | None) -> None:
        """`zephyr_cancel`: send a cancel for the run it names if that run's worker streams here.
        No payload (the listener reconnected, notifications may have been missed): re-send every
        requested cancel of the workers here, in the background."""
        if payload is None:
            sweep = asyncio.create_task(self._resend_cancels_logged(), name="cancel-sweep")
            self._sweeps.add(sweep)
            sweep.add_done_callback(self._sweeps.discard)
            return
        with contextlib.suppress(ValueError):
            uuid.UUID(payload)
            session = self._registry.find_run(payload)
            if session is not None:
                self.cancel([(payload, session.outstanding[payload], session.worker_id)])

    def on_drain_notify(self, payload: str | None) -> None:
        """`zephyr_drain`: drain the worker it names if that worker streams here."""
        if payload:
            self.drain(payload)

    async def resend_cancels(self) -> int:
        """Re-send cancels for cancel-requested runs of workers connected here; returns cancels sent."""
        workers = [s.worker_id for s in self._registry.sessions()]
        if not workers:
            return 0
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(QUERIES["cancel_requested_runs"], workers)
        return self.cancel([(str(r["id"]), r["attempt"], r["worker_id"]) for r in rows])

    async def _resend_cancels_logged(self) -> None:
        try:
            await self.resend_cancels()
        except DB_ERRORS as exc:
            log.warning("background job failed: %s", exc)

    async def close(self) -> None:
        """Cancel the cancel sweeps still running (the streams end with the server)."""
        for sweep in self._sweeps:
            sweep.cancel()
        await asyncio.gather(*self._sweeps, return_exceptions=True)

    def sessions(self) -> list[WorkerSession]:
        """The worker streams registered here."""
        return self._registry.sessions()

    def drain(self, worker_id: str) -> bool:
        """Send Drain to `worker_id` if its stream is here; it then gets no new runs."""
        session = self._registry.get(worker_id)
        if session is None:
            return False
        session.draining = True
        session.send(worker_pb2.CoordinatorMessage(drain=worker_pb2.Drain(grace_s=DRAIN_GRACE_S)))
        log.info("draining worker %s", worker_id)
        return True

    def cancel(self, refs: list[tuple[str, int, str]]) -> int:
        """Send cancels for (run id, attempt, worker id) whose worker's stream is here."""
        by_worker: dict[str, list[worker_pb2.RunRef]] = {}
        for run_id, attempt, worker_id in refs:
            session = self._registry.get(worker_id)
            if session is not None and run_id in session.outstanding:
                by_worker.setdefault(worker_id, []).append(worker_pb2.RunRef(run_id=run_id, attempt=attempt))
        for worker_id, cancels in by_worker.items():
            session = self._registry.get(worker_id)
            if session is not None:
                session.send(worker_pb2.CoordinatorMessage(cancels=cancels))
        return sum(len(c) for c in by_worker.values())


class WorkerIdInUse(Exception):
    """Another live process holds the worker id this stream registers."""

    def __init__(self, reg: worker_pb2.Register, holder: Any) -> None:
        where = (
            ""
            if holder is None
            else (
                f" by host {holder['host']} pid {holder['pid']} on coordinator {holder['coordinator_id']},"
                f" lease for {max(0.0, holder['lease_left_s'] or 0.0):.1f}s more"
            )
        )
        super().__init__(
            f"register.worker_id: {reg.worker_id!r} is in use{where}; this process (host {reg.host} pid"
            f" {reg.pid}) is refused: give each worker its own ZEPHYR_WORKER_ID"
        )


def completion_ending(worker_id: str, c: worker_pb2.Completion) -> RunEnding:
    """The RunEnding a worker's completion claims. A result the database would refuse (too large,
    NaN, NUL, lone surrogates) fails that run alone, not retryable, with the reason's error code;
    error text is cut and cleaned so that it is always storable."""
    succeeded = c.outcome == worker_pb2.RUN_OUTCOME_SUCCEEDED
    status = RUN_STATUS_OF_OUTCOME.get(c.outcome, "failed")
    retryable = c.retryable or succeeded
    error = None
    if not succeeded and (c.error_code or c.error_message):
        error = {
            "code": clean_text(c.error_code, MAX_ERROR_CODE_CHARS) or "failed",
            "message": clean_text(c.error_message, MAX_ERROR_CHARS),
        }
    charged = True
    if c.outcome == worker_pb2.RUN_OUTCOME_CANCELLED and c.error_code == NOT_STARTED:
        # Handed back unstarted by a stopping worker: like a run never delivered.
        status, retryable, charged = "lost", True, False
    result = None
    if c.result_json:
        try:
            result = check_result_json(c.result_json)
        except Unstorable as exc:
            status, retryable = "failed", False
            error = {"code": exc.code, "message": str(exc)}
    return RunEnding(
        run_id=_run_uuid(c.run_id),
        attempt=c.attempt,
        worker_id=worker_id,
        status=status,
        result=result,
        error=error,
        retryable=retryable,
        duration_s=c.duration_s or None,
        charged=charged,
    )


def _run_uuid(text: str) -> Any:
    try:
        return uuid.UUID(text)
    except ValueError:
        return None
