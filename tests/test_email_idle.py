"""The IMAP client against a scripted IMAP server on 127.0.0.1 that controls packet boundaries:
IDLE sees every change line however the bytes are cut, a change reported behind a search's
answer is looked at before IDLE starts, polling syncs the view first, and plain text injected
behind a STARTTLS answer is refused."""

from __future__ import annotations

import os
import socket
import threading
import time

import pytest

from nanobot.channels.email.imap import ImapClient, ImapError
from nanobot.config.schema import EmailConfig


class ScriptedImap:
    """One-connection IMAP server. `idle_script` is what it sends after an IDLE command:
    (delay seconds, bytes) pieces, each its own send(); `search_tail` goes between the
    SEARCH answer and its OK; `starttls_tail` behind the STARTTLS OK. `commands` lists what
    the client sent (tag stripped)."""

    def __init__(self, idle_script=(), search_tail=b"", caps=b"IMAP4rev1 IDLE", starttls_tail=b""):
        self.idle_script = list(idle_script)
        self.search_tail = search_tail
        self.caps = caps
        self.starttls_tail = starttls_tail
        self.fetch_pieces: list[bytes] = []
        self.commands: list[str] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn, conn.makefile("rb") as rf:
            conn.sendall(b"* OK [CAPABILITY " + self.caps + b"] scripted\r\n")
            for raw in rf:
                tag, _, cmd = raw.decode().strip().partition(" ")
                self.commands.append(cmd)
                if not self._answer(conn, rf, tag.encode(), cmd.upper()):
                    return

    def _answer(self, conn, rf, tag: bytes, cmd: str) -> bool:
        ok = tag + b" OK done\r\n"
        if cmd.startswith("CAPABILITY"):
            conn.sendall(b"* CAPABILITY " + self.caps + b"\r\n" + ok)
        elif cmd.startswith("STARTTLS"):
            conn.sendall(tag + b" OK begin TLS\r\n" + self.starttls_tail)
            return False
        elif cmd.startswith("SELECT"):
            conn.sendall(
                b"* 3 EXISTS\r\n* OK [UIDVALIDITY 7] v\r\n* OK [UIDNEXT 4] n\r\n"
                + tag
                + b" OK [READ-WRITE] selected\r\n"
            )
        elif cmd.startswith("UID SEARCH"):
            conn.sendall(b"* SEARCH\r\n" + self.search_tail + ok)
        elif cmd.startswith("UID FETCH"):
            for piece in self.fetch_pieces:
                conn.sendall(piece)
                time.sleep(0.05)
            conn.sendall(ok)
        elif cmd == "IDLE":
            for delay, data in self.idle_script:
                time.sleep(delay)
                conn.sendall(data)
            if rf.readline().strip().upper() != b"DONE":
                return False
            self.commands.append("DONE")
            conn.sendall(tag + b" OK idle done\r\n")
        elif cmd == "LOGOUT":
            conn.sendall(b"* BYE bye\r\n" + ok)
            return False
        else:  # LOGIN, NOOP
            conn.sendall(ok)
        return True

    def close(self) -> None:
        self.listener.close()
        self.thread.join(5)


def client_for(server: ScriptedImap) -> ImapClient:
    cfg = EmailConfig(
        imap_host="127.0.0.1",
        imap_port=server.port,
        imap_username="bot@example.com",
        imap_password="pw",
        imap_use_ssl=False,
        allow_insecure=True,
    )
    client = ImapClient(cfg, timeout=10)
    client.connect()
    client.select("INBOX")
    assert client.changes_pending()  # SELECT's EXISTS: nothing was looked at yet
    assert client.uids_after(3) == []  # as the channel does before its first IDLE
    return client


@pytest.fixture
def wake():
    r, w = os.pipe()
    yield r, w
    os.close(r)
    os.close(w)


