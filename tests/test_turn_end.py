"""The end of a turn from evidence: the pure decision, the words, and the endpointer that asks."""

from __future__ import annotations

import pytest

from assistant.config import VadConfig
from assistant.core.endpointer import Endpoint, Endpointer
from assistant.core.turn_end import EndReason, TurnPolicy, Words, decide, weigh_words

POLICY = TurnPolicy(
    pause_seconds=0.24,
    silence_seconds=0.7,
    cap_seconds=1.5,
    complete_above=0.5,
    unfinished_below=0.1,
    doubt_below=0.05,
)
W = Words
R = EndReason

# (silence so far, audio probability, words) → reason to end now, or None: keep listening.
DECISIONS: list[tuple[float, float | None, Words | None, EndReason | None]] = [
    # before the pause nothing is weighed, whatever is known
    (0.16, 0.99, W.COMPLETE, None),
    # at the pause: complete words end it, unless the audio is sure it goes on
    (0.24, 0.9, W.COMPLETE, R.WORDS),
    (0.24, 0.3, W.COMPLETE, R.WORDS),
    (0.24, 0.01, W.COMPLETE, None),
    # neutral words: the audio decides, or the hangover
    (0.24, 0.8, W.NEUTRAL, R.AUDIO),
    (0.24, 0.5, W.NEUTRAL, R.AUDIO),
    (0.24, 0.49, W.NEUTRAL, None),
    # no words yet (a click before the command made the pause): the audio alone never ends it
    (0.24, 0.98, W.EMPTY, None),
    (0.4, 0.98, W.EMPTY, None),
    (0.72, 0.98, W.EMPTY, R.SILENCE),
    (1.2, 0.02, W.EMPTY, None),  # the audio sure the speaker goes on: up to the cap
    # unfinished words: never at the pause, whatever the audio says (synthetic voices fool it)
    (0.24, 0.98, W.UNFINISHED, None),
    (0.7, 0.98, W.UNFINISHED, None),
    (1.2, 0.98, W.UNFINISHED, None),
    (1.5, 0.98, W.UNFINISHED, R.CAP),
    # the audio sure the speaker goes on: like unfinished words, up to the cap...
    (0.72, 0.09, W.NEUTRAL, None),
    (1.2, 0.02, W.NEUTRAL, None),
    (1.5, 0.02, W.NEUTRAL, R.CAP),
    (0.72, 0.05, None, None),  # the words not back yet
    (0.72, 0.1, W.NEUTRAL, R.SILENCE),  # not below the threshold: the hangover
    # ...unless the words are a whole request: then only the hangover (see below)
    (0.72, 0.02, W.COMPLETE, R.SILENCE),
    # the model has not scored the pause yet: complete words do not wait for it, neutral ones do
    (0.24, None, W.COMPLETE, R.WORDS),
    (0.24, None, W.NEUTRAL, None),
    # the transcript is not back yet: only the hangover ends it
    (0.4, 0.99, None, None),
    (0.72, 0.99, None, R.SILENCE),
    (0.72, 0.01, W.COMPLETE, R.SILENCE),
    (0.72, 0.2, W.NEUTRAL, R.SILENCE),
]


@pytest.mark.parametrize(("silence", "audio", "words", "expected"), DECISIONS)
def test_the_decision(
    silence: float, audio: float | None, words: Words | None, expected: EndReason | None
) -> None:
    assert decide(silence, audio, words, POLICY) is expected


def _intents(text: str) -> bool:
    return text.lower().rstrip(".") in {"turn on the kitchen light", "what time is it"}


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("Turn on the kitchen light.", W.COMPLETE),
        (" what time is it", W.COMPLETE),
        ("Set a timer for", W.UNFINISHED),
        ("set a timer for...", W.UNFINISHED),
        ("Turn on the", W.UNFINISHED),
        ("Turn on the kitchen light and", W.UNFINISHED),
        ("What's the weather, um", W.UNFINISHED),
        ("What's the weather in Paris,", W.UNFINISHED),
        ("Set a timer for twenty minutes", W.NEUTRAL),
        ("Turn it on", W.NEUTRAL),  # "on" may end a request
        ("Tell me a story about the sea.", W.NEUTRAL),
        ("", W.EMPTY),
        (" ... ", W.EMPTY),
    ],
)
def test_the_words(text: str, words: Words) -> None:
    assert weigh_words(text, _intents) is words


def probabilities(*parts: tuple[float, int]) -> list[float]:
    return [p for p, count in parts for _ in range(count)]


