"""One executor per task type, all behind `base.Executor`; `build_executors` picks those that can run."""

from __future__ import annotations

from zephyr.config import WorkerConfig
from zephyr.worker.executors.base import Executor


def build_executors(config: WorkerConfig) -> dict[str, Executor]:
    """The executors this worker can actually run, by task type.

    `http` and `internal` always; `shell` only with ZEPHYR_SHELL_ALLOW; `email` only with
    ZEPHYR_SMTP_URL; `publish` only with ZEPHYR_PUBLISH_DATABASE_URL or ZEPHYR_REDIS_URL.
    """
    from zephyr.worker.destinations import DestinationPolicy
    from zephyr.worker.executors.email import EmailExecutor
    from zephyr.worker.executors.http import HttpExecutor
    from zephyr.worker.executors.internal import InternalExecutor
    from zephyr.worker.executors.publish import PublishExecutor
    from zephyr.worker.executors.shell import ShellExecutor

    policy = DestinationPolicy(allow_private=config.http_allow_private)
    executors: list[Executor] = [HttpExecutor(policy), InternalExecutor(config.imports)]
    if config.shell_allow:
        executors.append(ShellExecutor(config.shell_allow, config.shell_env_allow))
    if config.smtp_url:
        executors.append(EmailExecutor(config.smtp_url))
    if config.publish_database_url or config.redis_url:
        executors.append(PublishExecutor(config.publish_database_url, config.redis_url))
    return {executor.type: executor for executor in executors}
