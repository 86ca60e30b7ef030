"""Text taken from an upload (file names, DICOM tags, decoder messages) made safe to show and to log.

The Space renders its status panel as Markdown and Gradio renders error toasts as HTML, so a value such as a DICOM
`Modality` of `# NORMAL` or `<img src=...>` would otherwise become a heading or make the browser fetch an image.
Messages also lose what only the server should know (its paths, memory addresses, exception class names, pip hints).
No Gradio here: plain string functions, tested on their own.
"""

from __future__ import annotations

import html
import re

NAME_LIMIT = 80  # characters of a file name kept in messages and logs (a name can be 100 kB long)
MESSAGE_LIMIT = 600  # characters of a user-facing message
# ASCII punctuation Markdown (CommonMark + GFM autolinks, as marked reads it) may take as syntax; `\` makes it literal.
_MARKDOWN_PUNCTUATION = re.compile(r"([\\`*_{}\[\]()#+\-.!|~$:=\"'^/@])")
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]+")
# An absolute path (POSIX or Windows) -> its last part; not "PNG/JPEG" (a word before the slash).
_PATH = re.compile(r"(?<![\w.\-])(?:[A-Za-z]:)?[\\/](?:[^\s\\/'\"<>]+[\\/])+([^\s\\/'\"<>]+)")
_OBJECT_REPR = re.compile(r"<[^<>]*\bat 0x[0-9a-fA-F]+>")  # <_io.BytesIO object at 0x7f...>
_ADDRESS = re.compile(r"(?:\bat\s+)?\b0x[0-9a-fA-F]{8,}\b")
_CLASS_REPR = re.compile(r"<class '[^']*'>")
_CLASS_NAME = re.compile(r"\b(?:[a-z_]\w*\.)*[A-Z]\w*(?:Error|Exception|Warning)\b:?\s*")
# A clause telling the operator what to install: not for the user (a file called install.png keeps its name).
_HINT = re.compile(r"\b(?:pip|conda|requires)\b|\binstall (?:a|an|the|it)\b|\bdependenc", re.IGNORECASE)
_SEGMENT_END = re.compile(r"(?<=[.;:])\s+")
_LONG_TOKEN = re.compile(rf"\S{{{NAME_LIMIT + 1},}}")


def shorten(text: str, limit: int = NAME_LIMIT) -> str:
    """One line of at most `limit` characters: control characters become spaces, the middle gives way to `…`."""
    text = _CONTROL.sub(" ", str(text)).strip()
    if len(text) <= limit:
        return text
    head = (limit - 1) // 2
    return f"{text[:head]}…{text[len(text) - (limit - 1 - head):]}"


def markdown_literal(value: object, limit: int = 64) -> str:
    """`value` as Markdown that renders as exactly its (shortened) text: no heading, link, image, emphasis or HTML."""
    text = _MARKDOWN_PUNCTUATION.sub(r"\\\1", shorten(str(value), limit))
    # <, > and & as entities, not backslashes: marked would turn `\&lt;` back into markup-looking text.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def html_text(text: str) -> str:
    """Text for a place Gradio renders as HTML (gr.Error / gr.Warning toasts): tags and entities shown literally."""
    return html.escape(text, quote=False)


def user_message(text: str) -> str:
    """A decoder or refusal message without server paths, memory addresses, class names, install hints or huge names."""
    text = _CONTROL.sub(" ", str(text))
    text = _PATH.sub(r"\1", text)
    text = _ADDRESS.sub("", _OBJECT_REPR.sub("", text))
    text = _CLASS_NAME.sub("", _CLASS_REPR.sub("", text))
    kept = [part for part in _SEGMENT_END.split(text) if not _HINT.search(part)]
    text = _LONG_TOKEN.sub(lambda match: shorten(match.group(0)), " ".join(kept))
    text = re.sub(r"\(\s*\)", "", re.sub(r"\(\s+", "(", text))
    return shorten(re.sub(r"\s{2,}", " ", text), MESSAGE_LIMIT)


def log_name(path: object) -> str:
    """The base name of an uploaded file, shortened, for a log line."""
    name = re.split(r"[\\/]", str(path or ""))[-1]
    return shorten(name) or "<no file>"


__all__ = ["MESSAGE_LIMIT", "NAME_LIMIT", "html_text", "log_name", "markdown_literal", "shorten", "user_message"]
