"""The task types: one module each (`http`, `email`, `shell`, `internal`, `publish`) holding its
payload model and limits, free of aiohttp and gRPC. The scheduler validates task bodies with these
models; each worker executor parses the payload (secrets resolved) with the same one.

Adding a task type: a module here defining `TASK_TYPE`, one line in `_MODULES`, and its executor
in `zephyr/worker/executors/`.
"""

from __future__ import annotations

from zephyr.tasktypes import email, http, internal, publish, shell
from zephyr.tasktypes.fields import Model, TaskType

_MODULES = (http, email, shell, internal, publish)

# type name -> its TaskType, in the order the API documents them.
TASK_TYPES: dict[str, TaskType] = {module.TASK_TYPE.name: module.TASK_TYPE for module in _MODULES}


def payload_model(type_name: str) -> type[Model]:
    """The payload model of the task type `type_name` (KeyError for an unknown type)."""
    return TASK_TYPES[type_name].payload
