"""Pure: a Slack message payload drawn in the terminal the way Slack shows it.

Header in bold, the message, fields in two columns, code blocks, the grey context line, and the
attachment's colour bar down the left of the details. Emoji shortcodes we use become emoji
(unknown ones stay ``:code:``), ``<!here>`` reads ``@here``, ``<url|label>`` reads ``label``,
``&lt;`` reads ``<``. ANSI styling only when asked (``color=True``); the caller decides from
``isatty()``. No I/O.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import quote

__all__ = ["EMOJI", "builder_url", "render_terminal", "to_plain"]

#: The shortcodes slack-logging's catalog and docs use, and a few common neighbours.
EMOJI = {
    "bar_chart": "📊",
    "bell": "🔔",
    "credit_card": "💳",
    "electric_plug": "🔌",
    "fire": "🔥",
    "grey_question": "❔",
    "hourglass": "⌛",
    "information_source": "ℹ️",
    "large_green_circle": "🟢",
    "leftwards_arrow_with_hook": "↩️",
    "money_with_wings": "💸",
    "red_circle": "🔴",
    "rotating_light": "🚨",
    "warning": "⚠️",
    "white_check_mark": "✅",
    "x": "❌",
}

_SHORTCODE_RE = re.compile(r":([a-z0-9_+\-]+):")
_LINK_RE = re.compile(r"<([^<>|]*)(?:\|([^<>]*))?>")
_BOLD_RE = re.compile(r"(?<![\w*])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![\w*])")
_ITALIC_RE = re.compile(r"(?<![\w_])_(?=\S)([^_\n]+?)(?<=\S)_(?![\w_])")
_STRIKE_RE = re.compile(r"(?<![\w~])~(?=\S)([^~\n]+?)(?<=\S)~(?![\w~])")
_CODE_RE = re.compile(r"`([^`\n]+)`")
_FENCE_RE = re.compile(r"```\n?(.*?)\n?```", re.DOTALL)

_BOLD, _DIM, _ITALIC, _RESET = "\x1b[1m", "\x1b[2m", "\x1b[3m", "\x1b[0m"
_CODE_STYLE = "\x1b[38;5;203m"
_BAR = "▌"
_GAP = 2


def render_terminal(payload: Mapping[str, Any], *, color: bool = False, width: int = 80) -> str:
    """``payload`` (``text``, ``blocks``, ``attachments``) as lines for a terminal.

    Top-level blocks show as they are; each attachment's blocks sit behind a bar in the
    attachment's colour, as in Slack. Without blocks the fallback ``text`` is shown.
    """
    width = max(30, width)
    style = _Style(color)
    lines: list[str] = []
    blocks = payload.get("blocks")
    attachments = payload.get("attachments")
    if isinstance(blocks, list) and blocks:
        lines += _blocks(blocks, style, width)
    elif not attachments and isinstance(payload.get("text"), str):
        lines += _wrap_all(style.mrkdwn(payload["text"]), width)
    for attachment in attachments if isinstance(attachments, list) else []:
        if not isinstance(attachment, Mapping):
            continue
        inner = attachment.get("blocks")
        body = _blocks(inner, style, width - 2) if isinstance(inner, list) else []
        if not body and isinstance(attachment.get("text"), str):
            body = _wrap_all(style.mrkdwn(attachment["text"]), width - 2)
        bar = style.bar(attachment.get("color"))
        lines += [f"{bar} {line}".rstrip() for line in body]
    return "\n".join(lines)


def builder_url(payload: Mapping[str, Any]) -> str:
    """A Block Kit Builder link that opens ``payload``'s blocks and attachments."""
    shown = {k: payload[k] for k in ("blocks", "attachments") if k in payload}
    text = json.dumps(shown, ensure_ascii=False, separators=(",", ":"))
    return "https://app.slack.com/block-kit-builder/#" + quote(text, safe="")


def to_plain(mrkdwn: str) -> str:
    """One line of Slack mrkdwn as the words a reader sees: entities decoded, links and
    mentions spelled out, emoji drawn, emphasis markers dropped."""
    return _Style(False).inline(mrkdwn)


class _Style:
    def __init__(self, color: bool) -> None:
        self.color = color
        self.code_prefix = self.wrap(_DIM, "┆ ")

    def wrap(self, code: str, text: str) -> str:
        return f"{code}{text}{_RESET}" if self.color and text else text

    def bar(self, hex_color: object) -> str:
        if not self.color or not isinstance(hex_color, str):
            return _BAR
        match = re.fullmatch(r"#?([0-9A-Fa-f]{6})", hex_color)
        if not match:
            return _BAR
        r, g, b = (int(match.group(1)[i : i + 2], 16) for i in (0, 2, 4))
        return f"\x1b[38;2;{r};{g};{b}m{_BAR}{_RESET}"

    def inline(self, text: str) -> str:
        text = _SHORTCODE_RE.sub(lambda m: EMOJI.get(m.group(1), m.group()), text)
        text = _LINK_RE.sub(_link, text)
        if self.color:
            text = _CODE_RE.sub(lambda m: self.wrap(_CODE_STYLE, m.group(1)), text)
        # Slack draws the emphasis and hides the markers; inline code keeps its backticks
        # in plain output, so it still reads as code.
        text = _BOLD_RE.sub(lambda m: self.wrap(_BOLD, m.group(1)), text)
        text = _ITALIC_RE.sub(lambda m: self.wrap(_ITALIC, m.group(1)), text)
        text = _STRIKE_RE.sub(lambda m: m.group(1), text)
        return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")

    def mrkdwn(self, text: str) -> list[str]:
        """Lines of one mrkdwn text; fenced code is drawn as an indented, ruled block."""
        out: list[str] = []
        last = 0
        for match in _FENCE_RE.finditer(text):
            out += [self.inline(line) for line in text[last : match.start()].split("\n")]
            code = match.group(1).replace("&lt;", "<").replace("&gt;", ">")
            out += [self.code_prefix + line for line in code.replace("&amp;", "&").split("\n")]
            last = match.end()
        out += [self.inline(line) for line in text[last:].split("\n")]
        while out and not out[-1].strip():
            out.pop()
        while out and not out[0].strip():
            out.pop(0)
        return out

    def text_object(self, obj: object) -> list[str]:
        if not isinstance(obj, Mapping) or not isinstance(obj.get("text"), str):
            return []
        if obj.get("type") == "plain_text":
            return [self.inline(line) for line in obj["text"].split("\n")]
        return self.mrkdwn(obj["text"])


