"""hf_deitcxr.serving.safe_text: file-derived text shown literally, messages without server details (in-process)."""

from __future__ import annotations

import re

import pytest

from hf_deitcxr.serving.safe_text import (
    MESSAGE_LIMIT,
    NAME_LIMIT,
    html_text,
    log_name,
    markdown_literal,
    shorten,
    user_message,
)

HOSTILE = "# NORMAL [review](http://evil.example/x) <img src=http://evil.example/p.png> *ok* www.evil.example"


def render_markdown(text: str) -> str:
    """CommonMark + GFM autolinks, as Gradio's Markdown (marked) renders them; markdown-it-py is what we have here."""
    markdown_it = pytest.importorskip("markdown_it")
    return markdown_it.MarkdownIt("commonmark").enable(["linkify"] if _has_linkify() else []).render(text)


def _has_linkify() -> bool:
    try:
        import linkify_it  # noqa: F401
    except ImportError:
        return False
    return True


def test_markdown_literal_renders_as_its_own_text():
    rendered = render_markdown(f"Input: DICOM ({markdown_literal(HOSTILE, limit=200)})")
    assert rendered.startswith("<p>") and rendered.count("<") == 2  # one paragraph, nothing else: no h1, a, img, em
    assert "&lt;img src=http://evil.example/p.png&gt;" in rendered and "# NORMAL [review](" in rendered


@pytest.mark.parametrize("value", ["1. list", "- item", "> quote", "| a | b |", "`code`", "\\*", "a\nb\n# c", "$$x$$"])
def test_markdown_literal_keeps_every_syntax_character_literal(value):
    rendered = render_markdown(markdown_literal(value))
    assert rendered == f"<p>{html_text(shorten(value))}</p>\n"


def test_markdown_literal_is_one_short_line():
    assert markdown_literal("a\n\n# b", limit=64) == "a \\# b"
    assert len(markdown_literal("x" * 1000, limit=20)) == 20
    assert markdown_literal("![a](b)") == r"\!\[a\]\(b\)"  # every part of a link or image escaped, not only some


def test_html_text_escapes_tags_and_entities():
    assert html_text('<img src="x"> & &amp;') == '&lt;img src="x"&gt; &amp; &amp;amp;'


@pytest.mark.parametrize(("message", "expected"), [
    ("[Errno 2] No such file or directory: '/tmp/gradio/0a1b/chest x.png'",
     "[Errno 2] No such file or directory: 'chest x.png'"),
    (r"C:\Users\me\upload\x.png: bad", "x.png: bad"),
    ("x.dcm: corrupt or truncated DICOM (InvalidDicomError: File is missing its header)",
     "x.dcm: corrupt or truncated DICOM (File is missing its header)"),
    ("x: (pydicom.errors.InvalidDicomError: no)", "x: (no)"),
    ("cannot identify image file <_io.BytesIO object at 0x7f3c2a1b2c30>", "cannot identify image file"),
    ("bad value at 0x7ffe12345678 in <class 'ValueError'>", "bad value in"),
    ("x.dcm: cannot decode 'JPEG 2000' (1.2.840.10008.1.2.4.91): install a decoder for it, e.g. `pip install "
     "pylibjpeg` or `pip install python-gdcm`. pydicom said: no decoder.",
     "x.dcm: cannot decode 'JPEG 2000' (1.2.840.10008.1.2.4.91): pydicom said: no decoder."),
    ("x.dcm: all plugins are missing dependencies:\n\tgdcm - requires gdcm\n\tpylibjpeg - requires pylibjpeg. Upload "
     "a PNG.", "x.dcm: Upload a PNG."),
    ("Upload a PNG/JPEG or DICOM: install.png is not one", "Upload a PNG/JPEG or DICOM: install.png is not one"),
])
def test_user_message_drops_what_only_the_server_should_know(message, expected):
    assert user_message(message) == expected


def test_user_message_shortens_a_huge_file_name_and_the_whole_message():
    message = user_message(f"{'a' * 100_000}.png: not a recognised image format")
    assert message.endswith(".png: not a recognised image format")
    assert len(message) == NAME_LIMIT + len(" not a recognised image format")  # the name keeps its colon
    assert len(user_message("word " * 10_000)) == MESSAGE_LIMIT


def test_nothing_path_like_survives():
    message = user_message("x at /home/user/.cache/huggingface/hub/models--a/snapshots/1/model.safetensors: gone")
    assert not re.search(r"/\w", message) and "model.safetensors" in message


def test_log_name_is_the_short_base_name():
    assert log_name("/tmp/gradio/0a1b/" + "b" * 300 + ".dcm").endswith("b.dcm")
    assert len(log_name("/tmp/" + "b" * 300)) == NAME_LIMIT
    assert log_name("C:\\up\\x.png") == "x.png" and log_name(None) == "<no file>"
    assert log_name("a\nfake log line") == "a fake log line"  # no forged log lines
