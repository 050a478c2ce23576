"""Secrets kept in the desktop's keyring: `keyring:SERVICE/ACCOUNT` references, and where each
secret of a loaded config came from.

Linux reads the Secret Service (GNOME Keyring, KWallet, KeePassXC) through `secret-tool`, macOS
the login keychain through `security`; both are subprocesses, so there is no Python dependency.
The secret never appears on a command line: lookups print it on stdout, and storing feeds it
on stdin. Items use the attributes `service` and `username`, as the Python `keyring` library
does, so an entry made with `keyring set nanobot openai` is found by `keyring:nanobot/openai`.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from typing import Protocol

PREFIX = "keyring:"
LOOKUP_TIMEOUT = 30.0  # a locked desktop keyring asks its owner to unlock it: give them time
PROBE_TIMEOUT = 5.0

# Where a secret lives, as `nanobot doctor` names it.
ENVIRONMENT, KEYRING, FILE, LITERAL = "environment", "keyring", "file", "literal"


@dataclass(frozen=True)
class SecretOrigin:
    """Where one config value's secret came from; `ref` is the reference, never the secret
    (the variable name, `keyring:…`, the file path; "" for a literal)."""

    key: str  # the config key, e.g. providers.openai.apiKey
    kind: str  # ENVIRONMENT | KEYRING | FILE | LITERAL
    ref: str


class KeyringError(Exception):
    """A keyring: reference cannot be resolved; `problem` and `fix` are for the person."""

    def __init__(self, problem: str, fix: str) -> None:
        super().__init__(f"{problem} — fix: {fix}")
        self.problem = problem
        self.fix = fix


def parse_ref(value: str) -> tuple[str, str]:
    """("nanobot", "openai") for "keyring:nanobot/openai"; KeyringError when malformed."""
    service, sep, account = value[len(PREFIX) :].partition("/")
    if not sep or not service.strip() or not account.strip():
        raise KeyringError(
            f"'{value}' is not a keyring reference",
            'write it as "keyring:SERVICE/ACCOUNT", e.g. "keyring:nanobot/openai"',
        )
    return service, account


class Keyring(Protocol):
    """One platform's keyring, driven through its command-line tool."""

    name: str  # "the Secret Service", "the login keychain"

    def lookup(self, service: str, account: str) -> str | None:
        """The secret, or None when there is no such entry; KeyringError when the keyring
        cannot be asked (tool missing, no session, locked and not unlocked in time)."""

    def store_command(self, service: str, account: str) -> str:
        """The shell command a person runs to store the entry (it asks for the secret)."""

    def can_store(self) -> bool:
        """Whether store() works here (a reachable keyring that takes the secret on stdin)."""

    def store(self, service: str, account: str, secret: str) -> None:
        """Add or replace the entry; KeyringError when that fails."""


def _run(argv: list[str], timeout: float, stdin: str | None = None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(
            argv,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=None if stdin is not None else subprocess.DEVNULL,
        )
    except FileNotFoundError:
        raise KeyringError(f"{argv[0]} is not installed", _install_hint(argv[0])) from None
    except subprocess.TimeoutExpired:
        raise KeyringError(
            f"{argv[0]} did not answer within {timeout:g} s (a locked keyring waiting to be "
            "unlocked?)",
            "unlock the keyring (log in to the desktop) and try again",
        ) from None


def _install_hint(tool: str) -> str:
    if tool == "secret-tool":
        return "install it (Debian/Ubuntu: apt-get install libsecret-tools; Fedora: dnf install libsecret)"
    return f"install {tool} or use a file: or ${{VAR}} reference instead"


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0][:200] if lines else "no message"


