"""WhatsApp allowFrom with LIDs, and how the channel turns a bridge frame into a sender."""

from __future__ import annotations

import pytest

from nanobot.channels.whatsapp import describe, whatsapp_sender
from nanobot.security.access import is_allowed

ALLOW = ["+4915112345678", "777@lid"]


@pytest.mark.parametrize(
    "sender",
    [
        "4915112345678@s.whatsapp.net",
        "4915112345678@s.whatsapp.net|123@lid",  # a LID the bridge resolved to an allowed number
        "4930000000@s.whatsapp.net|777@lid",  # the LID itself is listed
        "777@lid",  # unresolved, but listed explicitly
    ],
)
def test_allowed(sender):
    assert is_allowed("whatsapp", sender, ALLOW)


@pytest.mark.parametrize(
    "sender",
    [
        "123@lid",  # unresolved and not listed
        "4930000000@s.whatsapp.net|123@lid",
        "49151123456780@s.whatsapp.net",  # digits compared exactly
        "777@lid|4915112345678@s.whatsapp.net",  # reversed: not what the channel produces
        "4915112345678@s.whatsapp.net|777@lid|x@lid",
        "4915112345678@s.whatsapp.net|4915112345678",
        "120363000000000001@g.us",  # a group is judged by its participant, never itself
    ],
)
def test_denied(sender):
    assert not is_allowed("whatsapp", sender, ALLOW)


def test_sender_from_a_frame():
    resolved = {"sender": "4915@s.whatsapp.net", "senderPhone": "4915", "senderLid": "1@lid"}
    assert whatsapp_sender(resolved) == "4915@s.whatsapp.net|1@lid"
    plain = {"sender": "4915@s.whatsapp.net", "senderPhone": "4915", "senderLid": None}
    assert whatsapp_sender(plain) == "4915@s.whatsapp.net"
    unresolved = {"sender": "1@lid", "senderPhone": None, "senderLid": "1@lid"}
    assert whatsapp_sender(unresolved) == "1@lid"
    assert whatsapp_sender({"senderPhone": "49 15", "sender": "x@lid"}) == "x@lid"


def test_describe_marks_media_and_voice_notes():
    assert describe({"kind": "text", "text": "hi"}) == ("hi", [], "")
    assert describe({"kind": "image", "text": "look"}) == ("[image: not downloaded] look", [], "")
    doc = describe({"kind": "document", "text": "", "fileName": "cv.pdf"})
    assert doc == ("[document cv.pdf: not downloaded]", [], "")
    media = [{"path": "/m/v.ogg", "mime": "audio/ogg", "kind": "voice"}]
    assert describe({"kind": "voice", "media": media}) == ("[voice note]", ["/m/v.ogg"], "/m/v.ogg")
    assert (
        describe({"kind": "voice", "mediaError": "x"})[0]
        == "[voice note] (could not be downloaded)"
    )
