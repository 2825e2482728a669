"""The URLs an `http` task may request, as one regex both the API and /openapi.json use.

`http://` or `https://`, optional user info, a host (DNS name, IPv4 address or bracketed IPv6
address as RFC 3986 writes it), optional port 0 to 65535, then a path, query or fragment of
printable ASCII (other characters percent-encoded). Every URL that matches parses, so a task
never reaches a worker with a URL its HTTP client refuses (`http://[` did).

Written with ASCII classes only (no `\\s`, `\\d`, `\\w`), whose meaning JSON Schema's ECMA-262
regexes and Python's `re` share, so the published rule and the API's are the same rule.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

_HEX16 = "[0-9A-Fa-f]{1,4}"
_OCTET = "(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
_IPV4 = rf"{_OCTET}(?:\.{_OCTET}){{3}}"
_LS32 = f"(?:{_HEX16}:{_HEX16}|{_IPV4})"


def _ipv6() -> str:
    """RFC 3986's IPv6address: n groups before `::`, m after, n + m <= 7 (8 without `::`)."""
    forms = [f"(?:{_HEX16}:){{6}}{_LS32}", f"::(?:{_HEX16}:){{5}}{_LS32}"]
    for before, after in ((0, 4), (1, 3), (2, 2), (3, 1), (4, 0)):
        head = f"(?:(?:{_HEX16}:){{0,{before}}}{_HEX16})?" if before else f"(?:{_HEX16})?"
        tail = f"(?:{_HEX16}:){{{after}}}" if after else ""
        forms.append(f"{head}::{tail}{_LS32}")
    forms.append(f"(?:(?:{_HEX16}:){{0,5}}{_HEX16})?::{_HEX16}")
    forms.append(f"(?:(?:{_HEX16}:){{0,6}}{_HEX16})?::")
    return "(?:" + "|".join(forms) + ")"


_USERINFO = "(?:(?:[A-Za-z0-9._~!$&'()*+,;=:-]|%[0-9A-Fa-f]{2})*@)?"
_NAME = r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*\.?"
_HOST = rf"(?:{_NAME}|\[{_ipv6()}\])"
_PORT = "(?::(?:[0-9]{1,4}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?"
_REST = "(?:[/?#][!-~]*)?"

URL_PATTERN = f"^https?://{_USERINFO}{_HOST}{_PORT}{_REST}$"
MAX_URL_CHARS = 8192
_URL = re.compile(URL_PATTERN)


def url_problem(url: str) -> str | None:
    """Why `url` is not one an `http` task may request, or None when it is."""
    if len(url) > MAX_URL_CHARS:
        return f"must be at most {MAX_URL_CHARS} characters"
    if not _URL.fullmatch(url):
        return (
            "must be an absolute http:// or https:// URL with a host name or address, an optional "
            "port (0-65535), and printable ASCII after it (percent-encode the rest)"
        )
    try:
        urlsplit(url).port  # noqa: B018 - parses host and port, ValueError if they do not
    except ValueError as exc:
        return f"does not parse: {exc}"
    return None
