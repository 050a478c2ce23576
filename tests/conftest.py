"""Shared fixtures: a throw-away NANOBOT_HOME and the real CLI run as an unprivileged user."""

from __future__ import annotations

import pytest

from harness import GatewayProcess, NanobotHome, identity


@pytest.fixture
def nb():
    home = NanobotHome()
    yield home
    home.cleanup()


@pytest.fixture
def start(nb):
    """start(cfg, env=None) -> a ready `nanobot gateway` on nb with cfg; all stopped after."""
    running: list[GatewayProcess] = []

    def _start(cfg: dict, env: dict | None = None) -> GatewayProcess:
        nb.write_config(cfg)
        gw = GatewayProcess(nb, env=env).wait_ready()
        running.append(gw)
        return gw

    yield _start
    for gw in running:
        gw.stop()


def pytest_report_header(config):
    ident = identity()
    who = f"uid {ident.uid}" if ident.uid is not None else "the current user"
    return f"nanobot CLI under test runs as {who} ({ident.reason}): {' '.join(ident.argv)}"
