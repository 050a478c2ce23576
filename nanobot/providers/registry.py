"""The provider table and the rule that picks one provider and model from the config."""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass

from nanobot.config.loader import ENV_KEYS
from nanobot.config.schema import Config, ProviderConfig
from nanobot.errors import ConfigError
from nanobot.providers.base import Provider, api_model


@dataclass(frozen=True)
class ProviderSpec:
    """One LLM API. strip_prefix: the endpoint takes bare model names, so any "vendor/" goes;
    otherwise only "<name>/" is removed (gateways and local servers use "org/model" ids)."""

    name: str
    keywords: tuple[str, ...]
    env_key: str
    default_api_base: str
    default_model: str
    kind: str = "openai"
    strip_prefix: bool = True
    is_gateway: bool = False
    is_local: bool = False

    def api_model(self, model: str) -> str:
        """The model name this endpoint is sent for the configured `model`."""
        keeps_vendor = self.is_gateway and not self.strip_prefix
        return api_model(model, self.name, self.strip_prefix, keeps_vendor)


def _spec(name, keywords, base, model, **kw) -> ProviderSpec:
    return ProviderSpec(name, keywords, ENV_KEYS.get(name, ""), base, model, **kw)


# Order is the fallback priority. Endpoints the user pointed at with an apiBase (custom and
# local servers) come first: writing one down is a deliberate choice, unlike an ambient env key.
# Gateways come next because they serve every vendor's models, as in nanobot.
# fmt: off
PROVIDERS: tuple[ProviderSpec, ...] = (
    _spec("custom", (), "", "", strip_prefix=False, is_local=True),
    _spec("vllm", ("vllm",), "http://localhost:8000/v1", "", strip_prefix=False, is_local=True),
    _spec("ollama", ("ollama",), "http://localhost:11434/v1", "llama3.2", strip_prefix=False, is_local=True),
    _spec("openrouter", ("openrouter",), "https://openrouter.ai/api/v1", "openai/gpt-4o-mini", strip_prefix=False, is_gateway=True),
    _spec("aihubmix", ("aihubmix",), "https://aihubmix.com/v1", "gpt-4o-mini", is_gateway=True),
    _spec("anthropic", ("claude",), "https://api.anthropic.com", "claude-sonnet-4-5", kind="anthropic"),
    _spec("openai", ("gpt", "chatgpt", "o1", "o3", "o4"), "https://api.openai.com/v1", "gpt-4o-mini"),
    _spec("deepseek", ("deepseek",), "https://api.deepseek.com", "deepseek-chat"),
    _spec("gemini", ("gemini",), "https://generativelanguage.googleapis.com/v1beta/openai", "gemini-2.5-flash"),
    # Groq also hosts "meta-llama/…" and "openai/gpt-oss-…" ids, so only "groq/" is stripped;
    # "llama" is no keyword: too many hosts serve Llama to guess one.
    _spec("groq", ("groq",), "https://api.groq.com/openai/v1", "llama-3.3-70b-versatile", strip_prefix=False),
    _spec("zhipu", ("glm", "chatglm", "zhipu"), "https://open.bigmodel.cn/api/paas/v4", "glm-4-flash"),
    _spec("dashscope", ("qwen", "dashscope"), "https://dashscope.aliyuncs.com/compatible-mode/v1", "qwen-plus"),
    _spec("moonshot", ("kimi", "moonshot"), "https://api.moonshot.ai/v1", "moonshot-v1-8k"),
)
# fmt: on
SPECS = {spec.name: spec for spec in PROVIDERS}
# API kind → "module:Class", imported only for the provider actually used (start-up time).
_KINDS = {
    "openai": "nanobot.providers.openai:OpenAIProvider",
    "anthropic": "nanobot.providers.anthropic:AnthropicProvider",
}


@dataclass
class Selection:
    """The chosen provider; `model` is what to pass to Provider.chat, `reason` one line for status."""

    spec: ProviderSpec
    provider_cfg: ProviderConfig
    model: str
    reason: str


def _configured(spec: ProviderSpec, pc: ProviderConfig) -> bool:
    # A key alone does not say where a local server runs; cloud APIs have a known base.
    if spec.is_local:
        return bool(pc.api_base)
    return bool(pc.api_key or pc.api_base)


def _keyword(spec: ProviderSpec, model: str) -> str | None:
    tokens = [t for t in re.split(r"[/:_.\-\s]+", model.lower()) if t]
    for keyword in spec.keywords:
        if any(t.startswith(keyword) for t in tokens):
            return keyword
    return None


