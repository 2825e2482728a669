"""The worker's payload policies on their own: shell env names and cwd, http destinations."""

from __future__ import annotations

import pytest

from zephyr.errors import TaskFailed
from zephyr.worker.destinations import DestinationPolicy, DestinationRefused, GuardedResolver, networks
from zephyr.worker.shell_policy import ShellPolicy


@pytest.mark.parametrize(
    "name",
    ["BASH_ENV", "ENV", "BASH_FUNC_ls%%", "LD_PRELOAD", "LD_LIBRARY_PATH", "PATH", "PYTHONPATH",
     "PYTHONSTARTUP", "PERL5OPT", "NODE_OPTIONS", "SHELLOPTS", "PS4", "IFS", "GIT_SSH_COMMAND"],
)  # fmt: skip
def test_names_that_change_what_runs_are_refused(name: str) -> None:
    with pytest.raises(TaskFailed) as info:
        ShellPolicy("*").check_env([name])
    assert info.value.code == "not_allowed" and info.value.retryable is False
    assert f"payload.env.{name}" in str(info.value)


def test_env_allow_lets_named_exceptions_through_and_nothing_else() -> None:
    policy = ShellPolicy("*", env_allow=r"PATH|PYTHONPATH")
    policy.check_env(["PATH", "PYTHONPATH", "GREETING", "LANG"])
    with pytest.raises(TaskFailed, match="LD_PRELOAD"):
        policy.check_env(["LD_PRELOAD"])
    with pytest.raises(TaskFailed, match="not an environment variable name"):
        ShellPolicy("*", env_allow=".*").check_env(["A=B"])  # never a name, whatever the pattern


def test_cwd_must_be_absolute_and_is_part_of_what_the_pattern_allows() -> None:
    policy = ShellPolicy(r"cd /srv/app && \./deploy\.sh|\./deploy\.sh")
    for cwd in ("tmp", "/srv/../tmp", "../x"):
        with pytest.raises(TaskFailed, match=r"payload\.cwd"):
            policy.check_cwd(cwd)
    policy.check_cwd("/srv/app")
    assert policy.allowed("./deploy.sh")
    assert policy.allowed("./deploy.sh", cwd="/srv/app")
    assert not policy.allowed("./deploy.sh", cwd="/tmp/evil")  # a relative path elsewhere
    assert ShellPolicy("*").allowed("./anything", cwd="/tmp")


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "::1", "10.1.2.3", "172.16.0.9", "192.168.1.1", "169.254.169.254", "fe80::1",
     "fd00:ec2::254", "100.64.0.1", "0.0.0.0", "::ffff:127.0.0.1", "224.0.0.1"],
)  # fmt: skip
def test_private_and_metadata_addresses_are_refused_when_asked(address: str) -> None:
    assert DestinationPolicy(allow_private=False).refusal(address)
    assert DestinationPolicy(allow_private=True).refusal(address) is None


def test_public_addresses_and_exempt_networks_pass() -> None:
    policy = DestinationPolicy(allow_private=False, exempt=networks(["127.0.0.1/32"]))
    assert policy.refusal("93.184.216.34") is None
    assert policy.refusal("2606:2800:220:1:248:1893:25c8:1946") is None
    assert policy.refusal("127.0.0.1") is None
    assert policy.refusal("127.0.0.2")


async def test_the_resolver_refuses_a_name_that_resolves_to_loopback() -> None:
    resolver = GuardedResolver(DestinationPolicy(allow_private=False))
    try:
        with pytest.raises(
            DestinationRefused, match=r"refused localhost: 127\.0\.0\.1 is a loopback address"
        ):
            await resolver.resolve("localhost", 80)
    finally:
        await resolver.close()
    open_resolver = GuardedResolver(DestinationPolicy(allow_private=True))
    try:
        assert {entry["host"] for entry in await open_resolver.resolve("localhost", 80)} >= {"127.0.0.1"}
    finally:
        await open_resolver.close()
