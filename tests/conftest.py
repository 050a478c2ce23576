"""Shared fixtures: a throw-away NANOBOT_HOME and the real CLI run as an unprivileged user."""

from __future__ import annotations

import pytest

from harness import NanobotHome, identity


@pytest.fixture
def nb():
    home = NanobotHome()
    yield home
    home.cleanup()


def pytest_report_header(config):
    ident = identity()
    who = f"uid {ident.uid}" if ident.uid is not None else "the current user"
    return f"nanobot CLI under test runs as {who} ({ident.reason}): {' '.join(ident.argv)}"
