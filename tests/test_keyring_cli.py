"""The real CLI, run as the unprivileged test user, with its API key in that user's Secret
Service (gnome-keyring-daemon on the user's own D-Bus session bus): the start-up error for a
missing entry, the key reaching the provider once stored, and doctor saying where it lives."""

from __future__ import annotations

import json
import shlex
import subprocess

import pytest
from keyring_session import SecretService, missing_tools

from fakes.llm_server import ScriptedLLMServer, reply
from harness import identity

KEY = "sk-test-keyring-cli-0c4e8a2f"

pytestmark = pytest.mark.skipif(
    bool(missing_tools()),
    reason=f"needs {', '.join(missing_tools())} (apt-get install gnome-keyring libsecret-tools dbus)",
)


@pytest.fixture
def service():
    ident = identity()  # the CLI's user must own the session bus to talk to it
    svc = SecretService(ident.uid, ident.gid).start()
    yield svc
    svc.stop()


def test_missing_entry_stops_start_up_then_the_stored_key_reaches_the_provider(nb, service):
    nb.write_config({"providers": {"openai": {"apiKey": "keyring:nanobot/openai"}}})
    bus = {"DBUS_SESSION_BUS_ADDRESS": service.env["DBUS_SESSION_BUS_ADDRESS"]}
    with ScriptedLLMServer("openai") as llm:
        env = {**bus, "OPENAI_BASE_URL": llm.url}
        r = nb.run("agent", "-m", "hi", env=env)
        assert r.returncode == 2
        assert "providers.openai.apiKey" in r.stderr and "keyring:nanobot/openai" in r.stderr
        command = r.stderr.strip().split("fix: store it: ", 1)[1]
        assert command.startswith("secret-tool store ")
        assert not llm.requests

        # The person runs the printed command; secret-tool reads the key from stdin.
        stored = subprocess.run(
            shlex.split(command), input=KEY, env=service.env, capture_output=True, text=True,
            timeout=20, check=False, **_as_cli_user(),
        )  # fmt: skip
        assert stored.returncode == 0, stored.stderr

        llm.script([reply("Hello from the keyring")])
        r = nb.run("agent", "-m", "hi", env=env)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == "Hello from the keyring"
        assert llm.requests[0].header("Authorization") == f"Bearer {KEY}"
    assert KEY not in r.stdout + r.stderr + nb.log_text() + nb.all_written_text()

    doctor = nb.run("doctor", "--json", env=bus)
    checks = {c["id"]: c for c in json.loads(doctor.stdout)["checks"]}
    where = checks["secret_store.providers.openai.apiKey"]
    assert where["status"] == "PASS"
    assert "keyring (keyring:nanobot/openai, encrypted at rest)" in where["message"]
    assert KEY not in doctor.stdout


def _as_cli_user() -> dict:
    ident = identity()
    if ident.uid is None:
        return {}
    return {"user": ident.uid, "group": ident.gid, "extra_groups": []}
