"""`shell` runs: a command in its own process group, its output streamed line by line.

The payload is `zephyr.tasktypes.shell.ShellPayload`, parsed once secrets are resolved: `command`
(run by `/bin/sh -c`) or `argv` (run directly), `env` (added to the worker's environment minus
every `ZEPHYR_*` variable, so the worker's own secrets and tokens never reach a command unless a
payload passes them explicitly) and `cwd`.

The command (the string, or the argv joined shell-style; with `cwd`, `cd <cwd> && ` before it) must
fully match ZEPHYR_SHELL_ALLOW (`*` allows all); `env` names that change what runs need
ZEPHYR_SHELL_ENV_ALLOW and `cwd` must be absolute (`zephyr.worker.shell_policy`). Otherwise the run
fails at once with code `not_allowed`, not retryable.
stdout and stderr become log lines as they appear. Exit 0 succeeds; another exit fails with code
`exit_code` and `{"exit_code": n}` as the result (a negative n is the killing signal).
The command gets the run's W3C trace context as `TRACEPARENT` (OpenTelemetry's environment
carrier) when the run has one, unless the payload's `env` sets `TRACEPARENT` itself.
On timeout or cancel the whole process group gets SIGTERM, then SIGKILL after a short grace,
so no child survives its run.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
from typing import Any

from zephyr.errors import TaskFailed
from zephyr.tasktypes.shell import ShellPayload
from zephyr.worker.executors.base import (
    LogStream,
    RunContext,
    RunFailure,
    parse_resolved,
    text,
    text_map,
    texts,
)
from zephyr.worker.reaper import REAPER
from zephyr.worker.shell_policy import ShellPolicy

KILL_GRACE_S = 2.0
READ_CHUNK_BYTES = 64 * 1024
# A "line" longer than this is split: one runaway line must not hold unbounded memory.
MAX_LINE_BYTES = 16 * 1024


def command_text(command: ShellPayload) -> tuple[list[str], str]:
    """(argv to execute, the text the allow pattern is matched against)."""
    if command.command is not None:
        line = text(command.command)
        return ["/bin/sh", "-c", line], line
    argv = texts(command.argv)
    return argv, shlex.join(argv)


TRACEPARENT_ENV = "TRACEPARENT"


class ShellExecutor:
    """Executes `shell` payloads whose command the allow pattern accepts."""

    type = "shell"

    def __init__(self, allow: str, env_allow: str | None = None) -> None:
        self._policy = ShellPolicy(allow, env_allow)

    def allowed(self, text: str, cwd: str | None = None) -> bool:
        """True when ZEPHYR_SHELL_ALLOW accepts the whole command text (see ShellPolicy.allowed)."""
        return self._policy.allowed(text, cwd)

    async def execute(self, ctx: RunContext, payload: dict[str, Any]) -> Any:
        command = parse_resolved(ShellPayload, payload)
        argv, line = command_text(command)
        extra_env = text_map(command.env)
        cwd = text(command.cwd) if command.cwd is not None else None
        self._policy.check_env(extra_env)
        self._policy.check_cwd(cwd)
        if not self.allowed(line, cwd):
            raise TaskFailed(
                "payload.command: refused by this worker's ZEPHYR_SHELL_ALLOW pattern",
                code="not_allowed",
                retryable=False,
            )
        env = {k: v for k, v in os.environ.items() if not k.startswith("ZEPHYR_")}
        if ctx.traceparent:
            env[TRACEPARENT_ENV] = ctx.traceparent
        env.update(extra_env)
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=env,
                cwd=cwd,
                start_new_session=True,
            )
        except FileNotFoundError as exc:
            field = "cwd" if cwd and exc.filename == cwd else "argv"
            raise RunFailure(
                f"payload.{field}: {exc.strerror}: {exc.filename}", code="not_found", retryable=False
            ) from None
        except OSError as exc:
            raise RunFailure(f"cannot start command: {exc.strerror}", code="spawn_failed") from None
        REAPER.track(proc.pid)  # its group dies with the worker, even on SIGKILL
        try:
            return await self._follow(ctx, proc)
        finally:
            REAPER.untrack(proc.pid)

    async def _follow(self, ctx: RunContext, proc: asyncio.subprocess.Process) -> Any:
        """Stream the output of `proc` to the run's logs until it ends; kill its group at the end."""
        await ctx.log(LogStream.SYSTEM, f"started pid {proc.pid}")
        assert proc.stdout is not None and proc.stderr is not None
        readers = [
            asyncio.create_task(_pump(proc.stdout, LogStream.STDOUT, ctx)),
            asyncio.create_task(_pump(proc.stderr, LogStream.STDERR, ctx)),
        ]
        try:
            code = await proc.wait()
            # The leader is gone; children it left behind could hold the pipes open forever.
            _killpg(proc.pid, signal.SIGKILL)
            await asyncio.gather(*readers)
        except BaseException:
            await asyncio.shield(_terminate(proc))
            for reader in readers:
                reader.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
            raise
        if code != 0:
            raise RunFailure(f"exited with status {code}", code="exit_code", result={"exit_code": code})
        return {"exit_code": 0}

    async def close(self) -> None:
        """Nothing pooled (the process group watchdog lives as long as the process)."""


def _killpg(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


async def _terminate(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM the process group, SIGKILL it after KILL_GRACE_S, reap the leader."""
    _killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(proc.wait(), KILL_GRACE_S)
    _killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        await proc.wait()


async def _pump(reader: asyncio.StreamReader, stream: int, ctx: RunContext) -> None:
    """Turn bytes from `reader` into log lines until EOF.

    A line longer than MAX_LINE_BYTES keeps its first MAX_LINE_BYTES (marked as cut) and the rest
    of it is dropped: one runaway line must not hold unbounded memory.
    """
    pending = b""
    skipping = False  # inside the dropped rest of an over-long line
    while True:
        chunk = await reader.read(READ_CHUNK_BYTES)
        if not chunk:
            break
        pending += chunk
        if skipping:
            end = pending.find(b"\n")
            if end < 0:
                pending = b""
                continue
            pending = pending[end + 1 :]
            skipping = False
        *lines, pending = pending.split(b"\n")
        for line in lines:
            await _emit(ctx, stream, line)
        if len(pending) > MAX_LINE_BYTES:
            await _emit(ctx, stream, pending)
            pending = b""
            skipping = True
    if pending:
        await _emit(ctx, stream, pending)


async def _emit(ctx: RunContext, stream: int, line: bytes) -> None:
    if len(line) > MAX_LINE_BYTES:
        await ctx.log(stream, line[:MAX_LINE_BYTES].decode("utf-8", "replace"), cut=True)
    else:
        await ctx.log(stream, line.rstrip(b"\r").decode("utf-8", "replace"))
