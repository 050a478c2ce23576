"""`nanobot doctor`, file checks: file: secrets, the credentials folder, where the workspace
lives, and who reads group replies. Each check returns doctor Checks; fix_secrets repairs modes."""

from __future__ import annotations

import os
from pathlib import Path

from nanobot.commands.doctor import PASS, WARN, Check, _check, _worst


def _worst_of(findings) -> str:
    return _worst(f.level for f in findings)


def _say(findings) -> str:
    return "; ".join(f"{f.path} {f.problem}" for f in findings)


def check_secret_files(config_path: Path, uid: int) -> list[Check]:
    """Every "file:" secret: the file and each folder above it (owner, mode)."""
    from nanobot.security.secretfiles import file_refs, inspect

    out = []
    for key, path in file_refs(config_path):
        found = inspect(path, uid)
        cid = f"secret_file.{key}"
        if not found:
            out.append(_check(cid, PASS, f"{key}: file {path} is private"))
        else:
            out.append(_check(cid, _worst_of(found), f"{key}: {_say(found)}", "secret_file"))
    return out


def check_credentials(folder: Path, uid: int) -> Check:
    """NANOBOT_HOME/credentials 0700 and every file in it 0600, all ours."""
    from nanobot.security.secretfiles import credential_files, inspect

    if not folder.exists() and not folder.is_symlink():
        return _check("credentials", PASS, f"no credentials folder ({folder})")
    found = inspect(folder, uid, private_dir=True)
    if not found:  # folder and parents fine: look at the files (their parents are known good)
        for p in credential_files(folder):
            found += [f for f in inspect(p, uid) if f.path == p or f.path.is_relative_to(p)]
    if not found:
        return _check("credentials", PASS, f"credentials folder {folder} is private")
    return _check("credentials", _worst_of(found), _say(found), path=folder)


def check_workspace_fs(workspace: Path, home: Path) -> Check:
    """The workspace should not share NANOBOT_HOME's filesystem: exec's writes cannot be
    intercepted, so only a separate (size-limited) filesystem keeps a full workspace from
    failing every chat's session, inbox and audit writes."""
    try:
        same = workspace.stat().st_dev == home.stat().st_dev
    except OSError:
        return _check("workspace_fs", PASS, "workspace not created yet")
    if same:
        msg = (
            f"the workspace {workspace} shares a filesystem with NANOBOT_HOME: a command that "
            "fills it stops every chat's state writes"
        )
        return _check("workspace_fs", WARN, msg)
    return _check("workspace_fs", PASS, "the workspace has a filesystem of its own")


def check_group_policy(cfg) -> Check:
    """A Telegram allow-list answers in groups too, where every member reads the reply."""
    tg = cfg.channels.telegram
    policy = getattr(tg, "group_policy", "mention")
    if not tg.enabled or policy == "off":
        return _check("group_policy", PASS, f"Telegram groups: {policy if tg.enabled else 'off'}")
    allow = [str(e).strip() for e in tg.allow_from]
    if allow and "*" not in allow:
        msg = (
            f'channels.telegram.groupPolicy is "{policy}" with an allow-list: in a group, an '
            "allowed user's request is answered in the group, and every member — strangers "
            "too — reads the reply, tool output included"
        )
        return _check("group_policy", WARN, msg)
    return _check("group_policy", PASS, f'Telegram groups: "{policy}"')


def fix_secrets(home: Path, config_path: Path) -> list[str]:
    """chmod file: secrets 600 and credentials/ 700 (its files 600), drop group/other write
    from folders above them that we own; never through a symlink."""
    from nanobot.security.secretfiles import credential_files, file_refs, repair

    uid = os.geteuid()
    done: list[str] = []
    for _, path in file_refs(config_path):
        done += repair(path, uid)
    creds = home / "credentials"
    if creds.is_dir() and not creds.is_symlink():
        done += repair(creds, uid, private_dir=True)
        for p in credential_files(creds):
            done += [d for d in repair(p, uid) if str(p) in d]
    return list(dict.fromkeys(done))
