"""Onboarding's model question: a local server (Ollama, vLLM, any OpenAI-compatible URL) or a
hosted API, the model to use, and a check that a local server answers."""

from __future__ import annotations

import getpass
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from nanobot import paths
from nanobot.config.loader import ENV_KEYS

HOSTED = ("openai", "anthropic", "openrouter", "deepseek", "groq", "gemini")
LOCAL_DEFAULTS = {
    "ollama": "http://127.0.0.1:11434/v1",
    "vllm": "http://127.0.0.1:8000/v1",
    "custom": "http://127.0.0.1:8080/v1",  # llama.cpp's llama-server
}
CHECK_TIMEOUT = (3.0, 5.0)


@dataclass
class ModelChoice:
    """What onboarding writes: providers.<provider> settings and agents.defaults.model."""

    provider: str = ""
    model: str = ""
    api_base: str = ""
    key_ref: str = ""  # a keyring: or file: reference to the stored key
    notes: list[str] = field(default_factory=list)  # what the check found, for the summary


def list_models(api_base: str) -> list[str] | None:
    """The model ids an OpenAI-compatible server lists at GET {api_base}/models; None when it
    does not answer like one."""
    from nanobot.providers.http import get_json

    data = get_json(api_base.rstrip("/") + "/models", {}, CHECK_TIMEOUT)
    entries = data.get("data") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        # Ollama's native listing, for a URL given without /v1.
        entries = data.get("models") if isinstance(data, dict) else None
        if not isinstance(entries, list):
            return None
    ids = [e.get("id") or e.get("name") for e in entries if isinstance(e, dict)]
    return [str(i) for i in ids if i]


def check_local(provider: str, api_base: str, model: str) -> ModelChoice:
    """A ModelChoice for a local server, with what the server said about it in `notes`."""
    choice = ModelChoice(provider, model, api_base)
    models = list_models(api_base)
    if models is None:
        choice.notes.append(
            f"{api_base} did not answer (GET /models); start the server before chatting"
        )
    elif not choice.model and models:
        choice.model = models[0]
        choice.notes.append(f"{api_base} answers; it serves: {', '.join(models[:5])}")
    elif models and choice.model not in models:
        choice.notes.append(
            f"{api_base} answers but does not list {choice.model!r} (it lists: "
            f"{', '.join(models[:5])}); check agents.defaults.model"
        )
    else:
        choice.notes.append(f"{api_base} answers and serves {choice.model!r}")
    return choice


def store_key(provider: str, key: str) -> str:
    """Store a secret in NANOBOT_HOME/credentials/<provider> (0600); its file: reference."""
    cred_dir = paths.ensure_dir(paths.home() / "credentials")
    path = cred_dir / provider
    paths.atomic_write(path, key + "\n")
    return f"file:{path}"


def ask_model(ask: Callable[[str, str], str], secret: Callable[[str], str] = getpass.getpass):
    """The interactive question; returns a ModelChoice (provider "" = decide later)."""
    from nanobot.providers.registry import SPECS

    have = [n for n in HOSTED if os.environ.get(ENV_KEYS.get(n, ""))]
    if have:
        print(f"Found an API key in the environment for: {', '.join(have)}.")
    print("Which language model should nanobot use?")
    print("  1) Ollama on this machine          2) vLLM")
    print("  3) another OpenAI-compatible server (llama.cpp, LM Studio, …)")
    print(f"  4) a hosted API ({', '.join(HOSTED)})")
    answer = ask("Choose 1-4 (Enter: decide later):", "").strip().lower()
    local = {"1": "ollama", "ollama": "ollama", "2": "vllm", "vllm": "vllm", "3": "custom"}
    if answer in local:
        provider = local[answer]
        base = ask(f"Server URL [{LOCAL_DEFAULTS[provider]}]:", LOCAL_DEFAULTS[provider])
        models = list_models(base)
        default = (models or [""])[0]
        if models:
            print(f"The server answers; it serves: {', '.join(models[:5])}")
        else:
            print(f"No answer from {base}/models yet (is the server running?).")
        model = ask(f"Model name [{default}]:" if default else "Model name:", default)
        return check_local(provider, base, model)
    if answer in ("4", *HOSTED):
        name = answer if answer in HOSTED else ask(f"Provider [{'/'.join(HOSTED)}]:", "")
        if name not in HOSTED:
            print(f"Unknown provider {name!r}; skipped.")
            return ModelChoice()
        key = secret(f"{name} API key (hidden; Enter to use {ENV_KEYS[name]} instead): ").strip()
        default = SPECS[name].default_model
        model = ask(f"Model [{default}]:", default)
        from nanobot.commands.onboard_keyring import keep_key

        return ModelChoice(name, model, key_ref=keep_key(name, key, ask) if key else "")
    return ModelChoice()
