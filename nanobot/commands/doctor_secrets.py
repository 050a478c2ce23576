"""`nanobot doctor`, where each secret lives: the environment, the desktop keyring, a systemd
credential (encrypted at rest or not), a plaintext file, or a literal in config.json. Plaintext
at rest on a server is a WARN; on a desktop it is reported with the better place to keep it.

A systemd credential's storage is read from the unit that runs us: /proc/self/cgroup names it,
and its unit file and drop-ins say LoadCredential= (a plaintext file) or
LoadCredentialEncrypted= (systemd-creds encrypt: host key and/or TPM2) for each name.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

from nanobot.commands.doctor import PASS, WARN, Check
from nanobot.config.secrets import ENVIRONMENT, FILE, KEYRING, LITERAL, SecretOrigin

# systemd's system unit search path, highest priority first.
UNIT_DIRS = (
    Path("/etc/systemd/system"),
    Path("/run/systemd/transient"),
    Path("/run/systemd/system"),
    Path("/usr/local/lib/systemd/system"),
    Path("/usr/lib/systemd/system"),
    Path("/lib/systemd/system"),
)
ENCRYPTED, PLAINTEXT, INLINE, INLINE_ENCRYPTED = "encrypted", "plaintext", "inline", "inline-enc"
_DIRECTIVES = {
    "LoadCredential": PLAINTEXT,
    "LoadCredentialEncrypted": ENCRYPTED,
    "SetCredential": INLINE,
    "SetCredentialEncrypted": INLINE_ENCRYPTED,
}
FIX_SERVER = (
    "keep it encrypted at rest: deploy with the Ansible role (systemd-creds encrypt + "
    "LoadCredentialEncrypted=), or by hand: systemd-ask-password -n | sudo systemd-creds "
    "encrypt --name={name} - /etc/credstore.encrypted/{name}, add "
    "LoadCredentialEncrypted={name} to the unit and refer to it as "
    '"file:${{CREDENTIALS_DIRECTORY}}/{name}" (see SECURITY.md, Secrets at rest)'
)
FIX_LITERAL = (
    'move it out of config.json: "keyring:nanobot/NAME" on a desktop, an encrypted systemd '
    "credential on a server (see SECURITY.md, Secrets at rest)"
)


def on_server(env: Mapping[str, str], platform: str = sys.platform) -> bool:
    """A systemd service, or a Linux host without a graphical session: a server."""
    if env.get("CREDENTIALS_DIRECTORY"):
        return True
    if platform == "darwin":
        return False
    return not (env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"))


def own_unit(cgroup: Path = Path("/proc/self/cgroup")) -> str | None:
    """The systemd unit this process runs in ("nanobot.service"), from its cgroup path."""
    try:
        lines = cgroup.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    for line in lines:
        hierarchy, _, path = line.partition(":")[2].partition(":")
        if hierarchy in ("", "name=systemd"):
            name = path.rstrip("/").rsplit("/", 1)[-1]
            if name.endswith(".service"):
                return name
    return None


def unit_credentials(unit: str, dirs: tuple[Path, ...] = UNIT_DIRS) -> dict[str, str]:
    """Credential name → how the unit loads it (ENCRYPTED, PLAINTEXT, INLINE, INLINE_ENCRYPTED),
    from the unit file and its drop-ins as systemd reads them (an empty directive resets)."""
    files: list[Path] = []
    for d in dirs:
        if (d / unit).is_file():
            files.append(d / unit)
            break
    dropins: dict[str, Path] = {}
    for d in reversed(dirs):  # a drop-in of the same name in a higher-priority folder wins
        for conf in sorted((d / f"{unit}.d").glob("*.conf")):
            dropins[conf.name] = conf
    files += [dropins[name] for name in sorted(dropins)]
    found: dict[str, str] = {}
    for f in files:
        try:
            text = f.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for raw in text.splitlines():
            key, sep, value = raw.strip().partition("=")
            kind = _DIRECTIVES.get(key.strip()) if sep else None
            if kind is None:
                continue
            name = value.strip().split(":", 1)[0]
            if not name:  # "LoadCredential=" clears what came before
                found = {n: k for n, k in found.items() if _DIRECTIVES[key.strip()] != k}
            else:
                found[name] = kind
    return found


def _where(origin: SecretOrigin, env: Mapping[str, str], creds: dict[str, str] | None):
    """(plaintext at rest?, description, credential name or "")."""
    if origin.kind == ENVIRONMENT:
        return False, f"environment ({origin.ref})", ""
    if origin.kind == KEYRING:
        return False, f"keyring ({origin.ref}, encrypted at rest)", ""
    if origin.kind == LITERAL:
        return True, "literal in config.json (plaintext at rest)", ""
    path = Path(origin.ref)
    cred_dir = env.get("CREDENTIALS_DIRECTORY")
    if origin.kind == FILE and cred_dir and path.parent == Path(cred_dir):
        name = path.name
        how = (creds or {}).get(name)
        if how == ENCRYPTED:
            return False, f"encrypted systemd credential {name} (LoadCredentialEncrypted=)", name
        if how == INLINE_ENCRYPTED:
            return False, f"encrypted systemd credential {name} (SetCredentialEncrypted=)", name
        if how == PLAINTEXT:
            return True, f"systemd credential {name} from a plaintext file (LoadCredential=)", name
        if how == INLINE:
            return True, f"systemd credential {name} written in the unit (SetCredential=)", name
        return True, f"systemd credential {name} (its unit was not found: storage unknown)", name
    return True, f"plaintext file {path}", path.name


def check_secret_stores(
    origins: list[SecretOrigin],
    env: Mapping[str, str] | None = None,
    server: bool | None = None,
    unit_dirs: tuple[Path, ...] = UNIT_DIRS,
    cgroup: Path = Path("/proc/self/cgroup"),
) -> list[Check]:
    """One Check per secret, saying where it lives; WARN for plaintext at rest on a server."""
    env = os.environ if env is None else env
    server = on_server(env) if server is None else server
    creds = None
    if env.get("CREDENTIALS_DIRECTORY"):
        unit = own_unit(cgroup)
        creds = unit_credentials(unit, unit_dirs) if unit else None
    out = []
    for origin in origins:
        plain, where, name = _where(origin, env, creds)
        cid, msg = f"secret_store.{origin.key}", f"{origin.key}: {where}"
        if plain and server:
            fix = FIX_LITERAL if origin.kind == LITERAL else FIX_SERVER.format(name=name)
            out.append(Check(cid, WARN, f"{msg}, on a server", fix))
        elif plain and origin.kind == FILE:
            out.append(Check(cid, PASS, f"{msg} (keyring:nanobot/… would keep it encrypted)"))
        else:
            out.append(Check(cid, PASS, msg))
    return out
