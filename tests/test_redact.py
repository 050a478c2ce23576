"""The one redaction point: secrets and token shapes masked, the cache of long texts never stale."""

from __future__ import annotations

from nanobot.security.redact import MASK, Redactor


def test_a_long_text_is_masked_again_after_a_new_secret_is_added():
    r = Redactor()
    text = "prompt " * 200 + "the key is hunter2-secret-value"
    assert r.redact(text, repeats=True) == text  # remembered as clean …
    r.add("hunter2-secret-value")
    masked = r.redact(text, repeats=True)
    assert "hunter2" not in masked and MASK in masked  # … but not any more
    r.clear()
    assert r.redact(text, repeats=True) == text


def test_only_texts_that_repeat_are_remembered():
    """A session line or a tool's output is seen once: remembering it would only churn memory."""
    r = Redactor()
    for i in range(50):
        r.redact(f'{{"ts": {i}, "content": "{"y" * 600}"}}')
    assert r.remembered_chars == 0
    prompt = "## AGENTS.md\n" + "be helpful " * 100
    r.redact(prompt, repeats=True)
    r.redact(prompt, repeats=True)
    assert r.remembered_chars == len(prompt)


def test_token_shapes_are_masked_in_short_and_long_texts():
    r = Redactor()
    key = "sk-" + "a1B2" * 8
    assert key not in r.redact(f"use {key}")
    assert key not in r.redact("x" * 600 + key)
    cached = r.redact("x" * 600 + key, repeats=True)
    assert key not in cached and cached == r.redact("x" * 600 + key, repeats=True)
