"""allowFrom rules per channel, attacked with the vectors of reference/attack-vectors.md and more."""

import pytest

from nanobot.config.schema import Config
from nanobot.security.access import is_allowed, open_channels

TG_ALLOW = ["12345", "alice", "67890|bob"]


@pytest.mark.parametrize("sender", ["12345|carol", "99999|alice", "67890|bob", "12345"])
def test_telegram_allowed(sender):
    assert is_allowed("telegram", sender, TG_ALLOW)


@pytest.mark.parametrize(
    "sender",
    [
        "attacker|alice|extra",  # more than one "|"
        "not-a-number|alice",  # non-numeric id
        "99999|mallory",
        "67890",  # "67890|bob" is accepted only as that whole form
        "67890|BOB",
        "alice",  # a username alone is not a Telegram sender
        "12345 |carol",
        "-12345|carol",
        "１２３４５|carol",  # full-width digits
        "99999|ali ce",
        "99999|@alice",
        "",
    ],
)
def test_telegram_denied(sender):
    assert not is_allowed("telegram", sender, TG_ALLOW)


def test_telegram_username_is_case_insensitive_and_at_is_ignored():
    assert is_allowed("telegram", "42|Alice", ["@alice"])
    assert is_allowed("telegram", "42|alice", ["ALICE"])
    assert not is_allowed("telegram", "42|alicex", ["alice"])
    assert not is_allowed("telegram", "42", ["alice"])  # no username, no match by name


def test_telegram_id_entry_written_as_number_matches():
    assert is_allowed("telegram", "123456789", [123456789])


@pytest.mark.parametrize("sender", ["attacker|alice|extra", "not-a-number|alice", "1|a|b"])
def test_malformed_telegram_sender_denied_even_when_channel_is_open(sender):
    assert not is_allowed("telegram", sender, [])
    assert not is_allowed("telegram", sender, ["*"])


def test_email_vectors():
    allow = ["allow@email.com"]
    assert is_allowed("email", "ALLOW@EMAIL.COM", allow)
    assert is_allowed("email", "allow@email.com", allow)
    assert not is_allowed("email", "attacker|allow@email.com", allow)
    assert not is_allowed("email", '"allow@email.com" <evil@x.org>', allow)


@pytest.mark.parametrize(
    "sender",
    [
        "Allow <allow@email.com>",  # a display name: only bare addresses are senders
        "<allow@email.com>",
        "allow@email.com, evil@x.org",
        "allow@email.com evil@x.org",
        "allow@email.com\n",
        "allow@email.com.evil.org",
        "evil.allow@email.com",
        "allow@email.com@evil.org",
        '"allow@email.com"@evil.org',
        "allow@email.co",
        "",
    ],
)
def test_email_denied(sender):
    assert not is_allowed("email", sender, ["allow@email.com"])


def test_email_entry_case_and_spaces_ignored():
    assert is_allowed("email", "user@example.com", [" User@Example.COM "])


def test_malformed_email_denied_even_when_open():
    assert not is_allowed("email", '"a@b.c" <evil@x.org>', [])
    assert is_allowed("email", "anyone@x.org", [])


def test_whatsapp_vectors():
    allow = ["+1234567890"]
    assert is_allowed("whatsapp", "1234567890@s.whatsapp.net", allow)
    assert is_allowed("whatsapp", "+1234567890", allow)
    assert is_allowed("whatsapp", "1234567890", allow)
    assert is_allowed("whatsapp", "1234567890:12@s.whatsapp.net", allow)  # a linked device
    assert is_allowed("whatsapp", "1234567890@s.whatsapp.net", ["1234567890"])
    assert is_allowed("whatsapp", "1234567890@s.whatsapp.net", ["+1 (234) 567-890"])


@pytest.mark.parametrize(
    "sender",
    [
        "12345678901@s.whatsapp.net",
        "234567890@s.whatsapp.net",
        "1234567890@evil.net",
        "1234567890-1600000000@g.us",  # a group: the caller must pass the participant
        "+1234567890x",
        "+1234567890 ",
        "++1234567890",
        "",
    ],
)
def test_whatsapp_denied(sender):
    assert not is_allowed("whatsapp", sender, ["+1234567890"])


def test_whatsapp_group_judged_by_participant():
    allow = ["+1234567890"]
    group, participant, stranger = (
        "120363-99@g.us",
        "1234567890@s.whatsapp.net",
        "555@s.whatsapp.net",
    )
    assert not is_allowed("whatsapp", group, allow)
    assert is_allowed("whatsapp", participant, allow)
    assert not is_allowed("whatsapp", stranger, allow)


def test_empty_list_and_star_mean_everyone():
    for channel, sender in [
        ("telegram", "5|x"),
        ("whatsapp", "5@s.whatsapp.net"),
        ("email", "a@b.c"),
    ]:
        assert is_allowed(channel, sender, [])
        assert is_allowed(channel, sender, ["*"])
        assert is_allowed(channel, sender, ["someone-else", "*"])


def test_unknown_channel_matches_exactly():
    assert is_allowed("api", "local", ["local"])
    assert not is_allowed("api", "local2", ["local"])
    assert not is_allowed("api", "LOCAL", ["local"])


def test_commands_pass_the_same_check():
    # Commands (/start, /help, /reset) carry the same sender; the check does not look at text.
    assert not is_allowed("telegram", "99999|mallory", TG_ALLOW)


def test_open_channels():
    cfg = Config()
    assert open_channels(cfg) == []
    cfg.channels.telegram.enabled = True
    cfg.channels.email.enabled = True
    cfg.channels.email.allow_from = ["me@example.com"]
    cfg.channels.whatsapp.allow_from = []  # disabled, so not open
    assert open_channels(cfg) == ["telegram"]
    cfg.channels.whatsapp.enabled = True
    assert open_channels(cfg) == ["telegram", "whatsapp"]
