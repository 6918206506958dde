"""Streamed text to speakable sentences (pure).

``SentenceSplitter.feed()`` takes the LLM's deltas and returns each sentence as soon as it is
complete, so the first one can be spoken while the rest is still being generated. A sentence ends
at ``.``, ``!``, ``?`` or ``…`` (closing quotes and brackets stay with it) followed by whitespace,
and at every line break. A full stop or an ellipsis only ends a sentence when the next word does
not start with a lower-case letter, and never after an abbreviation (``Dr.``, ``e.g.``), an
initial (``J.``, ``U.S.``) or a list number at the start of a line (``1.``); ``3.5`` has no
whitespace after the dot. Deciding needs the next character, which in practice arrives in the
same token as the space (``" The"``).

Markdown that must not be read aloud (emphasis, headings, code ticks, list markers, link targets)
is removed and whitespace collapsed; pieces with no letters or digits are dropped.

``first_clause`` cuts a reply's first sentence at its first clause break (a comma, semicolon,
colon or dash), so that the clause can be synthesised, and heard, before the rest of it.
"""

from __future__ import annotations

import re
from typing import Final

ABBREVIATIONS: Final = frozenset(
    {
        "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "mt", "vs",
        "etc", "e.g", "i.e", "cf", "approx", "fig", "inc", "ltd", "ca", "resp",
    }
)  # fmt: skip

_CLOSERS: Final = "\"'\u201d\u2019\u00bb)]"  # quotes and brackets that close a sentence
_OPENERS: Final = "\"'\u201c\u2018\u00ab(["
_CANDIDATE: Final = re.compile(
    r"\n|(?P<mark>\.{2,}|[.!?…]+)(?P<close>[" + re.escape(_CLOSERS) + r"]*)(?=\s)"
)
_WORD_BEFORE: Final = re.compile(r"(\S*)$")
_INITIALS: Final = re.compile(r"(?:[^\W\d_]\.)*[^\W\d_]", re.IGNORECASE)
_LINE_MARKER: Final = re.compile(r"^\s*(?:#{1,6}\s+|>\s*|[-*+•]\s+|\d{1,3}[.)]\s+)+")
_LINK: Final = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_UNSPOKEN: Final = re.compile(r"[*#`]+")
_SPACES: Final = re.compile(r"\s+")
_SPACE_BEFORE_MARK: Final = re.compile(r"\s+(?=[.,;:!?…])")
_SPEAKABLE: Final = re.compile(r"[^\W_]")
_CLAUSE_BREAK: Final = re.compile(r"[,;:](?=\s)|\s[\u2014\u2013-](?=\s)")  # em/en dash, hyphen
MIN_CLAUSE_CHARS: Final = 12
"""A clause said on its own is at least this long (about 0.7 s of speech): long enough for the
rest of the sentence to be synthesised while it plays, and not a lone "Sure," or "Well,"."""


class SentenceSplitter:
    """Feed deltas in, get whole sentences out; ``flush()`` at the end of the reply."""

    def __init__(self) -> None:
        self._buffer = ""
        self._at_line_start = True  # the buffer begins at the start of a line

    def feed(self, delta: str) -> list[str]:
        """The sentences that ``delta`` completed, cleaned, in order."""
        self._buffer += delta.replace("\r\n", "\n").replace("\r", "\n")
        sentences: list[str] = []
        while (cut := self._next_boundary()) is not None:
            end, line_break = cut
            piece, self._buffer = self._buffer[:end], self._buffer[end:].lstrip(" \t")
            self._emit(piece, sentences)
            self._at_line_start = line_break
            if line_break:
                self._buffer = self._buffer.removeprefix("\n")
        return sentences

    def flush(self) -> list[str]:
        """What is left as a last sentence (if it has anything to say); resets the splitter."""
        sentences: list[str] = []
        self._emit(self._buffer, sentences)
        self._buffer = ""
        self._at_line_start = True
        return sentences

    def _emit(self, piece: str, sentences: list[str]) -> None:
        text = clean(piece, at_line_start=self._at_line_start)
        if text:
            sentences.append(text)

    def _next_boundary(self) -> tuple[int, bool] | None:
        """(end of the first complete sentence, whether it ended at a line break), or None."""
        buffer = self._buffer
        for match in _CANDIDATE.finditer(buffer):
            if match.group() == "\n":
                return match.start(), True
            mark = match.group("mark")
            if "!" in mark or "?" in mark:
                return match.end(), False
            if mark == "." and self._keeps_going(match.start()):
                continue
            following = buffer[match.end() :].lstrip()
            if not following:
                return None  # the next word decides: wait for it
            if following[0].islower():
                continue
            return match.end(), False
        return None

    def _keeps_going(self, dot: int) -> bool:
        """True when the full stop at ``dot`` belongs to an abbreviation, initial or list number."""
        before = self._buffer[:dot]
        found = _WORD_BEFORE.search(before)
        word = found.group(1).lstrip(_OPENERS) if found else ""
        if word.lower() in ABBREVIATIONS or _INITIALS.fullmatch(word):
            return True
        line = before.rsplit("\n", 1)[-1]
        starts_line = "\n" in before or self._at_line_start
        return word.isdigit() and starts_line and line.strip() == word


def clean(text: str, *, at_line_start: bool = True) -> str:
    """Text as it should be spoken: markdown removed, whitespace collapsed; "" if nothing to say."""
    if at_line_start:
        text = _LINE_MARKER.sub("", text)
    text = _LINK.sub(r"\1", text)
    text = _UNSPOKEN.sub("", text).replace("_", " ")
    text = _SPACE_BEFORE_MARK.sub("", _SPACES.sub(" ", text)).strip()
    return text if _SPEAKABLE.search(text) else ""


def first_clause(sentence: str) -> tuple[str, ...]:
    """``sentence`` as (its first clause, the rest) when it has a clause break after at least
    ``MIN_CLAUSE_CHARS`` characters and something to say after it; else ``(sentence,)``.

    The clause keeps its punctuation, so it is spoken with the intonation of a clause that goes
    on. A comma between digits (``1,000``) is no break: no whitespace follows it.
    """
    for found in _CLAUSE_BREAK.finditer(sentence):
        clause, rest = sentence[: found.end()].strip(), sentence[found.end() :].strip()
        if len(clause) < MIN_CLAUSE_CHARS:
            continue
        if _SPEAKABLE.search(rest):
            return clause, rest
        break
    return (sentence,)
