"""keyring: secret references against a real Secret Service (gnome-keyring-daemon on a private
D-Bus session bus), in process: lookups, the start-up errors and the commands they name,
and onboarding's offer to keep a typed key there."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import textwrap

import pytest
from keyring_session import SecretService, missing_tools

from nanobot.commands.onboard_keyring import keep_key
from nanobot.commands.onboard_model import ask_model
from nanobot.config import secrets
from nanobot.config.loader import load_config
from nanobot.errors import ConfigError
from nanobot.security.redact import REDACTOR

KEY = "sk-test-keyring-7f3a9c1e5b"

pytestmark = pytest.mark.skipif(
    bool(missing_tools()),
    reason=f"needs {', '.join(missing_tools())} (apt-get install gnome-keyring libsecret-tools dbus)",
)


@pytest.fixture(scope="module")
def service():
    svc = SecretService().start()
    yield svc
    svc.stop()


@pytest.fixture
def session(service, monkeypatch, tmp_path):
    """This process talks to the test's Secret Service; NANOBOT_HOME is a fresh folder."""
    for name, value in service.env.items():
        if name != "PATH":
            monkeypatch.setenv(name, value)
    monkeypatch.setenv("NANOBOT_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    return service


def write_config(tmp_path, api_key: str):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"providers": {"openai": {"apiKey": api_key}}}))
    path.chmod(0o600)
    return path


def test_a_keyring_reference_resolves_is_redacted_and_recorded(session, tmp_path):
    session.store("nanobot", "openai", KEY)
    cfg, info = load_config(write_config(tmp_path, "keyring:nanobot/openai"))
    assert cfg.providers.openai.api_key == KEY
    assert KEY not in REDACTOR.redact(f"the key is {KEY}")
    assert [(o.key, o.kind, o.ref) for o in info.origins] == [
        ("providers.openai.apiKey", secrets.KEYRING, "keyring:nanobot/openai")
    ]
    assert info.literal_secrets == []


