"""What the runtime tells the outside world: states entered, turns finished, errors.

Observers (the JSONL event log here; MQTT later) receive plain data and must not block.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from assistant.core.arbitration import Decision, WakeClaim, decision_json
from assistant.core.commands import Outcome, Phase
from assistant.core.events import RecognizedIntent as RecognizedIntent  # re-exported

# The instants of a turn, in the order they normally happen (monotonic seconds).
MARKS = (
    "wake",
    "listening",
    "speech_end",
    "upload",
    "transcribed",
    "llm_request",
    "first_token",
    "first_sentence",
    "first_tts",
    "first_audio",
    "end",
)
# timings_ms key: (from mark, to mark)
SPANS = {
    "wake_to_listening": ("wake", "listening"),
    "speech_end_to_upload": ("speech_end", "upload"),
    "stt": ("upload", "transcribed"),
    "llm_first_token": ("llm_request", "first_token"),
    "llm_first_sentence": ("llm_request", "first_sentence"),
    "tts_first_sentence": ("first_sentence", "first_tts"),
    "speech_end_to_first_audio": ("speech_end", "first_audio"),
    "total": ("wake", "end"),
}


@dataclass(slots=True)
class TurnRecord:
    """Everything known about one turn, filled in by the runtime as it runs (the turn's work
    only notes instants, through ``Stopwatch``)."""

    turn: int
    wake_word: str | None = None
    wake_score: float | None = None
    transcript: str | None = None
    response: str | None = None
    outcome: Outcome | None = None
    error: str | None = None
    llm_timings: dict[str, float] | None = None
    end_reason: str | None = None
    """Why the command was taken to be over (``assistant.core.turn_end.EndReason``)."""
    speculation: dict[str, int | str | None] | None = None
    """What ran early at pauses, and whether it was used."""
    marks: dict[str, float] = field(default_factory=dict)

    def mark(self, name: str, now: float) -> None:
        """Record instant ``name`` once (the first time it happens)."""
        assert name in MARKS, name
        self.marks.setdefault(name, now)

    def timings_ms(self) -> dict[str, float]:
        return {
            key: round((self.marks[end] - self.marks[start]) * 1000.0, 1)
            for key, (start, end) in SPANS.items()
            if start in self.marks and end in self.marks
        }

    def as_event(self) -> dict[str, Any]:
        event: dict[str, Any] = {
            "event": "turn",
            "turn": self.turn,
            "wake_word": self.wake_word,
            "transcript": self.transcript,
            "response": self.response,
            "outcome": str(self.outcome) if self.outcome else None,
            "timings_ms": self.timings_ms(),
        }
        if self.error:
            event["error"] = self.error
        if self.llm_timings:
            event["llm_timings"] = self.llm_timings
        if self.end_reason:
            event["end_of_turn"] = self.end_reason
        if self.speculation:
            event["speculation"] = self.speculation
        return event


class Stopwatch:
    """Notes the instants of the current turn on the runtime's clock."""

    def __init__(self, record: TurnRecord, now: Callable[[], float]) -> None:
        self._record = record
        self._now = now

    def mark(self, name: str, at: float | None = None) -> None:
        """Record instant ``name`` (now, or ``at``) once: the first time it happens."""
        self._record.mark(name, self._now() if at is None else at)

    def unmark(self, *names: str) -> None:
        """Forget instants noted by work that was dropped."""
        for name in names:
            self._record.marks.pop(name, None)


class Observer:
    """Receives what happens. Every method is optional: the defaults do nothing.

    Called on the event loop's thread, in order; an observer must never block (queue the work).
    """

    def state_entered(self, phase: Phase, turn: int, t_seconds: float) -> None:
        pass

    def wake_detected(self, turn: int, wake_word: str | None, score: float | None) -> None:
        """A turn began: by a wake word, or (wake_word None) by a request to listen."""

    def claim_decided(self, turn: int, claim: WakeClaim, decision: Decision) -> None:
        """This satellite's claim to the turn's wake word was decided (arbitration)."""

    def transcript_ready(self, turn: int, text: str) -> None:
        pass

    def intent_recognized(self, turn: int, intent: RecognizedIntent) -> None:
        pass

    def intent_not_recognized(self, turn: int, text: str) -> None:
        """The transcript matched no local intent (it goes to the LLM, if there is one)."""

    def action_requested(self, turn: int, topic: str, payload: str, qos: int, retain: bool) -> None:
        """An intent's MQTT action: publish ``payload`` on ``topic``."""

    def response_ready(self, turn: int, text: str) -> None:
        """The whole reply (or announcement) text, once known."""

    def error_reported(self, turn: int | None, code: str, message: str, phase: Phase) -> None:
        """A turn failed, or (turn None) a request was refused."""

    def turn_finished(self, record: TurnRecord) -> None:
        pass

    def mute_changed(self, muted: bool) -> None:
        pass

    def timers_changed(
        self, timers: list[dict[str, Any]], change: Mapping[str, Any] | None
    ) -> None:
        """The timers as they stand now, and what just happened to one (None: a periodic
        update): ``{"event": "started"|…|"finished", "id", "name", "seconds"}``."""

    def volume_changed(self, level: int) -> None:
        """The output volume (0-100): at start, and on every change."""

    def wake_word_changed(self, name: str) -> None:
        """The wake word listened for: at start, and when one is chosen."""

    def announcement_finished(self, request_id: str | None) -> None:
        """A ``say`` request has been spoken (or dropped); ``request_id`` as it was given."""


class JsonlEventLog(Observer):
    """``--events FILE``: one JSON object per line, flushed as it happens."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream

    @classmethod
    def open(cls, path: Path) -> JsonlEventLog:
        return cls(path.open("w", encoding="utf-8"))

    def close(self) -> None:
        self._stream.close()

    def _write(self, event: dict[str, Any]) -> None:
        self._stream.write(json.dumps(event, ensure_ascii=False) + "\n")
        self._stream.flush()

    def state_entered(self, phase: Phase, turn: int, t_seconds: float) -> None:
        self._write({"event": "state", "state": str(phase), "turn": turn, "t": round(t_seconds, 3)})

    def turn_finished(self, record: TurnRecord) -> None:
        self._write(record.as_event())

    def claim_decided(self, turn: int, claim: WakeClaim, decision: Decision) -> None:
        self._write({"event": "arbitration", **decision_json(turn, claim, decision)})

    def error_reported(self, turn: int | None, code: str, message: str, phase: Phase) -> None:
        self._write(
            {"event": "error", "turn": turn, "code": code, "message": message, "state": str(phase)}
        )
