"""The log file: created 0600, rotated at its size limit, old files capped at the backup count."""

from __future__ import annotations

import logging
import os

from nanobot.logs import PrivateRotatingFileHandler


def _emit(handler: logging.Handler, text: str) -> None:
    handler.emit(logging.LogRecord("nanobot", logging.INFO, __file__, 1, text, None, None))


def test_rotates_at_the_limit_and_keeps_only_the_backups(tmp_path):
    path = tmp_path / "nanobot.log"
    old = os.umask(0)
    try:
        handler = PrivateRotatingFileHandler(path, max_bytes=100, backups=2)
    finally:
        os.umask(old)
    try:
        for i in range(12):
            _emit(handler, f"record {i:02d} " + "x" * 40)
    finally:
        handler.close()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["nanobot.log", "nanobot.log.1", "nanobot.log.2"]
    for p in tmp_path.iterdir():
        assert p.stat().st_mode & 0o777 == 0o600
        assert p.stat().st_size <= 100 + 60  # one record past the limit at most
    assert "record 11" in path.read_text()
    assert "record 00" not in "".join(p.read_text() for p in tmp_path.iterdir())


def test_a_file_below_the_limit_is_appended_to(tmp_path):
    path = tmp_path / "nanobot.log"
    path.write_text("earlier run\n")
    handler = PrivateRotatingFileHandler(path, max_bytes=10_000, backups=5)
    try:
        _emit(handler, "this run")
    finally:
        handler.close()
    assert path.read_text().splitlines() == ["earlier run", "this run"]
    assert [p.name for p in tmp_path.iterdir()] == ["nanobot.log"]
