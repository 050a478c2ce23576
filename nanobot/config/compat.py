"""nanobot's own config.json (0.1.x to 0.3.x) loads here: what to do with the settings we lack.

Settings of features this nanobot does not have are collected while decoding and reported as
one warning per top-level section (agents, channels, providers, tools, …), naming what was
ignored. They never stop the start, except where ignoring them would surprise someone:
  * another chat app (Discord, Slack, …) with "enabled": true — people expect to reach the bot
    there, so it is a ConfigError naming the key to turn off;
  * tools.exec.enable / tools.file.enable set to false — the user turned off a tool this
    nanobot would otherwise run, so it is a ConfigError too.
nanobot's web UI channel ("websocket") and its background services (heartbeat, dream,
transcription) are enabled by nanobot's own defaults, so they only warn.
Keys not known to nanobot either stay ordinary unknown keys ("did you mean …?").
"""

from __future__ import annotations

# Keys nanobot writes in sections we have, which this version does not use (from the config
# files nanobot 0.1.3 … 0.3.5 write at onboarding).
NANOBOT_KEYS: dict[str, frozenset[str]] = {
    section: frozenset(keys.split())
    for section, keys in {
        "": "api audio modelPresets transcription",
        "agents.defaults": "botIcon botName contextWindowTokens disabledSkills dream "
        "fallbackModels idleCompactAfterMinutes idleCompactCheckIntervalSeconds "
        "maxConcurrentSubagents maxToolResultChars memoryWindow modelPreset provider "
        "providerRetryMode reasoningEffort timezone timezoneMode toolHintMaxLength "
        "unifiedSession",
        "channels": "extractDocumentText sendMaxRetries showReasoning transcriptionLanguage "
        "transcriptionProvider",
        "channels.email": "allowedAttachmentTypes maxAttachmentSize maxAttachmentsPerEmail "
        "postActionExpunge postActionIgnoreSkipped postActionMoveMailbox trustedAuthservIds "
        "verifyDkim verifySpf",
        "channels.telegram": "connectionPoolSize groupPolicy inlineKeyboards mode poolTimeout "
        "reactEmoji replyToMessage richMessages streamEditInterval streaming webhookListenHost "
        "webhookListenPort webhookMaxConnections webhookPath webhookSecretToken webhookUrl",
        "channels.whatsapp": "databasePath groupPolicy proxy",
        "gateway": "heartbeat restartMode",
        "providers.*": "apiType extraBody extraQuery proxy thinkingStyle region profile",
        "tools": "cliApps file imageGeneration maxSessionMessagesPerMinute mcpServers my "
        "ssrfWhitelist webuiAllowLocalServiceAccess webuiAllowRemotePackageInstall",
        "tools.exec": "allowPatterns allowedEnvKeys denyPatterns enable pathAppend pathPrepend "
        "restrictToWorkspace sandboxRoBinds sandboxRwBinds",
        "tools.web": "enable proxy userAgent",
        "tools.web.fetch": "useJinaReader",  # never honoured: no third-party reader service
    }.items()
}
# Values that mean "nothing set" in nanobot's files, besides null/""/[]/{}/false.
_UNSET = ("auto",)
_WEB_UI_CHANNELS = frozenset({"websocket", "webui"})
_MAX_LISTED = 8


def _is_unset(value: object) -> bool:
    if isinstance(value, dict):
        return all(_is_unset(v) for v in value.values())
    return value in (None, "", False) or value == [] or value in _UNSET


class Leftovers:
    """Collects nanobot settings we lack during one decode; `warnings()` reports them."""

    def __init__(self) -> None:
        # top-level section → group of settings → names
        self._ignored: dict[str, dict[str, list[str]]] = {}

    def take(self, section: str, key: str, value: object, fail) -> bool:
        """Whether `section.key` is a nanobot setting (recorded); `fail(path, problem, fix)`
        raises for the ones that must not be ignored. False: an ordinary unknown key."""
        path = f"{section}.{key}" if section else key
        if section == "channels" and isinstance(value, dict) and "enabled" in value:
            return self._chat_app(path, key, value, fail)
        if section == "providers" and (value is None or isinstance(value, dict)):
            return self._provider(path, key, value)
        table = "providers.*" if section.startswith("providers.") else section
        if key not in NANOBOT_KEYS.get(table, ()):
            return False
        if section == "tools.exec" and key == "enable" and value is False:
            fail(
                path,
                "nanobot's switch to turn the shell tool off; this nanobot cannot turn it off",
                "remove the key, or keep exec confined with tools.exec.sandbox "
                '"bwrap" and tools.restrictToWorkspace true',
            )
        if section == "tools" and key == "file" and (value or {}).get("enable") is False:
            fail(
                f"{path}.enable",
                "nanobot's switch to turn the file tools off; this nanobot cannot",
                "remove the key (the file tools stay inside the workspace when "
                "tools.restrictToWorkspace is true)",
            )
        if key == "mcpServers" and value:
            self._add(path, "MCP servers (MCP is not supported)", ", ".join(map(str, value)))
        elif not _is_unset(value):
            self._add(path)
        return True

    def _chat_app(self, path: str, name: str, value: dict, fail) -> bool:
        if name in _WEB_UI_CHANNELS:
            if not _is_unset(value):
                self._add(path, "web UI (use 'nanobot agent' or Telegram)", name)
            return True
        if value.get("enabled") is True:
            fail(
                f"{path}.enabled",
                f"the {name} chat app is not available in this nanobot (only telegram is)",
                f"set {path}.enabled to false or remove {path}",
            )
        self._add(path, "other chat apps (all off)", name)
        return True

    def _provider(self, path: str, name: str, value: dict | None) -> bool:
        if value and (value.get("apiKey") or value.get("apiBase")):
            self._add(
                path,
                "providers this nanobot cannot use, WITH A KEY OR apiBase (for an "
                "OpenAI-compatible endpoint use providers.custom.apiBase)",
                name,
            )
        else:
            self._add(path, "providers not available here (no key set)", name)
        return True

    def _add(self, path: str, group: str = "settings", item: str = "") -> None:
        top, _, rest = path.partition(".")
        if not rest:
            top, rest = "", path
        self._ignored.setdefault(top, {}).setdefault(group, []).append(item or rest)

    def warnings(self, source: object) -> list[str]:
        """One line per top-level section that had ignored settings."""
        out = []
        for top, groups in self._ignored.items():
            parts = []
            for group, items in groups.items():
                listed = ", ".join(items[:_MAX_LISTED])
                more = f" and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else ""
                parts.append(f"{group}: {listed}{more}")
            where = f"'{top}'" if top else "the top level"
            out.append(
                f"{source}: ignored nanobot settings in {where} that this version does not "
                f"have — {'; '.join(parts)}"
            )
        return out
