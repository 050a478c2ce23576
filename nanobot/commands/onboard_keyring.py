"""Onboarding's choice of where a typed API key is kept: the desktop keyring when one answers
(encrypted at rest, a `keyring:nanobot/<provider>` reference), otherwise the 0600 credentials
folder (a `file:` reference). Either way it says which it used."""

from __future__ import annotations

from collections.abc import Callable

from nanobot.config import secrets

SERVICE = "nanobot"


def keep_key(
    provider: str,
    key: str,
    ask: Callable[[str, str], str],
    keyring: secrets.Keyring | None = None,
    say: Callable[[str], None] = print,
) -> str:
    """Store `key` and return the reference config.json gets. Offers the keyring first when
    it can take the key; a keyring that fails, or a "no", falls back to the credentials folder."""
    from nanobot.commands.onboard_model import store_key

    keyring = keyring or secrets.default_keyring()
    ref = f"{secrets.PREFIX}{SERVICE}/{provider}"
    why = f"no keyring that nanobot can write to was found ({keyring.name})"
    writable = keyring.can_store()
    if writable:
        answer = ask(
            f"Keep the key in {keyring.name} (encrypted, opened by your login)? [Y/n]", "y"
        )
        if answer.strip().lower() in ("y", "yes"):
            try:
                keyring.store(SERVICE, provider, key)
                if secrets.resolve(ref, keyring) == key:
                    say(
                        f"Stored the {provider} key in {keyring.name}; config.json refers to it "
                        f"as {ref}"
                    )
                    return ref
                why = f"{keyring.name} returned a different value than was stored"
            except secrets.KeyringError as e:
                why = e.problem
        else:
            why = "you chose not to use the keyring"
    file_ref = store_key(provider, key)
    say(
        f"Stored the {provider} key in {file_ref[len('file:') :]} (mode 0600, plaintext on "
        f"disk: {why})"
    )
    if not writable:
        say(
            f"To move it into {keyring.name} later: {keyring.store_command(SERVICE, provider)}"
            f', then set the key to "{ref}" in config.json'
        )
    return file_ref
