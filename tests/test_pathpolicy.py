"""PathPolicy against the file-tool attack vectors: traversal, prefix siblings, symlinks, home secrets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nanobot.paths import SECRET_NAMES
from nanobot.security.pathpolicy import PathPolicy, PathRefused


@pytest.fixture
def layout(tmp_path: Path):
    """tmp/W (workspace), tmp/H (NANOBOT_HOME with secrets), secrets beside W."""
    ws = tmp_path / "W"
    (ws / "src").mkdir(parents=True)
    home = tmp_path / "H"
    home.mkdir()
    (home / "config.json").write_text('{"apiKey": "x"}')
    for name in ("credentials", "whatsapp-auth", "auth", "logs", "sessions", "state"):
        (home / name).mkdir()
        (home / name / "f").write_text("secret")
    (tmp_path / "secret.txt").write_text("secret")
    for sibling in ("W-other", "W2"):
        (tmp_path / sibling).mkdir()
        (tmp_path / sibling / "secret.txt").write_text("secret")
    return tmp_path, ws, home


def refused(policy: PathPolicy, raw: str) -> str:
    with pytest.raises(PathRefused) as info:
        policy.resolve(raw)
    message = str(info.value)
    assert message.startswith("Error:")
    return message


def test_relative_paths_resolve_against_the_workspace(layout):
    _, ws, home = layout
    policy = PathPolicy(ws, True, home)
    assert policy.resolve("notes.md") == ws.resolve() / "notes.md"
    assert policy.resolve("src/../a.txt") == ws.resolve() / "a.txt"
    assert policy.resolve(".") == ws.resolve()
    assert policy.resolve(str(ws / "src" / "x.py")) == ws.resolve() / "src" / "x.py"


@pytest.mark.parametrize(
    "raw", ["../secret.txt", "src/../../secret.txt", "{W}/src/../../secret.txt"]
)
def test_traversal_is_refused(layout, raw):
    _, ws, home = layout
    message = refused(PathPolicy(ws, True, home), raw.format(W=ws))
    assert "outside the workspace" in message and str(ws.resolve()) in message
    assert "use a path inside it" in message


@pytest.mark.parametrize("sibling", ["W-other/secret.txt", "W2/secret.txt"])
def test_prefix_siblings_are_outside(layout, sibling):
    tmp, ws, home = layout
    assert str(tmp / sibling).startswith(str(ws))  # the string-prefix trap
    refused(PathPolicy(ws, True, home), str(tmp / sibling))


def test_symlink_inside_workspace_pointing_outside_is_refused(layout):
    tmp, ws, home = layout
    (ws / "etc").symlink_to("/etc")
    (ws / "cfg").symlink_to(home / "config.json")
    (ws / "up").symlink_to(tmp)  # a symlinked directory in the middle of a path
    policy = PathPolicy(ws, True, home)
    refused(policy, "etc/passwd")
    refused(policy, "cfg")
    refused(policy, "up/secret.txt")
    refused(policy, "up/W/../secret.txt")
    assert "never available" in refused(PathPolicy(ws, False, home), "cfg")


def test_dangling_symlink_resolves_to_its_target_for_writes(layout):
    tmp, ws, home = layout
    (ws / "new.txt").symlink_to(tmp / "outside-new.txt")
    refused(PathPolicy(ws, True, home), "new.txt")
    (ws / "inner.txt").symlink_to(ws / "src" / "later.txt")
    assert PathPolicy(ws, True, home).resolve("inner.txt") == ws.resolve() / "src" / "later.txt"


def test_symlinked_workspace_and_home_are_compared_by_real_path(layout):
    tmp, ws, home = layout
    (tmp / "ws-link").symlink_to(ws)
    (tmp / "home-link").symlink_to(home)
    policy = PathPolicy(tmp / "ws-link", True, tmp / "home-link")
    assert policy.resolve("src") == ws.resolve() / "src"
    refused(PathPolicy(tmp / "ws-link", False, tmp / "home-link"), str(home / "config.json"))


@pytest.mark.parametrize(
    "raw", ["~/.ssh/id_rsa", "~root/.bashrc", "$HOME/.ssh/id_rsa", "${HOME}/x", "~"]
)
def test_tilde_and_variables_are_not_expanded(layout, raw):
    _, ws, home = layout
    for restrict in (True, False):
        assert "not expanded" in refused(PathPolicy(ws, restrict, home), raw)


def test_proc_self_paths_are_resolved_and_refused(layout, monkeypatch):
    tmp, ws, home = layout
    monkeypatch.chdir(tmp)
    policy = PathPolicy(ws, True, home)
    refused(policy, "/proc/self/root/etc/passwd")
    refused(policy, "/proc/self/cwd/../x")
    refused(policy, "/proc/self/cwd/secret.txt")


def test_process_environment_is_refused_even_unrestricted(layout):
    _, ws, home = layout
    policy = PathPolicy(ws, False, home)
    for raw in ("/proc/self/environ", f"/proc/{os.getpid()}/environ", "/proc/thread-self/environ"):
        assert "environment" in refused(policy, raw)
    refused(policy, "/proc/self/mem")
    assert policy.resolve("/proc/self/status").name == "status"


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ("a\x00b", "NUL"),
        ("x" * 5000, "characters long"),
        ("d/" + "y" * 300, "longer than 255"),
        ("é" * 200, "longer than 255"),  # 400 bytes in UTF-8
        ("", "non-empty"),
    ],
)
def test_malformed_paths_give_an_error_not_a_crash(layout, raw, why):
    _, ws, home = layout
    for restrict in (True, False):
        assert why in refused(PathPolicy(ws, restrict, home), raw)


def test_non_string_path_is_refused(layout):
    _, ws, home = layout
    with pytest.raises(PathRefused):
        PathPolicy(ws, True, home).resolve(None)  # type: ignore[arg-type]


def test_unrestricted_allows_outside_paths(layout):
    tmp, ws, home = layout
    policy = PathPolicy(ws, False, home)
    assert policy.resolve(str(tmp / "secret.txt")) == (tmp / "secret.txt").resolve()
    assert policy.resolve("../W2/secret.txt") == (tmp / "W2" / "secret.txt").resolve()


@pytest.mark.parametrize("restrict", [True, False])
@pytest.mark.parametrize("name", SECRET_NAMES)
def test_home_secrets_are_refused_restricted_or_not(tmp_path, restrict, name):
    home = tmp_path / "H"
    ws = home / "workspace"  # the default layout: workspace inside NANOBOT_HOME
    ws.mkdir(parents=True)
    policy = PathPolicy(ws, restrict, home)
    for raw in (str(home / name), str(home / name / "deeper" / "file"), f"../{name}"):
        assert "never available" in refused(policy, raw)
    refused(policy, f"//{str(home / name).lstrip('/')}")  # a doubled leading slash
    refused(policy, str(home))
    refused(policy, "..")
    assert policy.resolve("notes.md") == ws.resolve() / "notes.md"
    assert policy.resolve(".") == ws.resolve()


def test_home_secrets_refused_through_a_symlink_when_unrestricted(layout):
    _, ws, home = layout
    (ws / "creds").symlink_to(home / "credentials")
    policy = PathPolicy(ws, False, home)
    refused(policy, "creds/f")
    refused(policy, "creds")


@pytest.mark.parametrize("restrict", [True, False])
def test_media_is_readable_and_the_rest_of_home_is_not(tmp_path, restrict):
    home = tmp_path / "H"
    (home / "media").mkdir(parents=True)
    (home / "workspace").mkdir()
    policy = PathPolicy(home / "workspace", restrict, home)
    photo = str(home / "media" / "a.jpg")
    assert policy.resolve(photo) == home.resolve() / "media" / "a.jpg"  # what users sent
    with pytest.raises(PathRefused):
        policy.resolve(photo, write=True)  # but not for rewriting
    for name in ("config.json.bak-20260101T000000", "history", "inbox-notes", "state/inbox/x.json"):
        with pytest.raises(PathRefused, match="never available"):
            policy.resolve(str(home / name))
    assert policy.resolve("notes.md", write=True) == home.resolve() / "workspace" / "notes.md"


def test_url_and_double_slash_forms_stay_confined(layout):
    _, ws, home = layout
    policy = PathPolicy(ws, True, home)
    refused(policy, "//etc/passwd")
    # Not a URL to the file tools: a relative name, so it stays inside the workspace.
    assert policy.resolve("file:///etc/passwd").is_relative_to(ws.resolve())


def test_check_dir(layout):
    tmp, ws, home = layout
    policy = PathPolicy(ws, True, home)
    assert policy.check_dir(None) == ws.resolve()
    assert policy.check_dir("") == ws.resolve()
    assert policy.check_dir("src") == ws.resolve() / "src"
    for raw in ("/", "/etc", "..", "../W2", str(tmp)):
        with pytest.raises(PathRefused, match="outside the workspace"):
            policy.check_dir(raw)
    with pytest.raises(PathRefused, match="not an existing directory"):
        policy.check_dir("missing")
    (ws / "file.txt").write_text("x")
    with pytest.raises(PathRefused, match="not an existing directory"):
        policy.check_dir("file.txt")


def test_check_dir_unrestricted_still_protects_home(layout):
    tmp, ws, home = layout
    policy = PathPolicy(ws, False, home)
    assert policy.check_dir("/") == Path("/")
    assert policy.check_dir(str(tmp)) == tmp.resolve()
    for raw in (str(home), str(home / "credentials"), str(home / "logs")):
        with pytest.raises(PathRefused, match="never available"):
            policy.check_dir(raw)
