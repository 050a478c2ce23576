"""The one redaction point: secrets and token shapes masked, the cache of long texts never stale."""

from __future__ import annotations

from nanobot.security.redact import MASK, Redactor


def test_a_long_text_is_masked_again_after_a_new_secret_is_added():
    r = Redactor()
    text = "prompt " * 200 + "the key is hunter2-secret-value"
    assert r.redact(text) == text  # remembered as clean …
    r.add("hunter2-secret-value")
    assert "hunter2" not in r.redact(text) and MASK in r.redact(text)  # … but not any more
    r.clear()
    assert r.redact(text) == text


def test_token_shapes_are_masked_in_short_and_long_texts():
    r = Redactor()
    key = "sk-" + "a1B2" * 8
    assert key not in r.redact(f"use {key}")
    assert key not in r.redact("x" * 600 + key)
    assert r.redact("x" * 600 + key) == r.redact("x" * 600 + key)  # from the cache, same answer