class SecretTool:
    """The freedesktop Secret Service through libsecret's `secret-tool` (Linux, BSD)."""

    name = "the Secret Service"

    def __init__(self, tool: str = "secret-tool", timeout: float = LOOKUP_TIMEOUT) -> None:
        self.tool = tool
        self.timeout = timeout

    def _attrs(self, service: str, account: str) -> list[str]:
        return ["service", service, "username", account]

    def lookup(self, service: str, account: str) -> str | None:
        res = _run([self.tool, "lookup", *self._attrs(service, account)], self.timeout)
        if res.returncode == 0:
            return res.stdout.rstrip("\r\n")
        if res.stderr.strip():  # no entry is exit 1 with nothing said; anything else is a fault
            raise KeyringError(
                f"the Secret Service cannot be asked ({_first_line(res.stderr)})",
                "run nanobot inside your desktop session (DBUS_SESSION_BUS_ADDRESS set) with a "
                "keyring such as GNOME Keyring or KeePassXC running",
            )
        return None

    def store_command(self, service: str, account: str) -> str:
        argv = [self.tool, "store", f"--label=nanobot {service}/{account}"]
        import shlex  # for a message only

        return shlex.join(argv + self._attrs(service, account))

    def can_store(self) -> bool:
        if not shutil.which(self.tool):
            return False
        probe = [self.tool, "lookup", *self._attrs("nanobot-probe", "probe")]
        try:
            res = _run(probe, min(PROBE_TIMEOUT, self.timeout))
        except KeyringError:
            return False
        return res.returncode in (0, 1) and not res.stderr.strip()

    def store(self, service: str, account: str, secret: str) -> None:
        argv = [self.tool, "store", f"--label=nanobot {service}/{account}"]
        res = _run(argv + self._attrs(service, account), self.timeout, stdin=secret)
        if res.returncode != 0:
            raise KeyringError(
                f"secret-tool store failed ({_first_line(res.stderr)})",
                "unlock the keyring, or keep the key in the credentials folder",
            )


class Keychain:
    """The macOS login keychain through `security`. Storing is left to the person: `security`
    takes a new password only as an argument or from its own terminal prompt."""

    name = "the login keychain"
    NOT_FOUND = 44  # errSecItemNotFound, as security's exit status

    def __init__(self, tool: str = "security", timeout: float = LOOKUP_TIMEOUT) -> None:
        self.tool = tool
        self.timeout = timeout

    def lookup(self, service: str, account: str) -> str | None:
        argv = [self.tool, "find-generic-password", "-s", service, "-a", account, "-w"]
        res = _run(argv, self.timeout)
        if res.returncode == 0:
            return res.stdout.rstrip("\r\n")
        if res.returncode == self.NOT_FOUND:
            return None
        raise KeyringError(
            f"the login keychain cannot be asked ({_first_line(res.stderr)})",
            "unlock the login keychain (security unlock-keychain) and try again",
        )

    def store_command(self, service: str, account: str) -> str:
        # -w last: security prompts for the password instead of taking it as an argument.
        argv = [self.tool, "add-generic-password", "-U", "-s", service, "-a", account]
        import shlex  # for a message only

        return shlex.join(argv) + " -w"

    def can_store(self) -> bool:
        return False

    def store(self, service: str, account: str, secret: str) -> None:
        raise KeyringError(
            "nanobot does not write to the login keychain",
            f"store it yourself: {self.store_command(service, account)}",
        )


def default_keyring() -> Keyring:
    """The keyring of this platform."""
    return Keychain() if sys.platform == "darwin" else SecretTool()


def resolve(value: str, keyring: Keyring | None = None) -> str:
    """The secret a "keyring:SERVICE/ACCOUNT" reference names. KeyringError (naming the
    reference and the command that stores it) when the entry is missing or empty."""
    service, account = parse_ref(value)
    keyring = keyring or default_keyring()
    secret = keyring.lookup(service, account)
    if not secret:
        state = "is empty" if secret == "" else "does not exist"
        raise KeyringError(
            f"the keyring entry for {value} {state} in {keyring.name}",
            f"store it: {keyring.store_command(service, account)}",
        )
    return secret