def _link(match: re.Match[str]) -> str:
    target, label = match.group(1), match.group(2)
    if target.startswith("!subteam^"):
        return "@" + (label or target.removeprefix("!subteam^"))
    if target.startswith("!"):
        return "@" + (label or target[1:].split("^", 1)[0])
    if target.startswith(("@", "#")):
        return target[0] + label.lstrip("@#") if label else target
    return f"{label} ({target})" if label and label != target else target


def _blocks(blocks: Sequence[object], style: _Style, width: int) -> list[str]:
    lines: list[str] = []
    for block in blocks:
        if not isinstance(block, Mapping):
            continue
        kind = block.get("type")
        if kind == "header":
            text = " ".join(style.text_object(block.get("text")))
            lines += [style.wrap(_BOLD, line) for line in _wrap(text, width)]
        elif kind == "section":
            lines += _wrap_all(style.text_object(block.get("text")), width, style.code_prefix)
            fields = block.get("fields")
            if isinstance(fields, list) and fields:
                lines += _two_columns([style.text_object(f) for f in fields], style, width)
        elif kind == "context":
            parts = [" ".join(style.text_object(e)) for e in block.get("elements") or []]
            for line in _wrap(" · ".join(p for p in parts if p), width):
                lines.append(style.wrap(_DIM, line))
        elif kind == "divider":
            lines.append("─" * min(width, 40))
        elif kind == "markdown" and isinstance(block.get("text"), str):
            lines += _wrap_all(style.mrkdwn(block["text"]), width, style.code_prefix)
        else:
            lines.append(style.wrap(_DIM, f"[{kind} block]"))
    return lines


def _two_columns(cells: Sequence[list[str]], style: _Style, width: int) -> list[str]:
    """Fields side by side, two to a row, as Slack lays out a section's fields."""
    column = (width - _GAP) // 2
    lines: list[str] = []
    for left_index in range(0, len(cells), 2):
        left = _wrap_all(cells[left_index], column)
        right = _wrap_all(cells[left_index + 1], column) if left_index + 1 < len(cells) else []
        for i in range(max(len(left), len(right))):
            a = left[i] if i < len(left) else ""
            b = right[i] if i < len(right) else ""
            lines.append((a + " " * (column - _width(a) + _GAP) + b).rstrip() if b else a)
    return lines


def _wrap_all(lines: Iterable[str], width: int, code_prefix: str = "") -> list[str]:
    """Every line wrapped; a code line's continuations keep the code rule in front."""
    out: list[str] = []
    for line in lines:
        if code_prefix and line.startswith(code_prefix):
            body = line[len(code_prefix) :]
            out += [code_prefix + piece for piece in _wrap(body, width - 2)]
        else:
            out += _wrap(line, width)
    return out


_ANSI_RE = re.compile(r"\x1b\[[0-9;]*m")


def _width(text: str) -> int:
    """Columns a terminal uses for ``text``: wide (CJK, emoji) characters take two."""
    plain = _ANSI_RE.sub("", text)
    return sum(_char_width(c) for c in plain)


def _char_width(char: str) -> int:
    if unicodedata.combining(char) or char in "\u200b\u200d\ufe0f":
        return 0
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def _wrap(line: str, width: int) -> list[str]:
    """``line`` cut into pieces of at most ``width`` columns, at spaces where possible."""
    if _width(line) <= width:
        return [line]
    pieces: list[str] = []
    current, used = "", 0
    for part in re.split(r"(\x1b\[[0-9;]*m| )", line):
        if not part:
            continue
        size = 0 if part.startswith("\x1b[") else _width(part)
        if used + size > width and current.strip():
            pieces.append(current.rstrip())
            current, used = "", 0
            if part == " ":
                continue
        while size > width:  # one word longer than the line: cut it
            head, head_size = "", 0
            for char in part:
                if head_size + _char_width(char) > width:
                    break
                head += char
                head_size += _char_width(char)
            pieces.append(head)
            part = part[len(head) :]  # noqa: PLW2901 - the rest of the same word
            size = _width(part)
        current += part
        used += size
    if current.strip():
        pieces.append(current.rstrip())
    return pieces or [""]