def _missing(spec: ProviderSpec) -> str:
    env = f" or {spec.env_key}" if spec.env_key else ""
    what = "apiBase" if spec.is_local else "apiKey"
    return f"providers.{spec.name}.{what}{env}"


def _no_provider(model: str, wanted: ProviderSpec | None) -> ConfigError:
    """One short line: what is missing and the three ways to fix it."""
    first = f"model {model!r} needs {_missing(wanted)}; " if wanted else ""
    return ConfigError(
        f"no language model is set up: {first}fix: run 'nanobot onboard', export an API key "
        "(OPENAI_API_KEY, ANTHROPIC_API_KEY, OPENROUTER_API_KEY, …; or providers.<name>.apiKey), "
        "or point providers.custom.apiBase at a local OpenAI-compatible server"
    )


def _named(
    model: str, pcs: dict[str, ProviderConfig]
) -> tuple[ProviderSpec | None, str, ProviderSpec | None]:
    """(chosen, why, wanted): the configured provider the model names by prefix, else by
    keyword; `wanted` is the first provider it names that is not configured (for messages)."""
    wanted = None
    head, sep, _ = model.partition("/")
    spec = SPECS.get(head.lower()) if sep else None
    if spec is not None:
        # An explicit "ollama/…" or "vllm/…" is enough to try the server's default address.
        if _configured(spec, pcs[spec.name]) or (spec.is_local and spec.default_api_base):
            return spec, f"prefix '{head}/'", None
        wanted = spec
    for spec in PROVIDERS:
        keyword = _keyword(spec, model)
        if keyword and _configured(spec, pcs[spec.name]):
            return spec, f"keyword {keyword!r}", None
        if keyword and wanted is None:
            wanted = spec
    return None, "", wanted


def select(cfg: Config) -> Selection:
    """Pick the provider for agents.defaults.model; raise ConfigError when none can serve it.

    Order: an explicit "<provider>/" prefix whose provider is configured → a keyword in the
    model name whose provider is configured → the first configured provider in PROVIDERS order,
    the model passed through. An empty model takes the first configured provider and its
    default model. "Configured" means an apiKey or apiBase (local servers: an apiBase).
    """
    model = cfg.agents.defaults.model.strip()
    pcs = {spec.name: getattr(cfg.providers, spec.name) for spec in PROVIDERS}
    chosen, why, wanted = _named(model, pcs) if model else (None, "", None)
    if chosen is None:
        chosen = next((s for s in PROVIDERS if _configured(s, pcs[s.name])), None)
        if chosen is None:
            raise _no_provider(model, wanted)
        if chosen.is_local:
            # A server the user pointed at serves whatever it serves: a "qwen" there is not
            # a DashScope model, so the keyword's provider is not mentioned.
            why = f"your server at providers.{chosen.name}.apiBase = {pcs[chosen.name].api_base}"
        else:
            why = "first configured provider" + (
                f"; {_missing(wanted)} is not set" if wanted else ""
            )
    pc = pcs[chosen.name]
    if model:
        return Selection(chosen, pc, model, f"model {model!r} → {chosen.name} ({why})")
    if not chosen.default_model:
        raise ConfigError(
            f"providers.{chosen.name}.apiBase is set but agents.defaults.model is empty — "
            "fix: set agents.defaults.model to a model name that server serves"
        )
    reason = f"no model set → {chosen.name}'s default {chosen.default_model!r} ({why})"
    return Selection(chosen, pc, chosen.default_model, reason)


def make_provider(sel: Selection, **post_options) -> Provider:
    """Build the provider for a Selection with providers.<name>'s timeout, connectTimeout,
    stream and contextWindow; post_options override them and go to http.open_request."""
    spec, pc = sel.spec, sel.provider_cfg
    module, name = _KINDS[spec.kind].split(":")
    cls = getattr(importlib.import_module(module), name)
    options = {
        "timeout": (pc.connect_timeout, pc.timeout),
        "stream": pc.stream,
        "context_window": pc.context_window,
        # Local servers say how large a context they run with; hosted APIs do not.
        "probe_context": spec.is_local and spec.kind == "openai",
        **post_options,
    }
    return cls(
        spec.name,
        pc.api_base or spec.default_api_base,
        pc.api_key,
        pc.extra_headers,
        strip_prefix=spec.strip_prefix,
        keeps_vendor=spec.is_gateway and not spec.strip_prefix,
        **options,
    )
