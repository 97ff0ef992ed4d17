"""What Slack refuses in a message payload, as Slack says it: pure, for the strict fake Slack.

Slack's documented limits (docs.slack.dev, Block Kit reference and chat.postMessage): message
``text`` up to 40,000 characters (``msg_too_long``); at most 50 blocks in a message and in each
attachment; known block types only; a header's ``plain_text`` up to 150 characters; a section's
text up to 3,000 and at most 10 fields of up to 2,000 each; text objects never empty; a context
block with 1 to 10 elements; ``block_id`` up to 255; at most 100 attachments; legacy attachment
fields (``text``, ``fields``...) not mixed with ``blocks``; ``metadata`` an object with an
``event_type`` string and an ``event_payload`` object (``invalid_metadata``). Errors name the
offending place the way Slack does: ``… [json-pointer:/blocks/0/text/text]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["MESSAGE_BLOCK_TYPES", "Rejection", "check_payload"]

TEXT_MAX = 40_000
BLOCKS_MAX = 50
ATTACHMENTS_MAX = 100
HEADER_MAX = 150
SECTION_TEXT_MAX = 3000
FIELDS_MAX = 10
FIELD_TEXT_MAX = 2000
CONTEXT_ELEMENTS_MAX = 10
MARKDOWN_MAX = 12_000
BLOCK_ID_MAX = 255

#: Block types Slack accepts in messages.
MESSAGE_BLOCK_TYPES = frozenset(
    {
        "actions",
        "context",
        "divider",
        "file",
        "header",
        "image",
        "input",
        "markdown",
        "rich_text",
        "section",
        "table",
        "video",
    }
)
_TEXT_TYPES = frozenset({"plain_text", "mrkdwn"})
#: Legacy attachment fields Slack refuses next to ``blocks`` in one attachment.
_LEGACY_WITH_BLOCKS = ("text", "fields", "pretext", "callback_id", "actions")


@dataclass(frozen=True)
class Rejection:
    """Slack's answer to a payload it refuses: the error code and what is wrong where."""

    error: str
    """``invalid_blocks``, ``invalid_attachments``, ``msg_too_long``, ``invalid_metadata``..."""
    errors: tuple[str, ...]


class _Invalid(Exception):
    def __init__(self, message: str, pointer: str) -> None:
        super().__init__(f"{message} [json-pointer:{pointer}]")


def check_payload(payload: Mapping[str, Any]) -> Rejection | None:
    """What Slack would refuse in ``payload`` (a chat.postMessage or webhook body), or None.

    ``check_payload({"blocks": [{"type": "header", "text": {"type": "plain_text",
    "text": "x" * 151}}]}).error == "invalid_blocks"``
    """
    text = payload.get("text")
    if text is not None and not isinstance(text, str):
        return Rejection("invalid_arguments", ("text must be a string [json-pointer:/text]",))
    if isinstance(text, str) and len(text) > TEXT_MAX:
        return Rejection(
            "msg_too_long",
            (f"text must be at most {TEXT_MAX} characters, got {len(text)} [json-pointer:/text]",),
        )
    for key, error, check in (
        ("blocks", "invalid_blocks", _blocks),
        ("attachments", "invalid_attachments", _attachments),
        ("metadata", "invalid_metadata", _metadata),
    ):
        if key in payload:
            try:
                check(payload[key], f"/{key}")
            except _Invalid as exc:
                return Rejection(error, (str(exc),))
    return None


def _blocks(blocks: object, at: str) -> None:
    if not isinstance(blocks, list):
        raise _Invalid("must be an array of blocks", at)
    if len(blocks) > BLOCKS_MAX:
        raise _Invalid(f"no more than {BLOCKS_MAX} items allowed, got {len(blocks)}", at)
    for i, block in enumerate(blocks):
        _block(block, f"{at}/{i}")