def idle_with(script, wake, seconds: float = 20.0, **server_args):
    server = ScriptedImap(script, **server_args)
    client = client_for(server)
    try:
        started = time.monotonic()
        outcome = client.idle(seconds, wake[0])
        return outcome, time.monotonic() - started, server.commands
    finally:
        client.close()
        server.close()


def test_a_change_in_the_same_packet_as_the_continuation_is_seen(wake):
    outcome, took, commands = idle_with([(0, b"+ idling\r\n* 4 EXISTS\r\n")], wake)
    assert (outcome, commands[-2:]) == ("event", ["DONE", "LOGOUT"])
    assert took < 2  # not the 20 s the IDLE was asked to last


def test_a_change_reported_before_the_continuation_is_seen(wake):
    outcome, took, _ = idle_with([(0, b"* 4 EXISTS\r\n"), (0.1, b"+ idling\r\n")], wake)
    assert outcome == "event" and took < 2


@pytest.mark.parametrize(
    "pieces",
    [
        [b"+ idling\r\n", b"* 4 EXI", b"STS\r\n"],
        [b"+ idl", b"ing\r\n* OK still here\r\n* 2 EXPUNGE\r", b"\n"],
        [b"+ idling\r\n* OK still here\r\n* 9 FETCH (FLAGS (\\Seen))\r\n"],
        [b"+ idling\r\n", b"* 5 RECENT\r\n"],
    ],
)
def test_change_lines_count_however_the_bytes_are_cut(wake, pieces):
    outcome, took, _ = idle_with([(0.15, p) for p in pieces], wake)
    assert outcome == "event" and took < 3


def test_keepalives_are_not_changes(wake):
    script = [(0, b"+ idling\r\n"), (0.1, b"* OK still here\r\n")]
    outcome, took, _ = idle_with(script, wake, seconds=0.8)
    assert outcome == "timeout" and 0.7 < took < 3


def test_a_wake_byte_ends_the_idle(wake):
    threading.Timer(0.3, os.write, (wake[1], b"!")).start()
    outcome, took, commands = idle_with([(0, b"+ idling\r\n")], wake)
    assert outcome == "woken" and took < 3 and "DONE" in commands


def test_bye_during_idle_is_an_error(wake):
    with pytest.raises(ImapError, match="goodbye"):
        idle_with([(0, b"+ idling\r\n* BYE shutting down\r\n")], wake)


def test_a_change_behind_the_search_answer_is_looked_at_before_idle(wake):
    server = ScriptedImap([(0, b"+ idling\r\n")], search_tail=b"* 4 EXISTS\r\n")
    try:
        client = client_for(server)
        assert client.changes_pending()
        assert client.idle(20, wake[0]) == "event"
        assert "IDLE" not in server.commands  # looked again instead of waiting
        server.search_tail = b""
        assert client.uids_after(3) == [] and not client.changes_pending()
        # every search is preceded by a NOOP, which brings the mailbox's view up to date
        searches = [i for i, c in enumerate(server.commands) if c.startswith("UID SEARCH")]
        assert searches and all(server.commands[i - 1] == "NOOP" for i in searches)
        client.close()
    finally:
        server.close()


def test_a_message_literal_cut_into_pieces_is_read_whole():
    body = b"Subject: x\r\n\r\n" + b"y" * 70000 + b"\r\n"
    server = ScriptedImap()
    head = b"* 1 FETCH (UID 4 BODY[] {%d}\r\n" % len(body)
    server.fetch_pieces = [head[:9], head[9:] + body[:5], body[5:40000], body[40000:] + b")\r\n"]
    try:
        client = client_for(server)
        assert client.fetch(4) == body
        client.close()
    finally:
        server.close()


def test_plain_text_behind_the_starttls_answer_is_refused():
    server = ScriptedImap(
        caps=b"IMAP4rev1 STARTTLS IDLE", starttls_tail=b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n"
    )
    try:
        with pytest.raises(ImapError, match="injection"):
            client_for(server)
    finally:
        server.close()
