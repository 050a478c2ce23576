"""The route's journal (route/store.py): dedupe, restart, compaction, torn and corrupt records,
group commit and the bounded memory of retired keys."""

from __future__ import annotations

import json

from nanobot.route import store as store_mod
from nanobot.route.message import InboundMessage, reply_for
from nanobot.route.store import Store


def msg(chat="1", text="hi", key=None, **meta) -> InboundMessage:
    metadata = {"message_id": meta.pop("message_id", 7), **meta}
    if key:
        metadata["dedupe_key"] = key
    return InboundMessage("telegram", chat, chat, text, metadata=metadata)


def test_store_refuses_a_key_that_is_pending_or_already_answered(tmp_path):
    store = Store(tmp_path / "state")
    first = msg(key="telegram:5")
    assert store.accept(first)
    assert not store.accept(msg(key="telegram:5"))  # pending
    name = store.reply(first, reply_for(first, "ok"))
    store.delivered(name)
    assert not store.accept(msg(key="telegram:5"))  # answered and retired
    store.close()
    again = Store(tmp_path / "state")  # the journal survives a restart
    assert not again.accept(msg(key="telegram:5"))
    assert again.accept(msg(key="telegram:6"))


def test_reply_retires_the_message_and_a_restart_resends_only_the_reply(tmp_path):
    store = Store(tmp_path / "state")
    m = msg(key="telegram:9", text="question")
    store.accept(m)
    store.reply(m, reply_for(m, "answer"))
    store.close()
    restarted = Store(tmp_path / "state")
    assert restarted.pending() == []
    [(_, out)] = restarted.unsent()
    assert (out.content, out.reply_to, out.chat_id) == ("answer", "7", "1")
    assert not restarted.accept(msg(key="telegram:9"))


def test_pending_messages_survive_a_restart_and_compaction(tmp_path):
    store = Store(tmp_path / "state")
    for i in range(3):
        store.accept(msg(key=f"k{i}", text=f"q{i}"))
    m = store.pending()[1]
    store.delivered(store.reply(m, reply_for(m, "a1")))
    store.close()
    again = Store(tmp_path / "state")  # compacts on open
    assert [p.content for p in again.pending()] == ["q0", "q2"]
    assert not again.accept(msg(key="k1")) and not again.accept(msg(key="k0"))
    again.close()
    lines = (tmp_path / "state" / "route.jsonl").read_text().splitlines()
    assert len(lines) == 3  # k1 remembered as done, k0 and k2 pending


def test_a_torn_last_record_is_ignored_and_a_corrupt_one_skipped_and_kept_aside(tmp_path, caplog):
    store = Store(tmp_path / "state")
    store.accept(msg(key="good", text="keep me"))
    store.accept(msg(key="lost", text="cut short"))
    store.close()
    journal = tmp_path / "state" / "route.jsonl"
    good, cut = journal.read_bytes().splitlines(keepends=True)
    journal.write_bytes(b'{"op": "in", "id": "x", "ke\n' + good + cut[:40])
    restarted = Store(tmp_path / "state")
    assert [m.content for m in restarted.pending()] == ["keep me"]
    assert (tmp_path / "state" / "route.jsonl.corrupt").exists()
    assert "unreadable" in caplog.text and "torn" in caplog.text


def test_concurrent_writers_share_fsyncs_and_all_are_durable(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    store = Store(tmp_path / "state")
    with ThreadPoolExecutor(16) as pool:
        assert all(pool.map(lambda i: store.accept(msg(key=f"c{i}", text=str(i))), range(400)))
    store.close()
    assert sorted(int(m.content) for m in Store(tmp_path / "state").pending()) == list(range(400))


def test_done_keys_are_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(store_mod, "DONE_KEEP", 10)
    store = Store(tmp_path / "state")
    for i in range(45):
        m = msg(key=f"k{i}")
        store.accept(m)
        store.delivered(store.reply(m, reply_for(m, "x")))
    store.close()
    again = Store(tmp_path / "state")
    assert not again.accept(msg(key="k44"))
    assert again.accept(msg(key="k0"))  # long forgotten: only the last DONE_KEEP are kept
    assert len((tmp_path / "state" / "route.jsonl").read_text().splitlines()) <= 11


def test_compaction_streams_the_journal_in_chunks_and_keeps_every_open_record(
    tmp_path, monkeypatch
):
    monkeypatch.setattr(store_mod, "COMPACT_CHUNK", 3)
    store = Store(tmp_path / "state")
    for i in range(10):  # retired: remembered as done keys
        m = msg(key=f"done{i}")
        store.accept(m)
        store.delivered(store.reply(m, reply_for(m, "x")))
    for i in range(4):  # pending
        store.accept(msg(key=f"open{i}", text=f"q{i}"))
    answered = msg(key="answered", text="q")
    store.accept(answered)
    store.reply(answered, reply_for(answered, "stored answer"))  # stored, not yet sent
    chunks = list(store._open_lines())
    assert len(chunks) > 1 and all(c.endswith(b"\n") for c in chunks)
    store.compact()
    store.close()
    lines = (tmp_path / "state" / "route.jsonl").read_bytes()
    assert lines == b"".join(chunks)
    assert [json.loads(line)["op"] for line in lines.splitlines()].count("done") == 10
    again = Store(tmp_path / "state")
    assert [m.content for m in again.pending()] == [f"q{i}" for i in range(4)]
    assert [o.content for _, o in again.unsent()] == ["stored answer"]
    assert not again.accept(msg(key="done9")) and not again.accept(msg(key="answered"))
    again.close()
