"""Onboarding's model question, answered by a script, against a real local server."""

from __future__ import annotations

import pytest

from nanobot.commands.onboard_model import ask_model, list_models
from tests.fakes.llm_server import ScriptedLLMServer


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("NANOBOT_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    # No desktop keyring here: a typed key goes to the credentials folder (tests/test_keyring.py).
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", f"unix:path={tmp_path}/no-bus")


def answers(*replies: str):
    queue = list(replies)
    asked: list[str] = []

    def ask(question: str, default: str) -> str:
        asked.append(question)
        reply = queue.pop(0)
        return reply or default

    return ask, asked


def test_local_server_choice_lists_its_models_and_offers_the_first(capsys):
    with ScriptedLLMServer("openai") as llm:
        ask, asked = answers("3", llm.url, "")
        choice = ask_model(ask)
        assert list_models(llm.url) == ["scripted"]
        url = llm.url
    assert (choice.provider, choice.api_base, choice.model) == ("custom", url, "scripted")
    assert "it serves: scripted" in capsys.readouterr().out
    assert asked[2] == "Model name [scripted]:"


def test_ollama_default_url_is_offered_and_a_silent_server_is_noted():
    ask, asked = answers("1", "http://127.0.0.1:9/v1", "llama3.2")
    choice = ask_model(ask)
    assert asked[1] == "Server URL [http://127.0.0.1:11434/v1]:"
    assert choice.provider == "ollama" and choice.model == "llama3.2"
    assert any("did not answer" in n for n in choice.notes)


def test_hosted_choice_stores_the_key_and_asks_the_model(tmp_path):
    ask, asked = answers("openai", "gpt-4o")
    choice = ask_model(ask, secret=lambda prompt: "sk-test-onboard-123")
    assert asked[-1] == "Model [gpt-4o-mini]:"
    assert (choice.provider, choice.model) == ("openai", "gpt-4o")
    cred = tmp_path / "home" / "credentials" / "openai"
    assert choice.key_ref == f"file:{cred}" and cred.read_text().strip() == "sk-test-onboard-123"
    assert oct(cred.stat().st_mode & 0o777) == "0o600"


def test_enter_decides_later():
    ask, _ = answers("")
    assert ask_model(ask).provider == ""
