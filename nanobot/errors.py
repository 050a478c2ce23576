"""Errors for the operator: caught once at the CLI/gateway edge and printed as one line."""


class NanobotError(Exception):
    """Base class; the message names the fix. `exit_code` is what the CLI exits with."""

    exit_code = 1


class ConfigError(NanobotError):
    """The config file is unreadable, invalid or refers to a missing secret."""

    exit_code = 2


class ProviderError(NanobotError):
    """The LLM call failed after its retries; details are in the log, not shown to users."""


class SandboxUnavailable(NanobotError):
    """tools.exec.sandbox is "bwrap" but bubblewrap cannot run here."""


class RootRefused(NanobotError):
    """nanobot was started as root without --allow-root."""

    exit_code = 2
