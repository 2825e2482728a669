"""`http`: one HTTP request; success when the status matches `expect_status` (default any 2xx).

Payload: `url` (absolute http:// or https://, as `urls.URL_PATTERN` says), `method` (default GET, any case), `headers`, `body`
(a string is sent as is, anything else as JSON), `expect_status` (a status or a list of them),
`timeout_s` (the request's own limit, under the run's), `follow_redirects` (default true). Strings
may be secret references.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, PlainValidator, WithJsonSchema, field_validator

from zephyr.tasktypes.fields import Model, Str, TaskType, any_case, text_or_secret, whole_number
from zephyr.tasktypes.urls import MAX_URL_CHARS, URL_PATTERN, url_problem

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
MAX_METHOD_CHARS = 16
MAX_REQUEST_TIMEOUT_S = 7 * 24 * 3600.0
METHOD_PATTERN = f"^(?:{any_case(*METHODS)})$"


def _status_codes(value: Any) -> int | list[int]:
    codes = [whole_number(code) for code in value] if isinstance(value, list) else [whole_number(value)]
    if not codes:
        raise ValueError("must not be an empty list")
    for code in codes:
        if isinstance(code, bool) or not isinstance(code, int) or not 100 <= code <= 599:
            raise ValueError("must be a status code (100 to 599) or a list of them")
    return codes if isinstance(value, list) else codes[0]  # type: ignore[no-any-return]


StatusCodes = Annotated[
    int | list[int],
    PlainValidator(_status_codes),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 100, "maximum": 599},
                {
                    "type": "array",
                    "items": {"type": "integer", "minimum": 100, "maximum": 599},
                    "minItems": 1,
                },
            ]
        }
    ),
]


class HttpPayload(Model):
    """`http`: one HTTP request; success when the status matches `expect_status` (default 2xx)."""

    method: str = Field(
        "GET", description="HTTP method (any case)", max_length=MAX_METHOD_CHARS, pattern=METHOD_PATTERN
    )
    url: Annotated[Str, text_or_secret(pattern=URL_PATTERN, maxLength=MAX_URL_CHARS)]
    headers: dict[str, Str] = Field(default_factory=dict)
    body: Any = Field(None, description="a string is sent as is, anything else as JSON")
    expect_status: StatusCodes | None = Field(None, description="accepted status code(s); default any 2xx")
    timeout_s: Annotated[float, Field(strict=True, gt=0, le=MAX_REQUEST_TIMEOUT_S)] | None = None
    follow_redirects: Annotated[bool, Field(strict=True)] | None = None

    @field_validator("method")
    @classmethod
    def _method(cls, value: str) -> str:
        if value.upper() not in METHODS:
            raise ValueError(f"must be one of {', '.join(METHODS)}")
        return value

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | dict[str, str]) -> str | dict[str, str]:
        problem = url_problem(value) if isinstance(value, str) else None
        if problem is not None:
            raise ValueError(problem)
        return value

    def expected_statuses(self) -> set[int] | None:
        """The accepted statuses, None for any 2xx."""
        if self.expect_status is None:
            return None
        return set(self.expect_status) if isinstance(self.expect_status, list) else {self.expect_status}


TASK_TYPE = TaskType("http", HttpPayload)
