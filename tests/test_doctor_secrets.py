"""`nanobot doctor`'s report of where each secret lives, from a really loaded config: the
environment, files, literals and systemd credentials (read from real unit files), with a
WARN for plaintext at rest on a server only."""

from __future__ import annotations

import json

import pytest

from nanobot.commands.doctor_secrets import (
    ENCRYPTED,
    INLINE,
    PLAINTEXT,
    check_secret_stores,
    on_server,
    own_unit,
    unit_credentials,
)
from nanobot.config.loader import load_config

TG = "123456:test-telegram-token-abc"


@pytest.fixture
def loaded(tmp_path, monkeypatch):
    """A config with one secret of every kind, loaded for real; returns its origins."""
    creds = tmp_path / "creds"
    creds.mkdir()
    for name, value in (("provider-openai", "sk-enc"), ("telegram-token", TG)):
        (creds / name).write_text(value)
    (tmp_path / "plain").write_text("sk-plain-file")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    monkeypatch.setenv("GROQ_KEY", "gsk-env")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-env")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    cfg = {
        "providers": {
            "openai": {"apiKey": "file:${CREDENTIALS_DIRECTORY}/provider-openai"},
            "groq": {"apiKey": "${GROQ_KEY}"},
            "deepseek": {"apiKey": f"file:{tmp_path / 'plain'}"},
            "gemini": {"apiKey": "literal-gemini-key"},
        },
        "channels": {"telegram": {"token": "file:${CREDENTIALS_DIRECTORY}/telegram-token"}},
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    path.chmod(0o600)
    return load_config(path)[1].origins


def units(tmp_path, body: str, dropin: str = ""):
    """A unit search path of two folders, like /etc/systemd/system and /lib/systemd/system."""
    etc, lib = tmp_path / "etc", tmp_path / "lib"
    (lib).mkdir()
    (lib / "nanobot.service").write_text(body)
    (etc / "nanobot.service.d").mkdir(parents=True)
    (etc / "nanobot.service.d" / "10-role.conf").write_text(dropin)
    cgroup = tmp_path / "cgroup"
    cgroup.write_text("0::/system.slice/nanobot.service\n")
    return (etc, lib), cgroup


def by_key(checks):
    return {c.id.removeprefix("secret_store."): c for c in checks}


def test_every_kind_of_storage_is_named_and_plaintext_warns_on_a_server(loaded, tmp_path):
    dirs, cgroup = units(
        tmp_path,
        "[Service]\nLoadCredential=telegram-token:/etc/nanobot/credentials/telegram-token\n",
        "[Service]\nLoadCredentialEncrypted=provider-openai:/etc/nanobot/credentials/x.cred\n",
    )
    got = by_key(check_secret_stores(loaded, server=True, unit_dirs=dirs, cgroup=cgroup))
    assert set(got) == {
        "providers.openai.apiKey",
        "providers.groq.apiKey",
        "providers.deepseek.apiKey",
        "providers.gemini.apiKey",
        "providers.anthropic.apiKey",
        "channels.telegram.token",
    }
    openai = got["providers.openai.apiKey"]
    assert (
        openai.status == "PASS" and "encrypted systemd credential provider-openai" in openai.message
    )
    assert got["providers.groq.apiKey"].message.endswith("environment (GROQ_KEY)")
    assert got["providers.anthropic.apiKey"].message.endswith("environment (ANTHROPIC_API_KEY)")
    tg = got["channels.telegram.token"]
    assert tg.status == "WARN" and "from a plaintext file (LoadCredential=)" in tg.message
    assert "systemd-creds encrypt --name=telegram-token -" in tg.fix
    plain = got["providers.deepseek.apiKey"]
    assert plain.status == "WARN" and f"plaintext file {tmp_path / 'plain'}" in plain.message
    literal = got["providers.gemini.apiKey"]
    assert literal.status == "WARN" and "literal in config.json" in literal.message
    for check in got.values():
        for secret in ("sk-enc", TG, "sk-plain-file", "literal-gemini-key", "gsk-env"):
            assert secret not in check.message + check.fix


def test_on_a_desktop_plaintext_is_reported_without_a_warning(loaded, tmp_path):
    got = by_key(check_secret_stores(loaded, server=False, unit_dirs=(), cgroup=tmp_path / "x"))
    assert {c.status for c in got.values()} == {"PASS"}
    assert "keyring:nanobot/" in got["providers.deepseek.apiKey"].message
    unknown = got["channels.telegram.token"].message
    assert "its unit was not found: storage unknown" in unknown


def test_a_credential_of_unknown_storage_warns_on_a_server(loaded, tmp_path):
    got = by_key(check_secret_stores(loaded, server=True, unit_dirs=(), cgroup=tmp_path / "x"))
    assert got["providers.openai.apiKey"].status == "WARN"


def test_unit_credentials_follow_systemd_precedence_and_resets(tmp_path):
    dirs, _ = units(
        tmp_path,
        "[Service]\nLoadCredential=a:/x\nLoadCredential=b:/y\nSetCredential=c:inline\n",
        "[Service]\nLoadCredential=\nLoadCredentialEncrypted=a\n",
    )
    assert unit_credentials("nanobot.service", dirs) == {"a": ENCRYPTED, "c": INLINE}
    (tmp_path / "etc" / "nanobot.service").write_text("[Service]\nLoadCredential=d:/z\n")
    # /etc's unit file replaces /lib's (c is gone); the drop-in still applies (and resets d).
    assert unit_credentials("nanobot.service", dirs) == {"a": ENCRYPTED}
    (tmp_path / "etc" / "nanobot.service.d" / "10-role.conf").write_text("")
    assert unit_credentials("nanobot.service", dirs) == {"d": PLAINTEXT}


def test_own_unit_reads_cgroup_v2_and_v1(tmp_path):
    f = tmp_path / "cgroup"
    f.write_text("0::/system.slice/run-u42.service\n")
    assert own_unit(f) == "run-u42.service"
    f.write_text("12:cpu:/x\n1:name=systemd:/system.slice/nanobot.service\n")
    assert own_unit(f) == "nanobot.service"
    f.write_text("0::/user.slice/user-1000.slice/session-3.scope\n")
    assert own_unit(f) is None


def test_what_counts_as_a_server():
    assert on_server({"CREDENTIALS_DIRECTORY": "/run/credentials/x", "DISPLAY": ":0"}, "linux")
    assert on_server({}, "linux")
    assert not on_server({"WAYLAND_DISPLAY": "wayland-0"}, "linux")
    assert not on_server({}, "darwin")


def test_the_doctor_cli_reports_and_warns_for_plaintext_without_showing_it(nb):
    cred = nb.write_file("credentials/openai", "sk-test-doctor-plain-91\n")
    nb.write_config({"providers": {"openai": {"apiKey": f"file:{cred}"}}})
    r = nb.run("doctor", "--json")  # no DISPLAY: a server
    checks = {c["id"]: c for c in json.loads(r.stdout)["checks"]}
    where = checks["secret_store.providers.openai.apiKey"]
    assert where["status"] == "WARN"
    assert where["message"] == f"providers.openai.apiKey: plaintext file {cred}, on a server"
    assert "systemd-creds encrypt" in where["fix"]
    assert "sk-test-doctor-plain-91" not in r.stdout + r.stderr
    r = nb.run("doctor", env={"DISPLAY": ":0"})  # a desktop session: reported, not warned
    assert f"PASS  providers.openai.apiKey: plaintext file {cred} (keyring:nanobot/" in r.stdout
