"""Secret references in payloads: resolved on the worker at execution time, masked on the way out.

A secret reference is a JSON object with exactly one key, `{"$secret": "NAME"}`; it resolves to the
worker's environment variable `ZEPHYR_SECRET_NAME`. Resolution happens only inside the run, so
the resolved payload never leaves the worker. Every value resolved for a run goes into that run's
`Masker`, which replaces it with `***` in log lines, results and error messages: the value itself,
each line of a multi-line value, and its JSON-escaped, URL-encoded and base64 forms.
"""

from __future__ import annotations

import base64
import json
import re
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Any

from zephyr.errors import TaskFailed
from zephyr.tasktypes.fields import SECRET_KEY, SECRET_NAME

ENV_PREFIX = "ZEPHYR_SECRET_"
MASK = "***"


# A derived form (one line of a multi-line secret, a run of its base64) shorter than this is not
# masked on its own: it would mask ordinary text that happens to match.
MIN_DERIVED_CHARS = 6
_PERCENT_HEX = re.compile(r"%[0-9A-F]{2}")


def _base64_runs(data: bytes) -> set[str]:
    """The base64 text (standard and URL-safe alphabets) that any base64 encoding of a byte string
    holding `data` must contain, whatever bytes come before or after it.

    Base64 turns each 3 bytes into 4 characters, so the characters of `data` depend on where it
    starts modulo 3: for each of the 3 alignments, the characters decided by `data` alone (not by
    its neighbours) are kept. This finds a password inside `Authorization: Basic base64(user:pass)`
    (what `curl -v -u user:pass` prints) without knowing the user."""
    runs: set[str] = set()
    for offset in range(3):
        encoded = base64.b64encode(bytes(offset) + data).decode()
        first = (offset * 8 + 5) // 6  # characters that hold a bit of the padding bytes come before
        last = ((offset + len(data)) * 8) // 6  # the next one holds bits of what follows
        run = encoded[first:last]
        if len(run) >= MIN_DERIVED_CHARS:
            runs.add(run)
            runs.add(run.replace("+", "-").replace("/", "_"))
    return runs


def secret_forms(value: str) -> set[str]:
    """Every form in which `value` may show up in output: as is, JSON-escaped, URL-encoded, in
    base64 (alone or inside a longer encoded string such as `user:pass`), and each line of a
    multi-line value (a PEM key logged line by line)."""
    forms = {value}
    # A value inside a JSON document appears escaped (quotes, backslashes, non-ASCII).
    forms.add(json.dumps(value)[1:-1])
    forms.add(json.dumps(value, ensure_ascii=False)[1:-1])
    for encoded in (
        urllib.parse.quote(value, safe=""),
        urllib.parse.quote(value),
        urllib.parse.quote_plus(value),
    ):
        forms.add(encoded)
        forms.add(_PERCENT_HEX.sub(lambda match: match.group().lower(), encoded))  # curl writes %2f
    forms |= _base64_runs(value.encode())
    for line in value.splitlines():
        line = line.strip()
        if len(line) >= MIN_DERIVED_CHARS:
            forms.add(line)
    return {form for form in forms if form}


class Masker:
    """Replaces every known secret value, in each of its forms (`secret_forms`), with `***`
    (longest form first).

    Immutable once built, so one instance may serve many runs (see NO_SECRETS).
    """

    def __init__(self, values: Iterable[str] = ()) -> None:
        forms: set[str] = set()
        for value in values:
            if value:
                forms |= secret_forms(value)
        ordered = sorted(forms, key=len, reverse=True)
        self._forms = ordered
        self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def __bool__(self) -> bool:
        return self._pattern is not None

    def mask(self, text: str, *, cut: bool = False) -> str:
        """`text` with every secret value replaced by `***`.

        `cut` says the text was cut off mid-line: a tail that could be the start of a secret is
        masked too, so a secret split at the cut does not leak its first half.
        """
        if self._pattern is None or not text:
            return text
        masked = self._pattern.sub(MASK, text)
        if cut:
            for form in self._forms:
                for size in range(min(len(form) - 1, len(masked)), 0, -1):
                    if masked.endswith(form[:size]):
                        masked = masked[:-size] + MASK
                        break
        return masked


NO_SECRETS = Masker()


def may_reference_secrets(payload_json: str) -> bool:
    """False only when the JSON text `payload_json` cannot decode to a payload with a reference.

    A decoded key equals `$secret` only if the text spells it out or writes it with escapes, and
    every JSON escape starts with a backslash: text with neither cannot hold a reference.
    """
    return SECRET_KEY in payload_json or "\\" in payload_json


def _is_ref(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and SECRET_KEY in value


def resolve(payload: Any, environ: Mapping[str, str], path: str = "payload") -> tuple[Any, list[str]]:
    """Return (a copy of `payload` with every secret reference replaced by its value, the values).

    Raises TaskFailed(code="missing_secret") naming the field and the variable when a reference
    names a secret this worker does not have, or is malformed.
    """
    values: list[str] = []

    def walk(node: Any, where: str) -> Any:
        if _is_ref(node):
            name = node[SECRET_KEY]
            if not isinstance(name, str) or not SECRET_NAME.fullmatch(name):
                raise TaskFailed(
                    f"{where}: $secret must name a secret (1 to 128 letters, digits, _), got {name!r}",
                    code="invalid_payload",
                    retryable=False,
                )
            env_name = ENV_PREFIX + name
            if env_name not in environ:
                raise TaskFailed(
                    f"{where}: secret {name} is not set on this worker ({env_name})",
                    code="missing_secret",
                )
            values.append(environ[env_name])
            return environ[env_name]
        if isinstance(node, dict):
            return {key: walk(item, f"{where}.{key}") for key, item in node.items()}
        if isinstance(node, list):
            return [walk(item, f"{where}[{index}]") for index, item in enumerate(node)]
        return node

    return walk(payload, path), values
