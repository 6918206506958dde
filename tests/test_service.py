"""Start-up checks for running as a service."""

from __future__ import annotations

import pytest

from assistant.errors import ConfigError
from assistant.service.serve import refuse_root, under_systemd


@pytest.mark.parametrize(
    "env",
    [
        {"INVOCATION_ID": "5c0e1f7a9b2d4e0f8a6b3c2d1e0f9a8b"},
        {"INVOCATION_ID": "5c0e", "NOTIFY_SOCKET": "@notify"},
    ],
)
def test_root_under_systemd_is_refused(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match=r"refusing to run as root under systemd.*User=lingling"):
        refuse_root(env, uid=0)


@pytest.mark.parametrize(
    ("env", "uid"),
    [
        ({"INVOCATION_ID": "5c0e"}, 998),  # the lingling user under the system unit
        ({"NOTIFY_SOCKET": "/run/user/1000/systemd/notify"}, 1000),  # a user unit
        ({}, 0),  # root in a shell or a container: not ours to refuse
        ({"NOTIFY_SOCKET": "/tmp/notify"}, 0),  # a supervisor or a test, not a unit
        ({"INVOCATION_ID": ""}, 0),
    ],
)
def test_everything_else_runs(env: dict[str, str], uid: int) -> None:
    refuse_root(env, uid=uid)


def test_under_systemd_reads_the_environment() -> None:
    assert under_systemd({"INVOCATION_ID": "x"})
    assert not under_systemd({"PATH": "/usr/bin"})
