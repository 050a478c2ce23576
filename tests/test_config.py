"""Config loading: types, ranges, aliases, secret references, unknown keys, modes."""

from __future__ import annotations

import json
import os
import stat

import pytest

from nanobot.config.loader import load_config, save_config, workspace_path
from nanobot.errors import ConfigError
from nanobot.security.redact import REDACTOR


def write(tmp_path, data) -> os.PathLike:
    p = tmp_path / "config.json"
    p.write_text(data if isinstance(data, str) else json.dumps(data))
    p.chmod(0o600)
    return p


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("NANOBOT_HOME", str(tmp_path))
    for var in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "OPENROUTER_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    tmp_path.chmod(0o700)
    yield
    REDACTOR.clear()


def test_defaults_without_a_file(tmp_path):
    cfg, info = load_config()
    assert not info.exists
    assert cfg.tools.restrict_to_workspace is True
    assert cfg.tools.exec.timeout == 60
    assert cfg.gateway.host == "127.0.0.1" and cfg.gateway.port == 18790
    assert workspace_path(cfg) == tmp_path / "workspace"


def test_values_take_effect(tmp_path):
    p = write(
        tmp_path,
        {
            "agents": {
                "defaults": {
                    "model": "gpt-4o",
                    "maxTokens": 99,
                    "temperature": 0.1,
                    "maxToolIterations": 3,
                    "workspace": str(tmp_path / "w"),
                }
            }
        },
    )
    cfg, _ = load_config(p)
    d = cfg.agents.defaults
    assert (d.model, d.max_tokens, d.temperature, d.max_tool_iterations) == ("gpt-4o", 99, 0.1, 3)
    assert workspace_path(cfg) == tmp_path / "w"


def test_reference_document_spellings_are_aliases(tmp_path):
    p = write(
        tmp_path,
        {"agents": {"defaults": {"restrictToWorkspace": False, "execConfig": {"timeout": 30}}}},
    )
    cfg, info = load_config(p)
    assert cfg.tools.restrict_to_workspace is False
    assert cfg.tools.exec.timeout == 30
    assert info.warnings == []


def test_conflicting_aliases_take_the_stricter_value(tmp_path):
    p = write(
        tmp_path,
        {
            "agents": {"defaults": {"restrictToWorkspace": False, "execConfig": {"timeout": 30}}},
            "tools": {"restrictToWorkspace": True, "exec": {"timeout": 90}},
        },
    )
    cfg, info = load_config(p)
    assert cfg.tools.restrict_to_workspace is True
    assert cfg.tools.exec.timeout == 30
    assert len(info.warnings) == 2


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ('{"agents": ', "invalid JSON at line 1"),
        ({"tools": {"exec": {"timeout": "30"}}}, "tools.exec.timeout: expected a number"),
        ({"tools": {"exec": {"timeout": 0}}}, "tools.exec.timeout: 0 is out of range"),
        ({"tools": {"exec": {"timeout": True}}}, "expected a number, got true/false"),
        ({"tools": {"restrictToWorkspace": 1}}, "tools.restrictToWorkspace: expected true/false"),
        ({"tools": {"exec": {"sandbox": "docker"}}}, "use one of auto, bwrap, none"),
        (
            {"channels": {"telegram": {"allowFrom": "123"}}},
            "channels.telegram.allowFrom: expected a list",
        ),
        ({"agents": []}, "agents: expected an object"),
        ([1, 2], "(top level)"),
    ],
)
def test_invalid_config_names_file_key_and_fix(tmp_path, data, needle):
    p = write(tmp_path, data)
    with pytest.raises(ConfigError) as e:
        load_config(p)
    msg = str(e.value)
    assert needle in msg and str(p) in msg and "fix:" in msg and "\n" not in msg
    assert e.value.exit_code == 2


def test_numeric_telegram_ids_are_accepted_as_strings(tmp_path):
    cfg, _ = load_config(write(tmp_path, {"channels": {"telegram": {"allowFrom": [123, "alice"]}}}))
    assert cfg.channels.telegram.allow_from == ["123", "alice"]


def test_unknown_key_warns_with_closest_valid_key(tmp_path):
    _, info = load_config(write(tmp_path, {"agents": {"defaults": {"maxToken": 5}}}))
    assert any("agents.defaults.maxToken" in w and "maxTokens" in w for w in info.warnings)


def test_user_dict_keys_are_kept_as_written(tmp_path):
    p = write(
        tmp_path,
        {"providers": {"openai": {"extraHeaders": {"X-Custom_Thing": "v1", "snake_key": "v2"}}}},
    )
    cfg, _ = load_config(p)
    assert cfg.providers.openai.extra_headers == {"X-Custom_Thing": "v1", "snake_key": "v2"}


def test_secret_references_env_and_file(tmp_path, monkeypatch):
    monkeypatch.setenv("MY_TG_TOKEN", "123456:env-token-value")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path / "creds"))
    (tmp_path / "creds").mkdir()
    (tmp_path / "creds" / "openai").write_text("sk-file-secret-value\n")
    p = write(
        tmp_path,
        {
            "channels": {"telegram": {"token": "${MY_TG_TOKEN}"}},
            "providers": {"openai": {"apiKey": "file:${CREDENTIALS_DIRECTORY}/openai"}},
        },
    )
    cfg, info = load_config(p)
    assert cfg.channels.telegram.token == "123456:env-token-value"
    assert cfg.providers.openai.api_key == "sk-file-secret-value"
    assert info.literal_secrets == []
    assert "sk-file-secret-value" in REDACTOR.secrets()


def test_missing_secret_reference_is_an_error_naming_the_key(tmp_path, monkeypatch):
    monkeypatch.delenv("NOPE_NOT_SET", raising=False)
    with pytest.raises(
        ConfigError, match=r"channels\.telegram\.token: environment variable NOPE_NOT_SET"
    ):
        load_config(write(tmp_path, {"channels": {"telegram": {"token": "${NOPE_NOT_SET}"}}}))
    with pytest.raises(ConfigError, match=r"providers\.openai\.apiKey: cannot read secret file"):
        load_config(write(tmp_path, {"providers": {"openai": {"apiKey": "file:/nonexistent/key"}}}))


def test_literal_secrets_are_listed_and_env_fills_empty_keys(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-environment-123")
    cfg, info = load_config(
        write(tmp_path, {"providers": {"anthropic": {"apiKey": "sk-ant-literal-key"}}})
    )
    assert info.literal_secrets == ["providers.anthropic.apiKey"]
    assert cfg.providers.openai.api_key == "sk-from-environment-123"


def test_save_is_atomic_0600_in_a_0700_home(tmp_path, monkeypatch):
    home = tmp_path / "fresh"
    monkeypatch.setenv("NANOBOT_HOME", str(home))
    old = os.umask(0)
    try:
        path = save_config({"gateway": {"port": 1234}})
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert not [f for f in home.iterdir() if f.name.endswith(".tmp")]
    assert load_config()[0].gateway.port == 1234


def test_loose_modes_warn_with_the_chmod_fix(tmp_path):
    p = write(tmp_path, {})
    p.chmod(0o644)
    tmp_path.chmod(0o755)
    _, info = load_config(p)
    assert any(f"chmod 600 {p}" in w for w in info.warnings)
    assert any(f"chmod 700 {tmp_path}" in w for w in info.warnings)
