"""/healthz's verdict: every channel running (a detail after "running:" allowed) is ok; any
other state makes the gateway degraded; restarts are shown only when there were some."""

from __future__ import annotations

from nanobot.channels.manager import Supervisor
from nanobot.config.schema import Config
from nanobot.gateway import Gateway


class StaticChannel:
    """A channel that only reports a status (health() reads nothing else)."""

    name = "static"

    def __init__(self, status: str) -> None:
        self.status = status


def _health(**states: str) -> dict:
    gw = Gateway(Config(), None)
    gw.supervisors = {n: Supervisor(n, StaticChannel(s)) for n, s in states.items()}
    return gw.health()


def test_running_with_a_detail_counts_as_running():
    health = _health(telegram="running", email="running: IDLE, last mail 12:01")
    assert health == {
        "status": "ok",
        "channels": {"telegram": "running", "email": "running: IDLE, last mail 12:01"},
    }


def test_any_other_state_is_degraded():
    assert _health(telegram="running", email="error: login refused")["status"] == "degraded"
    assert _health(whatsapp="runningish")["status"] == "degraded"


def test_restarts_are_listed_when_there_were_some():
    gw = Gateway(Config(), None)
    sup = Supervisor("telegram", StaticChannel("running"))
    sup.restarts = 2
    gw.supervisors = {"telegram": sup}
    assert gw.health()["restarts"] == {"telegram": 2}
