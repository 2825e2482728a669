"""What a `shell` payload may set besides its command: `env` names and `cwd`.

ZEPHYR_SHELL_ALLOW matches the command text only, but the environment decides what runs too:
`BASH_ENV`/`ENV` name a script the shell runs first, `BASH_FUNC_*` define functions that replace
commands, `LD_PRELOAD`/`LD_LIBRARY_PATH` load code into every program, `PATH` chooses which program
a bare name is, `PYTHON*`, `PERL5*`, `NODE_OPTIONS` and the like make interpreters load code. Such
names (REFUSED_NAMES, REFUSED_PREFIXES) are refused unless ZEPHYR_SHELL_ENV_ALLOW, a regex matched
against the whole name, lets them through. A name that is not a portable environment variable
name (letters, digits, `_`, not starting with a digit) is always refused.

`cwd` must be an absolute path without `..`; where it is given and the allow pattern is not `*`,
the pattern is matched against `cd <cwd> && <command>` (quoted as a shell would), so that the
directory a relative path resolves in is part of what the pattern allows.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable

from zephyr.errors import TaskFailed

REFUSED_NAMES = frozenset(
    {
        "BASH_ENV",
        "ENV",
        "SHELLOPTS",
        "BASHOPTS",
        "PS4",
        "PROMPT_COMMAND",
        "IFS",
        "CDPATH",
        "GLOBIGNORE",
        "PATH",
        "GCONV_PATH",
        "LOCPATH",
        "NLSPATH",
        "GLIBC_TUNABLES",
        "HOSTALIASES",
        "RESOLV_HOST_CONF",
        "JAVA_TOOL_OPTIONS",
        "_JAVA_OPTIONS",
        "NODE_OPTIONS",
        "NODE_PATH",
        "RUBYOPT",
        "RUBYLIB",
        "EDITOR",
        "VISUAL",
        "PAGER",
    }
)
REFUSED_PREFIXES = ("BASH_FUNC_", "LD_", "DYLD_", "PYTHON", "PERL", "GIT_", "MALLOC_")
_PORTABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _not_allowed(field: str, message: str) -> TaskFailed:
    return TaskFailed(f"payload.{field}: {message}", code="not_allowed", retryable=False)


class ShellPolicy:
    """The worker's rules for a shell payload's `env` and `cwd` (see the module docstring)."""

    def __init__(self, allow: str, env_allow: str | None = None) -> None:
        self._allow_all = allow == "*"
        self._allow = None if self._allow_all else re.compile(allow)
        self._env_allow = re.compile(env_allow) if env_allow else None

    def is_dangerous(self, name: str) -> bool:
        return name in REFUSED_NAMES or name.startswith(REFUSED_PREFIXES)

    def check_env(self, names: Iterable[str]) -> None:
        """Raise TaskFailed(not_allowed) naming the first name the policy refuses."""
        for name in names:
            if not _PORTABLE_NAME.fullmatch(name):
                raise _not_allowed(f"env.{name}", "not an environment variable name (letters, digits, _)")
            if self.is_dangerous(name) and not (self._env_allow and self._env_allow.fullmatch(name)):
                raise _not_allowed(
                    f"env.{name}",
                    "this name changes what the shell or the loader runs; refused unless this "
                    "worker's ZEPHYR_SHELL_ENV_ALLOW matches it",
                )

    def check_cwd(self, cwd: str | None) -> None:
        if cwd is None:
            return
        if not cwd.startswith("/") or ".." in cwd.split("/"):
            raise _not_allowed("cwd", "must be an absolute path without `..`")

    def allowed(self, command_text: str, cwd: str | None = None) -> bool:
        """True when ZEPHYR_SHELL_ALLOW accepts the command text (with `cd <cwd> && ` before it
        when `cwd` is given)."""
        if self._allow_all:
            return True
        assert self._allow is not None
        text = command_text if cwd is None else f"cd {shlex.quote(cwd)} && {command_text}"
        return self._allow.fullmatch(text) is not None
