"""Provider selection from the config, and the lightness of importing the registry."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from nanobot.config.loader import ENV_KEYS, load_config
from nanobot.config.schema import Config, ProvidersConfig
from nanobot.errors import ConfigError
from nanobot.providers.anthropic import AnthropicProvider
from nanobot.providers.openai import OpenAIProvider
from nanobot.providers.registry import PROVIDERS, SPECS, make_provider, select
from tests.fakes.llm_server import ScriptedLLMServer, reply

REPO = Path(__file__).resolve().parent.parent


def config(model: str = "", keys=(), bases=None) -> Config:
    cfg = Config()
    cfg.agents.defaults.model = model
    for name in keys:
        getattr(cfg.providers, name).api_key = f"key-for-{name}"
    for name, base in (bases or {}).items():
        getattr(cfg.providers, name).api_base = base
    return cfg


@pytest.mark.parametrize(
    ("model", "keys", "bases", "provider", "sent_model", "why"),
    [
        # (1) an explicit prefix naming a configured provider
        ("anthropic/claude-x", ["openrouter", "anthropic"], {}, "anthropic", "claude-x", "prefix 'anthropic/'"),
        ("deepseek/deepseek-chat", ["deepseek", "openai"], {}, "deepseek", "deepseek-chat", "prefix"),
        ("ollama/llama3.2", [], {}, "ollama", "llama3.2", "prefix 'ollama/'"),
        ("openrouter/anthropic/claude-x", ["openrouter"], {}, "openrouter", "anthropic/claude-x", "prefix"),
        ("openrouter/auto", ["openrouter"], {}, "openrouter", "openrouter/auto", "prefix"),
        ("vllm/meta-llama/Llama-3.1-8B", [], {"vllm": "http://gpu:8000/v1"}, "vllm", "meta-llama/Llama-3.1-8B", "prefix"),
        # (2) a keyword whose provider is configured
        ("gpt-4o", ["openrouter", "openai"], {}, "openai", "gpt-4o", "keyword 'gpt'"),
        ("o3-mini", ["anthropic", "openai"], {}, "openai", "o3-mini", "keyword 'o3'"),
        ("claude-sonnet-4-5", ["openai", "anthropic"], {}, "anthropic", "claude-sonnet-4-5", "keyword 'claude'"),
        ("qwen-max", ["openai", "dashscope"], {}, "dashscope", "qwen-max", "keyword 'qwen'"),
        ("glm-4-plus", ["openai", "zhipu"], {}, "zhipu", "glm-4-plus", "keyword 'glm'"),
        ("kimi-k2", ["openai", "moonshot"], {}, "moonshot", "kimi-k2", "keyword 'kimi'"),
        ("gemini-2.5-flash", ["openai", "gemini"], {}, "gemini", "gemini-2.5-flash", "keyword 'gemini'"),
        ("gpt-4o", [], {"openai": "http://proxy.local/v1"}, "openai", "gpt-4o", "keyword"),
        # (3) the first configured provider, model passed through
        ("anthropic/claude-x", ["openrouter"], {}, "openrouter", "anthropic/claude-x", "providers.anthropic.apiKey or ANTHROPIC_API_KEY is not set"),
        ("anthropic/claude-x", ["aihubmix"], {}, "aihubmix", "claude-x", "first configured provider"),
        ("my-finetune", ["deepseek", "groq"], {}, "deepseek", "my-finetune", "first configured provider"),
        ("llama-3.3-70b-versatile", ["groq"], {}, "groq", "llama-3.3-70b-versatile", "first configured"),
        # a custom endpoint written in the config serves what no keyword claims
        ("local-model", ["openai"], {"custom": "http://127.0.0.1:9/v1"}, "custom", "local-model", "your server at providers.custom.apiBase = http://127.0.0.1:9/v1"),
        # a local "qwen" behind custom is not a DashScope problem
        ("qwen2.5-0.5b-instruct", [], {"custom": "http://127.0.0.1:8080/v1"}, "custom", "qwen2.5-0.5b-instruct", "your server at"),
        ("gpt-4o", ["openai"], {"custom": "http://127.0.0.1:9/v1"}, "openai", "gpt-4o", "keyword"),
        # an empty model: the first configured provider and its default
        ("", ["anthropic"], {}, "anthropic", "claude-sonnet-4-5", "no model set"),
        ("", ["openai", "openrouter"], {}, "openrouter", "openai/gpt-4o-mini", "default"),
        ("", [], {"ollama": "http://127.0.0.1:11434/v1"}, "ollama", "llama3.2", "default"),
    ],
)  # fmt: skip
def test_selection_table(model, keys, bases, provider, sent_model, why):
    sel = select(config(model, keys, bases))
    assert sel.spec.name == provider
    assert sel.model == (model or sel.spec.default_model)
    assert sel.spec.api_model(sel.model) == sent_model
    assert why in sel.reason
    assert provider in sel.reason and "\n" not in sel.reason


def test_local_qwen_reason_does_not_mention_dashscope():
    sel = select(config("qwen2.5-0.5b", [], {"custom": "http://127.0.0.1:8080/v1"}))
    assert "dashscope" not in sel.reason.lower() and "DASHSCOPE" not in sel.reason


def test_reason_reads_as_one_line_for_status():
    assert select(config("gpt-4o", ["openai"])).reason == "model 'gpt-4o' → openai (keyword 'gpt')"


def test_no_key_names_the_env_vars_the_config_keys_and_onboard():
    with pytest.raises(ConfigError) as exc:
        select(config())
    message = str(exc.value)
    for var in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "OPENROUTER_API_KEY"):
        assert var in message
    assert "providers.<name>.apiKey" in message and "nanobot onboard" in message
    assert "providers.custom.apiBase" in message
    assert len(message) < 300  # one line a person reads, not a wall


def test_no_key_for_a_named_model_says_which_key():
    with pytest.raises(
        ConfigError, match=r"'claude-x' needs providers.anthropic.apiKey or ANTHROPIC_API_KEY"
    ):
        select(config("claude-x"))


def test_a_key_alone_does_not_locate_a_local_server():
    with pytest.raises(ConfigError):
        select(config("my-model", keys=["vllm"]))


def test_custom_base_without_model_asks_for_the_model():
    with pytest.raises(ConfigError, match="agents.defaults.model"):
        select(config("", bases={"custom": "http://127.0.0.1:9/v1"}))


def test_table_covers_the_config_schema_and_env_keys():
    assert set(SPECS) == {f.name for f in dataclasses.fields(ProvidersConfig)}
    for name, var in ENV_KEYS.items():
        assert SPECS[name].env_key == var
    assert SPECS["gemini"].default_api_base.endswith("/v1beta/openai")
    assert SPECS["ollama"].default_api_base == "http://localhost:11434/v1"
    assert {s.kind for s in PROVIDERS} == {"openai", "anthropic"}
    assert [s.name for s in PROVIDERS if s.is_gateway] == ["openrouter", "aihubmix"]


def test_make_provider_uses_kind_base_and_key():
    anthropic = make_provider(select(config("claude-x", ["anthropic"])))
    assert isinstance(anthropic, AnthropicProvider)
    assert anthropic.url == "https://api.anthropic.com/v1/messages"
    assert anthropic.headers()["x-api-key"] == "key-for-anthropic"
    gemini = make_provider(select(config("gemini-2.5-flash", ["gemini"])))
    assert isinstance(gemini, OpenAIProvider) and gemini.name == "gemini"
    assert gemini.url == "https://generativelanguage.googleapis.com/v1beta/openai/chat/completions"


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_config_file_to_chat_end_to_end(tmp_path, monkeypatch, kind):
    for var in ENV_KEYS.values():
        monkeypatch.delenv(var, raising=False)
    name = "custom" if kind == "openai" else "anthropic"
    model = "house-model" if kind == "openai" else "anthropic/claude-x"
    with ScriptedLLMServer(kind) as llm:
        llm.script([reply("from the config")])
        provider_cfg = {"apiBase": llm.url, "extraHeaders": {"X-Custom-Thing": "abc123def"}}
        if kind == "anthropic":
            monkeypatch.setenv("ANTHROPIC_API_KEY", "env-key-for-anthropic")
        path = tmp_path / "config.json"
        path.write_text(
            json.dumps(
                {"agents": {"defaults": {"model": model}}, "providers": {name: provider_cfg}}
            )
        )
        cfg, _ = load_config(path)
        sel = select(cfg)
        assert sel.spec.name == name
        resp = asyncio.run(
            make_provider(sel).chat([{"role": "user", "content": "hi"}], None, sel.model, 64, 0.5)
        )
        assert resp.content == "from the config"
        (req,) = llm.requests
    assert req.headers["X-Custom-Thing"] == "abc123def"
    if kind == "anthropic":
        assert req.header("x-api-key") == "env-key-for-anthropic"
        assert req.json["model"] == "claude-x"
    else:
        assert req.header("Authorization") is None
        assert req.json["model"] == "house-model"


def test_importing_the_registry_does_not_import_requests():
    code = "import nanobot.providers.registry, sys; assert 'requests' not in sys.modules, 'requests imported'"
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 0, proc.stderr
