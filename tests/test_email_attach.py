"""A message with files becomes a mail with attachments, each under its own name and type."""

from __future__ import annotations

from nanobot.channels.email.smtp import build_message


def test_files_are_attached_with_their_type(tmp_path):
    pdf, txt = tmp_path / "report.pdf", tmp_path / "notes.txt"
    pdf.write_bytes(b"%PDF-1.4 fake")
    txt.write_text("plain")
    msg = build_message("bot@nb.test", "alice@example.com", "see attached", {}, "Re: ", [pdf, txt])
    parts = {p.get_filename(): p for p in msg.iter_attachments()}
    assert parts["report.pdf"].get_content_type() == "application/pdf"
    assert parts["report.pdf"].get_content() == b"%PDF-1.4 fake"
    assert parts["notes.txt"].get_content_type() == "text/plain"
    assert "see attached" in msg.get_body(("plain",)).get_content()
