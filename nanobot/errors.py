"""Errors for the operator: caught once at the CLI/gateway edge and printed as one line."""


class NanobotError(Exception):
    """Base class; the message names the fix. `exit_code` is what the CLI exits with."""

    exit_code = 1


class ConfigError(NanobotError):
    """The config file is unreadable, invalid or refers to a missing secret."""

    exit_code = 2


# What went wrong with an LLM call, in the terms a person can act on.
PROVIDER_ERROR_KINDS = (
    "auth",  # the key was refused (401/403)
    "quota",  # out of credit / quota (402, 429 insufficient_quota)
    "context_length",  # the prompt does not fit the model's context window
    "bad_request",  # any other refusal of the request (4xx) or an answer we cannot read
    "unreachable",  # no connection, refused, DNS, or the connection broke mid-answer
    "overloaded",  # 429 rate limit / 5xx / 529 that outlasted the retries
    "timeout",  # the server stayed silent longer than providers.<name>.timeout
)
_DEFAULT_USER_MESSAGES = {
    "auth": "The language model provider refused the API key.",
    "quota": "The language model provider says the account is out of credit or quota.",
    "context_length": "The conversation is too long for this model.",
    "bad_request": "The language model server refused the request.",
    "unreachable": "Could not reach the language model server.",
    "overloaded": "The language model server is busy; please try again in a minute.",
    "timeout": "The language model took too long to answer.",
}


class ProviderError(NanobotError):
    """An LLM call failed (after its retries where retrying makes sense).

    str(e) is the operator's detail for the log (status, redacted excerpt, target host, fix).
    `kind` is one of PROVIDER_ERROR_KINDS; `user_message` is one or two short sentences safe
    to show to the person chatting: no key, no URL query, at most a short redacted excerpt
    of the server's text, and the fix where there is one.
    """

    def __init__(self, message: str, *, kind: str = "bad_request", user_message: str = "") -> None:
        super().__init__(message)
        if kind not in PROVIDER_ERROR_KINDS:
            raise ValueError(f"unknown ProviderError kind {kind!r}")
        self.kind = kind
        self.user_message = user_message or _DEFAULT_USER_MESSAGES[kind]


class SandboxUnavailable(NanobotError):
    """tools.exec.sandbox is "bwrap" but bubblewrap cannot run here."""


class RootRefused(NanobotError):
    """nanobot was started as root without --allow-root."""

    exit_code = 2