def run(endpointer: Endpointer, frames: list[float]) -> list[tuple[int, Endpoint]]:
    events = []
    for index, probability in enumerate(frames):
        endpoint = endpointer.process(probability)
        if endpoint is not None:
            events.append((index, endpoint))
    return events


CONFIG = VadConfig(silence_seconds=0.7, margin_seconds=0.16)
# 10 speech frames, then silence: the pause is 3 silent frames (0.24 s), the hangover 9 (0.72 s).
COMMAND = probabilities((0.9, 10), (0.05, 30))


def test_without_a_policy_the_fixed_silence_ends_it() -> None:
    endpointer = Endpointer(CONFIG)
    events = run(endpointer, COMMAND)
    assert events[-1] == (10 + 9 - 1, Endpoint.SPEECH_ENDED)
    assert endpointer.reason is EndReason.SILENCE


def test_complete_words_at_the_pause_end_the_command_at_once() -> None:
    endpointer = Endpointer(CONFIG, POLICY)
    events = run(endpointer, COMMAND[:13])
    assert events == [(1, Endpoint.SPEECH_STARTED), (12, Endpoint.SPEECH_PAUSED)]
    # the model has not scored the pause yet: the words do not wait for it
    assert endpointer.weigh(words=Words.COMPLETE) is Endpoint.SPEECH_ENDED
    assert endpointer.reason is EndReason.WORDS
    assert endpointer.command_frames() == slice(0, 12)  # the whole speech and its margin
    assert endpointer.process(0.9) is None  # over: nothing more
    assert endpointer.weigh(audio=0.01) is None  # a late verdict changes nothing


def test_audio_known_first_can_veto_complete_words() -> None:
    endpointer = Endpointer(CONFIG, POLICY)
    run(endpointer, COMMAND[:13])
    assert endpointer.audio is None
    assert endpointer.weigh(audio=0.01) is None
    assert endpointer.audio == 0.01
    assert endpointer.weigh(words=Words.COMPLETE) is None  # sure the speaker goes on
    events = run(endpointer, COMMAND[13:])
    assert events == [(9 - 3 - 1, Endpoint.SPEECH_ENDED)]  # the hangover, not the cap
    assert endpointer.reason is EndReason.SILENCE


def test_confident_audio_with_neutral_words_ends_it_at_the_pause() -> None:
    endpointer = Endpointer(CONFIG, POLICY)
    run(endpointer, COMMAND[:13])
    assert endpointer.weigh(words=Words.NEUTRAL) is None
    assert endpointer.weigh(audio=0.9) is Endpoint.SPEECH_ENDED
    assert endpointer.reason is EndReason.AUDIO


def test_unfinished_words_wait_past_the_hangover_up_to_the_cap() -> None:
    endpointer = Endpointer(CONFIG, POLICY)
    run(endpointer, COMMAND[:13])
    assert endpointer.weigh(audio=0.97, words=Words.UNFINISHED) is None
    events = run(endpointer, COMMAND[13:])
    # the cap: 1.5 s of silence = 19 frames (0.08 s each), counted from the speech's end
    assert events == [(19 - 3 - 1, Endpoint.SPEECH_ENDED)]
    assert endpointer.reason is EndReason.CAP


def test_speech_resuming_clears_the_evidence_of_the_pause() -> None:
    endpointer = Endpointer(CONFIG, POLICY)
    run(endpointer, COMMAND[:13])
    assert endpointer.weigh(audio=0.1, words=Words.NEUTRAL) is None
    assert endpointer.process(0.9) is Endpoint.SPEECH_RESUMED
    assert endpointer.weigh(words=Words.COMPLETE) is None  # no pause in progress
    events = run(endpointer, probabilities((0.9, 5), (0.05, 3)))
    assert events == [(7, Endpoint.SPEECH_PAUSED)]
    # the old pause's low audio probability is gone: neutral words alone do not end it
    assert endpointer.weigh(words=Words.NEUTRAL) is None
    assert endpointer.weigh(audio=0.6) is Endpoint.SPEECH_ENDED


def test_without_evidence_the_hangover_still_ends_it() -> None:
    endpointer = Endpointer(CONFIG, POLICY)
    events = run(endpointer, COMMAND)
    assert events[-1] == (10 + 9 - 1, Endpoint.SPEECH_ENDED)
    assert endpointer.reason is EndReason.SILENCE


def test_a_long_command_is_cut_at_its_length() -> None:
    endpointer = Endpointer(VadConfig(max_command_seconds=1.0), POLICY)
    events = run(endpointer, probabilities((0.9, 40)))
    assert events[-1] == (12, Endpoint.SPEECH_ENDED)  # 13 frames of 80 ms: 1.04 s
    assert endpointer.reason is EndReason.LENGTH
