"""What the runtime tells the observers, from one place: the turn's record, states, reports.

The runtime executes the machine's commands; those that only tell the outside world (``Report``
commands, a turn started, a state entered, a turn finished) come here. The reporter holds the
current turn's ``TurnRecord`` and fills it in as the reports arrive.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from assistant.core.commands import (
    Outcome,
    Phase,
    Report,
    ReportError,
    ReportIntent,
    ReportMute,
    ReportNoIntent,
    ReportResponse,
    ReportSayFinished,
    ReportTranscript,
)
from assistant.runtime.observer import Observer, TurnRecord

_LOGGER = logging.getLogger(__name__)


class Reporter:
    """Tells the observers; ``now`` is the runtime's clock for the turn's instants."""

    def __init__(self, observers: Sequence[Observer], now: Callable[[], float]) -> None:
        self._observers = list(observers)
        self._now = now
        self.record = TurnRecord(turn=0)
        """The current (or last) turn's record."""

    def tell(self, method: str, *args: Any) -> None:
        for observer in self._observers:
            getattr(observer, method)(*args)

    def turn_started(self, turn: int, wake_word: str | None, score: float | None) -> None:
        self.record = TurnRecord(turn=turn, wake_word=wake_word, wake_score=score)
        self.record.mark("wake", self._now())
        if wake_word is not None:
            _LOGGER.info("wake word %s (%.2f)", wake_word, score)
        self.tell("wake_detected", turn, wake_word, score)

    def state_entered(
        self, phase: Phase, turn: int, previous: Phase | None, t_seconds: float
    ) -> None:
        _LOGGER.info("%s→%s turn=%d", previous or "", phase, turn)
        self.tell("state_entered", phase, turn, t_seconds)

    def turn_finished(self, turn: int, outcome: Outcome) -> None:
        record = self.record
        record.outcome = outcome
        record.mark("end", self._now())
        _LOGGER.info("turn %d %s %s", turn, outcome, record.timings_ms())
        self.tell("turn_finished", record)

    def report(self, report: Report) -> None:
        record = self.record
        match report:
            case ReportError(turn, code, message, phase):
                self._error(turn, code, message, phase)
            case ReportTranscript(turn, text):
                record.transcript = text
                self.tell("transcript_ready", turn, text)
            case ReportIntent(turn, intent, actions):
                for observer in self._observers:
                    observer.intent_recognized(turn, intent)
                    for a in actions:
                        observer.action_requested(turn, a.topic, a.payload, a.qos, a.retain)
            case ReportNoIntent(turn, text):
                self.tell("intent_not_recognized", turn, text)
            case ReportResponse(turn, text, llm_timings):
                record.response = text
                record.llm_timings = dict(llm_timings) if llm_timings else None
                self.tell("response_ready", turn, text)
            case ReportMute(muted):
                self.tell("mute_changed", muted)
            case ReportSayFinished(request_id):
                self.tell("announcement_finished", request_id)

    def _error(self, turn: int | None, code: str, message: str, phase: Phase) -> None:
        if turn is None:
            _LOGGER.warning("refused in %s: %s: %s", phase, code, message)
        else:
            _LOGGER.warning("turn %d failed in %s: %s: %s", turn, phase, code, message)
            if turn == self.record.turn and self.record.error is None:
                self.record.error = f"{code}: {message}"
        self.tell("error_reported", turn, code, message, phase)