def _block(block: object, at: str) -> None:
    if not isinstance(block, dict):
        raise _Invalid("a block must be an object", at)
    kind = block.get("type")
    if kind not in MESSAGE_BLOCK_TYPES:
        raise _Invalid(f"unknown block type {kind!r}", f"{at}/type")
    block_id = block.get("block_id")
    if block_id is not None and (not isinstance(block_id, str) or len(block_id) > BLOCK_ID_MAX):
        raise _Invalid(f"block_id must be a string of at most {BLOCK_ID_MAX}", f"{at}/block_id")
    if kind == "header":
        _text_object(block.get("text"), f"{at}/text", HEADER_MAX, plain_only=True)
    elif kind == "section":
        _section(block, at)
    elif kind == "context":
        elements = block.get("elements")
        if not isinstance(elements, list) or not 1 <= len(elements) <= CONTEXT_ELEMENTS_MAX:
            raise _Invalid(
                f"elements must hold 1 to {CONTEXT_ELEMENTS_MAX} items", f"{at}/elements"
            )
        for i, element in enumerate(elements):
            if isinstance(element, dict) and element.get("type") == "image":
                continue
            _text_object(element, f"{at}/elements/{i}", SECTION_TEXT_MAX)
    elif kind == "markdown":
        text = block.get("text")
        if not isinstance(text, str) or not text or len(text) > MARKDOWN_MAX:
            raise _Invalid(f"text must be 1 to {MARKDOWN_MAX} characters", f"{at}/text")


def _section(block: Mapping[str, Any], at: str) -> None:
    if "text" not in block and "fields" not in block:
        raise _Invalid("a section needs text or fields", at)
    if "text" in block:
        _text_object(block["text"], f"{at}/text", SECTION_TEXT_MAX)
    if "fields" in block:
        fields = block["fields"]
        if not isinstance(fields, list) or not 1 <= len(fields) <= FIELDS_MAX:
            raise _Invalid(f"fields must hold 1 to {FIELDS_MAX} items", f"{at}/fields")
        for i, field in enumerate(fields):
            _text_object(field, f"{at}/fields/{i}", FIELD_TEXT_MAX)


def _text_object(obj: object, at: str, limit: int, *, plain_only: bool = False) -> None:
    if not isinstance(obj, dict):
        raise _Invalid("must be a text object", at)
    kind = obj.get("type")
    if kind not in (("plain_text",) if plain_only else _TEXT_TYPES):
        raise _Invalid(
            "must be plain_text" if plain_only else "must be plain_text or mrkdwn", f"{at}/type"
        )
    text = obj.get("text")
    if not isinstance(text, str) or not text:
        raise _Invalid("must be more than 0 characters", f"{at}/text")
    if len(text) > limit:
        raise _Invalid(f"must be less than {limit + 1} characters", f"{at}/text")
    if "emoji" in obj and (kind != "plain_text" or not isinstance(obj["emoji"], bool)):
        raise _Invalid("emoji is a boolean of plain_text only", f"{at}/emoji")
    if "verbatim" in obj and (kind != "mrkdwn" or not isinstance(obj["verbatim"], bool)):
        raise _Invalid("verbatim is a boolean of mrkdwn only", f"{at}/verbatim")


def _attachments(attachments: object, at: str) -> None:
    if not isinstance(attachments, list):
        raise _Invalid("must be an array of attachments", at)
    if len(attachments) > ATTACHMENTS_MAX:
        raise _Invalid(f"no more than {ATTACHMENTS_MAX} attachments allowed", at)
    for i, attachment in enumerate(attachments):
        where = f"{at}/{i}"
        if not isinstance(attachment, dict):
            raise _Invalid("an attachment must be an object", where)
        if "blocks" in attachment:
            mixed = [k for k in _LEGACY_WITH_BLOCKS if k in attachment]
            if mixed:
                raise _Invalid(f"{mixed[0]} cannot be used with blocks", f"{where}/{mixed[0]}")
            _blocks(attachment["blocks"], f"{where}/blocks")


def _metadata(metadata: object, at: str) -> None:
    if not isinstance(metadata, dict):
        raise _Invalid("metadata must be an object", at)
    event_type = metadata.get("event_type")
    if not isinstance(event_type, str) or not event_type:
        raise _Invalid("event_type must be a non-empty string", f"{at}/event_type")
    if not isinstance(metadata.get("event_payload"), dict):
        raise _Invalid("event_payload must be an object", f"{at}/event_payload")
