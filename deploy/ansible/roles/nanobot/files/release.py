#!/usr/bin/env python3
"""Names and builds a nanobot release on the Ansible controller (standard library only).

  release.py id SRC          print the release id "<version>-<sha256 of the wheel inputs>[:12]"
  release.py build SRC OUT   build the wheel into OUT/<id>/ unless it is there; print JSON
                             {"changed": bool, "id": str, "wheel": path}

The id depends only on the files that go into the wheel, so an unchanged checkout gives the
same id and the role neither rebuilds, recopies nor reinstalls. The build runs on a copy of
those files, so the checkout gets no build/ or *.egg-info litter.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

TOP_FILES = ("pyproject.toml", "setup.cfg", "setup.py", "MANIFEST.in", "README.md", "LICENSE")
SKIP_DIRS = {"__pycache__", "node_modules", "bridge", ".pytest_cache", ".ruff_cache"}
SKIP_SUFFIXES = (".pyc", ".pyo")


def wheel_inputs(src: Path) -> list[Path]:
    """Relative paths of the files that make up the wheel, sorted."""
    files = [Path(name) for name in TOP_FILES if (src / name).is_file()]
    for root, dirs, names in os.walk(src / "nanobot"):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.endswith(".egg-info"))
        for name in sorted(names):
            if not name.endswith(SKIP_SUFFIXES):
                files.append((Path(root) / name).relative_to(src))
    return files


def release_id(src: Path) -> str:
    """Version from pyproject.toml plus a content hash of the wheel inputs."""
    with open(src / "pyproject.toml", "rb") as f:
        version = tomllib.load(f)["project"]["version"]
    digest = hashlib.sha256()
    for rel in wheel_inputs(src):
        digest.update(str(rel).encode() + b"\0")
        digest.update((src / rel).read_bytes() + b"\0")
    return f"{version}-{digest.hexdigest()[:12]}"


def _has_setuptools() -> bool:
    """True when this interpreter can build without fetching setuptools (>= 68)."""
    try:
        import setuptools
    except ImportError:
        return False
    return int(setuptools.__version__.split(".")[0]) >= 68


def build(src: Path, out: Path) -> dict:
    rid = release_id(src)
    dest = out / rid
    found = sorted(dest.glob("*.whl")) if dest.is_dir() else []
    if found:
        return {"changed": False, "id": rid, "wheel": str(found[0])}
    with tempfile.TemporaryDirectory(prefix="nanobot-build-") as tmp:
        tree = Path(tmp) / "src"
        for rel in wheel_inputs(src):
            (tree / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src / rel, tree / rel)
        cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", f"{tmp}/whl"]
        if _has_setuptools():
            cmd += ["--no-build-isolation", "--no-index"]
        env = dict(os.environ, SOURCE_DATE_EPOCH="315532800", PIP_DISABLE_PIP_VERSION_CHECK="1")
        subprocess.run([*cmd, str(tree)], check=True, env=env, stdout=sys.stderr)
        wheels = sorted(Path(tmp, "whl").glob("nanobot-*.whl"))
        if len(wheels) != 1:
            raise SystemExit(f"expected one nanobot wheel, pip produced {wheels}")
        dest.mkdir(parents=True, exist_ok=True)
        final = dest / wheels[0].name
        shutil.copy2(wheels[0], f"{final}.part")
        os.replace(f"{final}.part", final)
    return {"changed": True, "id": rid, "wheel": str(final)}


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "id":
        print(release_id(Path(argv[1]).resolve()))
        return 0
    if len(argv) == 3 and argv[0] == "build":
        print(json.dumps(build(Path(argv[1]).resolve(), Path(argv[2]).resolve())))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
