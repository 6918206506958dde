"""The conversation's transitions, as one table: ``Assistant`` runs it, the diagram draws it.

Every callback named here is a method of ``assistant.core.machine.Assistant`` (or of the
ringing's and the switches' parts it is made of: ``ringing.py``, ``switches.py``); a callback
reads its event with ``event_of``. The stop word's callbacks are in ``stop_word.py``.
"""

from __future__ import annotations

from typing import Any, Final, TypeVar

from transitions import EventData

from assistant.core.commands import Phase

P = Phase
ALL: Final = list(Phase)
BUSY: Final = [P.WAKE, P.LISTENING, P.TRANSCRIBING, P.THINKING, P.SPEAKING]
INTERRUPTIBLE: Final = [P.THINKING, P.SPEAKING]
"""Where the wake word (with barge-in) and the stop word end what Lingling is doing."""

TRANSITIONS: Final[list[dict[str, Any]]] = [
    {"trigger": "wake_detected", "source": P.IDLE, "dest": P.WAKE,
     "conditions": "_wake_word_listens", "before": "_new_turn"},
    {"trigger": "listen_requested", "source": P.IDLE, "dest": P.WAKE,
     "unless": "_muted", "before": "_new_turn"},
    {"trigger": "listen_requested", "source": P.IDLE, "dest": None, "after": "_refuse_muted"},
    {"trigger": "say_requested", "source": P.IDLE, "dest": P.SPEAKING,
     "before": "_new_turn", "after": "_announce"},
    # A finished timer rings from idle; during a turn it waits for the turn's end.
    {"trigger": "timer_finished", "source": P.IDLE, "dest": P.RINGING, "before": "_add_ring"},
    {"trigger": "timer_finished", "source": P.RINGING, "dest": None,
     "before": "_add_ring", "after": "_ring"},
    {"trigger": "timer_finished", "source": BUSY, "dest": None, "before": "_hold_ring"},
    {"trigger": "rings_waited", "source": P.IDLE, "dest": P.RINGING},
    # The wake word, the stop word or a request ends the ringing.
    {"trigger": "wake_detected", "source": P.RINGING, "dest": P.WAKE,
     "conditions": "_wake_word_listens", "before": "_new_turn"},
    {"trigger": "listen_requested", "source": P.RINGING, "dest": P.WAKE,
     "unless": "_muted", "before": "_new_turn"},
    {"trigger": "stop_requested", "source": P.RINGING, "dest": P.IDLE},
    {"trigger": "stop_requested", "source": P.IDLE, "dest": None},
    {"trigger": "stop_requested", "source": INTERRUPTIBLE, "dest": P.IDLE,
     "conditions": "_barge_in_enabled", "before": "_cancel"},
    {"trigger": "stop_requested", "source": BUSY, "dest": None},
    # The ring's own timeout (a token of its own: a ring is not a turn); a stale one is ignored.
    {"trigger": "ring_timed_out", "source": P.RINGING, "dest": P.IDLE, "conditions": "_this_ring"},
    {"trigger": "ring_timed_out", "source": ALL, "dest": None},
    {"trigger": "cancel_requested", "source": P.RINGING, "dest": P.IDLE},
    # Barge-in (when enabled): the wake word while thinking or speaking starts a new turn.
    {"trigger": "wake_detected", "source": [P.THINKING, P.SPEAKING], "dest": P.WAKE,
     "conditions": "_wake_word_listens", "before": ["_interrupt", "_new_turn"]},
    # Otherwise a wake word or a request while a turn runs is ignored on purpose (a wake word is
    # also ignored while muted, switched off or deaf: the runtime does not even score those).
    {"trigger": "wake_detected", "source": ALL, "dest": None},
    {"trigger": "listen_requested", "source": [*BUSY, P.RINGING], "dest": None},
    {"trigger": "say_requested", "source": [*BUSY, P.RINGING], "dest": None,
     "after": "_refuse_busy"},
    {"trigger": "earcon_finished", "source": P.WAKE, "dest": P.LISTENING,
     "unless": "_claim_pending"},
    # A wake word claimed from the other satellites (arbitration): listening waits for both the
    # earcon's end and the decision; a lost claim goes back to idle quietly.
    {"trigger": "earcon_finished", "source": P.WAKE, "dest": None, "before": "_earcon_over"},
    {"trigger": "claim_won", "source": P.WAKE, "dest": P.LISTENING,
     "unless": "_earcon_playing", "before": "_claim_won"},
    {"trigger": "claim_won", "source": P.WAKE, "dest": None, "before": "_claim_won"},
    {"trigger": "claim_lost", "source": P.WAKE, "dest": P.IDLE, "before": "_claim_lost"},
    {"trigger": "speech_started", "source": P.LISTENING, "dest": None},
    {"trigger": "speech_paused", "source": P.LISTENING, "dest": None, "after": "_speculate"},
    {"trigger": "speech_resumed", "source": P.LISTENING, "dest": None, "after": "_drop_guess"},
    {"trigger": "pause_transcribed", "source": P.LISTENING, "dest": None, "after": "_weigh"},
    # The early transcript came back after the end was decided: it is taken up by Transcribe.
    {"trigger": "pause_transcribed", "source": [P.TRANSCRIBING, P.THINKING, P.SPEAKING],
     "dest": None},
    {"trigger": "speech_ended", "source": P.LISTENING, "dest": P.TRANSCRIBING,
     "after": "_transcribe"},
    {"trigger": "no_speech_heard", "source": P.LISTENING, "dest": P.IDLE, "before": "_no_speech"},
    {"trigger": "transcribed", "source": P.TRANSCRIBING, "dest": P.THINKING,
     "conditions": "_has_text", "before": "_report_transcript", "after": "_reply"},
    {"trigger": "transcribed", "source": P.TRANSCRIBING, "dest": P.IDLE,
     "before": ["_report_transcript", "_nothing_heard"]},
    {"trigger": "intent_recognized", "source": [P.THINKING, P.SPEAKING], "dest": None,
     "after": "_report_intent"},
    {"trigger": "intent_not_recognized", "source": P.THINKING, "dest": None,
     "after": "_report_no_intent"},
    {"trigger": "tool_call_refused", "source": [P.THINKING, P.SPEAKING], "dest": None,
     "after": "_report_refused_call"},
    {"trigger": "speaking_started", "source": P.THINKING, "dest": P.SPEAKING},
    {"trigger": "sentence_played", "source": P.SPEAKING, "dest": None, "after": "_rearm"},
    # A reply that asks a question: listen again, without the wake word, as a new turn.
    {"trigger": "reply_finished", "source": P.SPEAKING, "dest": P.WAKE,
     "conditions": "_follow_up", "unless": "_muted",
     "before": ["_report_response", "_follow_up_turn"]},
    {"trigger": "reply_finished", "source": [P.THINKING, P.SPEAKING], "dest": P.IDLE,
     "before": ["_report_response", "_answered"]},
    {"trigger": "failed", "source": BUSY, "dest": P.IDLE, "before": "_fail"},
    {"trigger": "timed_out", "source": BUSY, "dest": P.IDLE, "before": "_time_out"},
    {"trigger": "cancel_requested", "source": BUSY, "dest": P.IDLE, "before": "_cancel"},
    {"trigger": "cancel_requested", "source": P.IDLE, "dest": None},
    # Muting while listening: what it was listening to can no longer come.
    {"trigger": "mute_requested", "source": [P.WAKE, P.LISTENING], "dest": P.IDLE,
     "conditions": "_mutes", "before": ["_set_mute", "_cancel"], "after": "_report_mute"},
    # The switches, in any state.
    {"trigger": "mute_requested", "source": ALL, "dest": None,
     "before": "_set_mute", "after": "_report_mute"},
    {"trigger": "wake_word_toggled", "source": ALL, "dest": None, "before": "_toggle_wake_word"},
    {"trigger": "deaf_tail_ended", "source": ALL, "dest": None, "before": "_hear_again"},
    # The stop word: a short burst heard where it may stop something is transcribed; its words
    # stop the ring, or (with barge-in) the reply.
    {"trigger": "burst_heard", "source": [P.RINGING, *INTERRUPTIBLE], "dest": None,
     "conditions": "_stop_word_listens", "after": "_transcribe_burst"},
    {"trigger": "burst_heard", "source": ALL, "dest": None},
    {"trigger": "burst_transcribed", "source": P.RINGING, "dest": P.IDLE,
     "conditions": "_said_stop"},
    {"trigger": "burst_transcribed", "source": INTERRUPTIBLE, "dest": P.IDLE,
     "conditions": ["_said_stop", "_stop_word_listens"], "before": "_cancel"},
    {"trigger": "burst_transcribed", "source": ALL, "dest": None},
]  # fmt: skip

SWITCHES: Final = ("mute_requested", "wake_word_toggled", "deaf_tail_ended")
"""Triggers that set the machine's switches in any state (the diagram lists them apart)."""


E = TypeVar("E")


def event_of(data: EventData, cls: type[E]) -> E:
    """The typed event that fired this transition (callbacks get it as ``event=``)."""
    event = data.kwargs["event"]
    assert isinstance(event, cls), (event, cls)
    return event
