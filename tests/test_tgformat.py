"""Markdown → Telegram HTML rendering and message splitting (checked with the fake's HTML parser)."""

from __future__ import annotations

import random

import pytest

from fakes.telegram_server import visible_html
from nanobot.channels.telegram.format import markdown_to_html, split_message, utf16_len


@pytest.mark.parametrize(
    ("md", "html"),
    [
        ("a < b & c > d", "a &lt; b &amp; c &gt; d"),
        ("**bold** and __also__", "<b>bold</b> and <b>also</b>"),
        ("*it* and _it_", "<i>it</i> and <i>it</i>"),
        ("~~gone~~", "<s>gone</s>"),
        ("use my_var_name and some_func_call()", "use my_var_name and some_func_call()"),
        ("2*3*4 and a * b * c", "2*3*4 and a * b * c"),
        ("**bold _it_ x**", "<b>bold <i>it</i> x</b>"),
        ("`<b>` & `**x**`", "<code>&lt;b&gt;</code> &amp; <code>**x**</code>"),
        (r"\*not italic\*", "*not italic*"),
        ("# Title <x>", "<b>Title &lt;x&gt;</b>"),
        ("- one\n  * two", "• one\n  • two"),
        ("1. first", "1. first"),
        ("> quoted **b**\n> more", "<blockquote>quoted <b>b</b>\nmore</blockquote>"),
    ],
)
def test_inline_and_block_rendering(md, html):
    assert markdown_to_html(md) == html


def test_fenced_code_keeps_text_and_escapes_it():
    md = "Run:\n```python\nif a < b and c:\n    print('**not bold**')\n```\ndone"
    assert markdown_to_html(md) == (
        'Run:\n<pre><code class="language-python">if a &lt; b and c:\n'
        "    print('**not bold**')</code></pre>\ndone"
    )


def test_fence_without_language_and_unclosed_fence():
    assert markdown_to_html("```\nx & y\n```") == "<pre>x &amp; y</pre>"
    assert (
        markdown_to_html("```sh\nls <dir>")
        == '<pre><code class="language-sh">ls &lt;dir&gt;</code></pre>'
    )


def test_links_only_for_safe_schemes_and_attributes_escaped():
    html = markdown_to_html('[site](https://e.com/?a=1&b="2") [tg](tg://user?id=1)')
    assert html == (
        '<a href="https://e.com/?a=1&amp;b=&quot;2&quot;">site</a> <a href="tg://user?id=1">tg</a>'
    )
    for bad in ("[x](javascript:alert(1))", "[x](file:///etc/passwd)", "[x](data:text/html,hi)"):
        out = markdown_to_html(bad)
        assert "<a" not in out and "href" not in out
        assert visible_html(out) == bad


def test_link_label_is_formatted_and_escaped():
    assert markdown_to_html("[**a<b**](http://x.y)") == '<a href="http://x.y"><b>a&lt;b</b></a>'


_FRAGMENTS = [
    "**", "*", "_", "__", "`", "```", "```py", "\n", "\n\n", " ", "a", "snake_case", "<", ">",
    "&", "&amp;", '"', "'", "[l](http://x.y/?q=<1>&r=\"2\")", "[l](javascript:x)", "# ", "- ",
    "> ", "~~", "\\*", "😀", "<b>", "</i>", "word",
]  # fmt: skip


def test_random_markdown_always_renders_to_html_telegram_accepts():
    rng = random.Random(1234)
    for _ in range(3000):
        md = "".join(rng.choice(_FRAGMENTS) for _ in range(rng.randint(1, 25)))
        html = markdown_to_html(md)
        visible = visible_html(html)  # raises when Telegram would refuse the HTML
        assert utf16_len(visible) <= utf16_len(md), md


def test_short_text_is_one_part():
    assert split_message("hello") == ["hello"]
    assert split_message("x" * 4096) == ["x" * 4096]


def test_split_prefers_paragraphs():
    paras = [f"paragraph {i} " + "word " * 150 for i in range(20)]
    text = "\n\n".join(p.strip() for p in paras)
    parts = split_message(text, 2000)
    assert len(parts) > 1
    assert all(len(p) <= 2000 for p in parts)
    assert "\n\n".join(parts) == text  # every cut was at a paragraph break


def test_split_falls_back_to_lines_then_words_then_hard_cut():
    lines = "\n".join(f"line {i:04d} " + "x" * 60 for i in range(200))
    parts = split_message(lines, 1000)
    assert "\n".join(parts) == lines and all(len(p) <= 1000 for p in parts)

    words = " ".join(f"w{i}" for i in range(2000))
    parts = split_message(words, 500)
    assert " ".join(parts) == words and all(len(p) <= 500 for p in parts)

    blob = "y" * 10_000
    parts = split_message(blob, 4096)
    assert "".join(parts) == blob and [len(p) for p in parts] == [4096, 4096, 1808]


def test_split_counts_utf16_units():
    text = "😀" * 3000  # 6000 UTF-16 units
    parts = split_message(text)
    assert "".join(parts) == text
    assert all(utf16_len(p) <= 4096 for p in parts)


def test_split_closes_and_reopens_a_code_fence():
    code = "\n".join(f"print({i})  # <{i}>" for i in range(600))
    text = f"Here:\n```python\n{code}\n```\nEnd."
    parts = split_message(text, 4096)
    assert len(parts) >= 3
    for part in parts:
        assert utf16_len(part) <= 4096
        html = markdown_to_html(part)
        assert "<pre><code" in html
        assert utf16_len(visible_html(html)) <= 4096
    assert parts[1].startswith("```python\n") and parts[0].endswith("\n```")
    shown = "\n".join(visible_html(markdown_to_html(p)) for p in parts)
    for i in (0, 299, 599):
        assert f"print({i})  # <{i}>" in shown


def test_split_parts_render_without_broken_tags():
    rng = random.Random(99)
    text = "\n".join(
        " ".join(rng.choice(["**bold**", "`co<de>`", "_it_", "a&b", "[l](http://e.com)", "word"])
        for _ in range(rng.randint(1, 30)))
        for _ in range(800)
    )  # fmt: skip
    parts = split_message(text)
    assert len(parts) > 1
    for part in parts:
        assert utf16_len(visible_html(markdown_to_html(part))) <= 4096
