"""nanobot's own config.json loads: null = unset, its other features warn once per section.

The fixtures in tests/fixtures/nanobot_configs/ are what `nanobot onboard` writes: 0.3.5's from
running nanobot-ai 0.3.5's onboarding, 0.1.3's from the 0.1.3 config schema's defaults
(apiBase null, telegram.proxy null, other chat apps, minimax, memoryWindow, …).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nanobot.config.loader import load_config
from nanobot.errors import ConfigError
from nanobot.security.redact import REDACTOR

FIXTURES = Path(__file__).parent / "fixtures" / "nanobot_configs"
V013 = FIXTURES / "nanobot-0.1.3.post7-onboard.json"
V035 = FIXTURES / "nanobot-0.3.5-onboard.json"


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("NANOBOT_HOME", str(tmp_path))
    for var in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "OPENROUTER_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    tmp_path.chmod(0o700)
    yield
    REDACTOR.clear()


def write(tmp_path, data: dict) -> Path:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data, indent=2))
    path.chmod(0o600)
    return path


def nanobot_file(fixture: Path) -> dict:
    return json.loads(fixture.read_text())


def top_sections(warnings: list[str]) -> list[str]:
    return [w.split(" in ", 1)[1].split(" that ", 1)[0] for w in warnings if "ignored nanobot" in w]


@pytest.mark.parametrize("fixture", [V013, V035], ids=["0.1.3", "0.3.5"])
def test_nanobot_onboarding_output_loads_with_one_warning_per_section(tmp_path, fixture):
    cfg, info = load_config(write(tmp_path, nanobot_file(fixture)))
    assert cfg.agents.defaults.model == "anthropic/claude-opus-4-5"
    assert cfg.agents.defaults.max_tokens == 8192
    assert cfg.channels.telegram.proxy == ""  # null → not set
    assert cfg.providers.custom.api_key == "" and cfg.providers.vllm.api_base == ""
    assert cfg.tools.exec.sandbox == "auto"  # nanobot writes "" → not set
    sections = top_sections(info.warnings)
    assert sections and len(sections) == len(set(sections))  # one warning per section
    assert not [w for w in info.warnings if "unknown config key" in w]
    assert len(info.warnings) <= 8
    assert any("discord" in w for w in info.warnings)


def test_a_used_0_1_3_config_with_nulls_loads(tmp_path):
    data = nanobot_file(V013)
    data["agents"]["defaults"]["model"] = "qwen2.5-0.5b-instruct"
    data["providers"]["custom"] = {"apiKey": None, "apiBase": "http://127.0.0.1:8080/v1"}
    data["providers"]["openrouter"]["apiKey"] = "sk-or-v1-" + "a1" * 16
    data["providers"]["openrouter"]["extraHeaders"] = {"HTTP-Referer": None, "X-Title": "bot"}
    data["channels"]["telegram"] |= {"enabled": True, "token": "123:abc", "allowFrom": [42, None]}
    data["tools"]["mcpServers"] = {"filesystem": {"command": "npx", "args": ["-y", "fs"]}}
    cfg, info = load_config(write(tmp_path, data))
    assert cfg.providers.custom.api_base == "http://127.0.0.1:8080/v1"
    assert cfg.providers.openrouter.extra_headers == {"X-Title": "bot"}
    assert cfg.channels.telegram.enabled and cfg.channels.telegram.allow_from == ["42"]
    assert "providers.openrouter.apiKey" in info.literal_secrets
    assert any("MCP servers (MCP is not supported): filesystem" in w for w in info.warnings)


def test_another_chat_app_enabled_is_an_error_naming_the_switch(tmp_path):
    data = nanobot_file(V035)
    data["channels"]["discord"]["enabled"] = True
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, data))
    assert "channels.discord.enabled" in str(exc.value) and "set channels.discord" in str(exc.value)


def test_web_ui_enabled_by_nanobot_default_only_warns(tmp_path):
    data = nanobot_file(V035)
    assert data["channels"]["websocket"]["enabled"] is True
    _, info = load_config(write(tmp_path, data))
    assert any("web UI" in w and "websocket" in w for w in info.warnings)


@pytest.mark.parametrize(("section", "key"), [("exec", "enable"), ("file", "enable")])
def test_a_tool_turned_off_in_nanobot_is_not_silently_turned_on(tmp_path, section, key):
    data = nanobot_file(V035)
    data["tools"][section][key] = False
    with pytest.raises(ConfigError, match=rf"tools\.{section}\.{key}"):
        load_config(write(tmp_path, data))


def test_an_unknown_provider_with_a_key_is_called_out(tmp_path):
    data = nanobot_file(V035)
    data["providers"]["minimax"]["apiKey"] = "mm-" + "k" * 20
    _, info = load_config(write(tmp_path, data))
    (line,) = [w for w in info.warnings if "'providers'" in w]
    assert "WITH A KEY" in line and "minimax" in line and "providers.custom.apiBase" in line


def test_typos_still_get_a_suggestion(tmp_path):
    _, info = load_config(write(tmp_path, {"agents": {"defaults": {"maxToken": 100}}}))
    assert any("did you mean 'maxTokens'" in w for w in info.warnings)


def test_null_means_the_default(tmp_path):
    data = {
        "agents": {"defaults": {"maxTokens": None, "model": None, "workspace": None}},
        "tools": {"exec": {"timeout": None, "sandbox": ""}, "restrictToWorkspace": None},
        "gateway": {"port": None, "token": None},
    }
    cfg, info = load_config(write(tmp_path, data))
    assert cfg.agents.defaults.max_tokens == 8192 and cfg.agents.defaults.model == ""
    assert cfg.tools.exec.timeout == 60 and cfg.tools.restrict_to_workspace is True
    assert cfg.gateway.port == 18790 and info.warnings == []


def test_every_key_the_reference_documents_name(tmp_path):
    data = {
        "channels": {
            "telegram": {"enabled": True, "token": "YOUR_BOT_TOKEN", "allowFrom": ["123456789"]},
            "whatsapp": {
                "enabled": True,
                "allowFrom": ["+1234567890"],
                "bridgeToken": "your-secret-token-here",
            },
            "email": {"enabled": True, "allowFrom": ["user@example.com"]},
        },
        "agents": {"defaults": {"restrictToWorkspace": True, "execConfig": {"timeout": 30}}},
    }
    cfg, info = load_config(write(tmp_path, data))
    assert cfg.tools.restrict_to_workspace and cfg.tools.exec.timeout == 30
    assert cfg.channels.whatsapp.bridge_token == "your-secret-token-here"
    assert [w for w in info.warnings if "ignored" in w] == []


def test_provider_timeouts_and_progress_keys(tmp_path):
    data = {
        "providers": {"custom": {"apiBase": "http://127.0.0.1:8080/v1", "timeout": 600}},
        "channels": {"sendProgress": False, "sendToolHints": True},
    }
    cfg, _ = load_config(write(tmp_path, data))
    assert cfg.providers.custom.timeout == 600.0 and cfg.providers.custom.connect_timeout == 10.0
    assert cfg.providers.custom.stream is True and cfg.providers.custom.context_window == 0
    assert cfg.channels.send_progress is False and cfg.channels.send_tool_hints is True


def test_permission_advice_names_the_file_never_chmod_on_a_shared_folder(tmp_path, monkeypatch):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)  # like /tmp
    monkeypatch.setenv("NANOBOT_HOME", str(tmp_path / "home"))
    path = shared / "config.json"
    path.write_text("{}")
    path.chmod(0o644)  # as nanobot writes it
    _, info = load_config(path)
    text = "\n".join(info.permission_warnings)
    assert f"chmod 600 {path}" in text and f"mv {path}" in text
    assert "chmod 700" not in text