def test_an_entry_made_by_python_keyring_is_found(session):
    # python-keyring's Secret Service backend stores service/username plus its own attribute.
    res = session.secret_tool(
        "store", "--label=pk", "application", "Python keyring library",
        "service", "nanobot-pk", "username", "groq", stdin="gsk-from-python-keyring",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert secrets.resolve("keyring:nanobot-pk/groq") == "gsk-from-python-keyring"


def test_unicode_and_a_trailing_newline_survive_the_round_trip(session):
    session.store("nanobot", "unicode", "clé-sécrète-ß\n")
    assert secrets.resolve("keyring:nanobot/unicode") == "clé-sécrète-ß"


def test_a_missing_entry_names_the_reference_and_the_command_that_stores_it(session, tmp_path):
    path = write_config(tmp_path, "keyring:nanobot/missing-one")
    with pytest.raises(ConfigError) as e:
        load_config(path)
    msg = str(e.value)
    assert "providers.openai.apiKey" in msg and "keyring:nanobot/missing-one" in msg
    assert "does not exist in the Secret Service" in msg
    command = msg.split("fix: store it: ", 1)[1]
    assert command == (
        "secret-tool store '--label=nanobot nanobot/missing-one' service nanobot username "
        "missing-one"
    )
    # The command is exact: run as printed (it reads the secret from stdin), the config loads.
    res = subprocess.run(
        shlex.split(command), input=KEY, env={**os.environ}, capture_output=True, text=True,
        timeout=20, check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert load_config(path)[0].providers.openai.api_key == KEY


def test_an_empty_entry_is_refused(session, tmp_path):
    session.store("nanobot", "empty", "")
    with pytest.raises(ConfigError, match="keyring:nanobot/empty is empty"):
        load_config(write_config(tmp_path, "keyring:nanobot/empty"))


def test_a_malformed_reference_says_how_to_write_one(session, tmp_path):
    with pytest.raises(ConfigError, match='write it as "keyring:SERVICE/ACCOUNT"'):
        load_config(write_config(tmp_path, "keyring:nanobot"))


def test_no_session_bus_is_an_error_that_names_the_fix(session, tmp_path, monkeypatch):
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", f"unix:path={tmp_path}/no-bus")
    with pytest.raises(ConfigError) as e:
        load_config(write_config(tmp_path, "keyring:nanobot/openai"))
    assert "the Secret Service cannot be asked" in str(e.value)
    assert "desktop session" in str(e.value)


def test_without_secret_tool_the_error_says_what_to_install(session, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no secret-tool here
    with pytest.raises(ConfigError, match="secret-tool is not installed .*libsecret-tools"):
        load_config(write_config(tmp_path, "keyring:nanobot/openai"))


def _fake_tool(tmp_path, body: str):
    """A stand-in for the keyring's command-line tool (the far side): a small script."""
    tool = tmp_path / "fake-tool"
    tool.write_text(f"#!{sys.executable}\n" + textwrap.dedent(body))
    tool.chmod(0o755)
    return tool


def test_a_keyring_that_never_answers_times_out(tmp_path):
    tool = _fake_tool(tmp_path, "import time; time.sleep(30)\n")
    with pytest.raises(secrets.KeyringError, match=r"did not answer within 0\.5 s"):
        secrets.resolve("keyring:nanobot/openai", secrets.SecretTool(str(tool), timeout=0.5))


def test_the_secret_goes_through_stdin_never_the_command_line(session, tmp_path):
    log = tmp_path / "argv.log"
    wrapper = _fake_tool(
        tmp_path,
        f"""\
        import os, sys
        open({str(log)!r}, "a").write(repr(sys.argv) + "\\n")
        os.execvp("secret-tool", ["secret-tool", *sys.argv[1:]])
        """,
    )
    keyring = secrets.SecretTool(str(wrapper))
    keyring.store("nanobot", "stdin-only", KEY)
    assert keyring.lookup("nanobot", "stdin-only") == KEY
    logged = log.read_text()
    assert "'store'" in logged and "'lookup'" in logged and KEY not in logged


def test_the_macos_keychain_is_asked_with_security_and_no_secret_in_argv(tmp_path):
    # `security` exists only on macOS; this stand-in answers as it does (exit 44: not found).
    tool = _fake_tool(
        tmp_path,
        """\
        import sys
        args = sys.argv[1:]
        if args[:1] == ["find-generic-password"] and args[-1] == "-w" and "openai" in args:
            print("sk-from-keychain")
            sys.exit(0)
        sys.exit(44)
        """,
    )
    chain = secrets.Keychain(str(tool))
    assert secrets.resolve("keyring:nanobot/openai", chain) == "sk-from-keychain"
    with pytest.raises(secrets.KeyringError) as e:
        secrets.resolve("keyring:nanobot/groq", chain)
    assert e.value.fix == f"store it: {tool} add-generic-password -U -s nanobot -a groq -w"
    assert not chain.can_store()


def test_onboarding_keeps_a_typed_key_in_the_keyring(session, tmp_path, capsys):
    replies = iter(["openai", "", "y"])  # provider, model (default), keep it in the keyring
    choice = ask_model(lambda q, d: next(replies) or d, secret=lambda prompt: KEY)
    assert choice.key_ref == "keyring:nanobot/openai"
    assert session.lookup("nanobot", "openai") == KEY
    assert not (tmp_path / "home" / "credentials").exists()  # nothing in plaintext
    out = capsys.readouterr().out
    assert "Stored the openai key in the Secret Service" in out and KEY not in out


def test_onboarding_falls_back_to_the_credentials_folder_and_says_why(
    session, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", f"unix:path={tmp_path}/no-bus")
    ref = keep_key("groq", KEY, ask=lambda q, d: pytest.fail(f"asked {q!r}"))
    cred = tmp_path / "home" / "credentials" / "groq"
    assert ref == f"file:{cred}" and cred.read_text().strip() == KEY
    assert oct(cred.stat().st_mode & 0o777) == "0o600"
    out = capsys.readouterr().out
    assert f"Stored the groq key in {cred} (mode 0600, plaintext on disk: no keyring" in out
    assert "secret-tool store '--label=nanobot nanobot/groq' service nanobot username groq" in out


def test_onboarding_respects_a_no(session, tmp_path, capsys):
    ref = keep_key("deepseek", KEY, ask=lambda q, d: "n")
    assert ref.startswith("file:") and session.lookup("nanobot", "deepseek") is None
    assert "you chose not to use the keyring" in capsys.readouterr().out
