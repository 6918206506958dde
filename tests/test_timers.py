"""Timers: the pure book and its replies, the state file, and the ringing in the runtime."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from assistant.adapters.earcons import earcon_pcm
from assistant.core.commands import Earcon
from assistant.core.events import StopRequested, VolumeRequested
from assistant.core.timers import TimerBook, TimerState, say
from assistant.runtime.timers import TimerService, default_state_file
from assistant.runtime.volume import Volume
from tests.support.fakes import SILENCE, FakeMicrophone, frames
from tests.support.rig import COMMAND, IntentLog, Rig, intents_rig

RING = earcon_pcm(Earcon.RING, 16_000)


def test_a_timer_starts_and_is_due_at_its_time() -> None:
    book = TimerBook()
    reply, (changed,) = book.apply("HassStartTimer", {"minutes": 5}, now=100.0)
    assert reply == "The timer is set for 5 minutes."
    assert str(changed.change) == "started"
    assert book.next_due() == 400.0
    assert book.due(399.9) == []
    (finished,) = book.due(400.0)
    assert (str(finished.change), finished.timer.name) == ("finished", None)
    assert book.timers == {}


def test_named_timers_are_told_apart() -> None:
    book = TimerBook()
    book.apply("HassStartTimer", {"minutes": 10, "name": "pasta"}, now=0.0)
    book.apply("HassStartTimer", {"minutes": 3, "name": "Eggs"}, now=0.0)
    reply, _ = book.apply("HassTimerStatus", {"name": "pasta timer"}, now=60.0)
    assert reply == "The pasta timer has 9 minutes left."
    reply, _ = book.apply("HassTimerStatus", {}, now=60.0)
    assert reply == "The pasta timer has 9 minutes left. The eggs timer has 2 minutes left."
    reply, _ = book.apply("HassCancelTimer", {}, now=60.0)
    assert reply == "There are 2 timers: which one?"  # nothing cancelled
    reply, [_] = book.apply("HassCancelTimer", {"name": "eggs"}, now=60.0)
    assert reply == "Cancelled the eggs timer."
    assert [t.name for t in book.timers.values()] == ["pasta"]
    reply, _ = book.apply("HassCancelTimer", {"name": "rice"}, now=60.0)
    assert reply == "There is no rice timer."


def test_a_timer_is_found_by_the_length_it_was_started_for() -> None:
    book = TimerBook()
    book.apply("HassStartTimer", {"minutes": 10}, now=0.0)
    book.apply("HassStartTimer", {"minutes": 3}, now=0.0)
    book.apply("HassIncreaseTimer", {"start_minutes": 10, "minutes": 5}, now=0.0)
    reply, [_] = book.apply("HassCancelTimer", {"start_minutes": 10}, now=0.0)
    assert reply == "Cancelled the timer."
    assert [t.started_for for t in book.timers.values()] == [180.0]


def test_time_is_added_removed_paused_and_resumed() -> None:
    book = TimerBook()
    book.apply("HassStartTimer", {"minutes": 5}, now=0.0)
    reply, _ = book.apply("HassIncreaseTimer", {"minutes": 2}, now=60.0)
    assert reply == "The timer has 6 minutes left."
    book.apply("HassDecreaseTimer", {"seconds": 30}, now=60.0)
    assert book.next_due() == 390.0
    book.apply("HassPauseTimer", {}, now=90.0)
    (timer,) = book.timers.values()
    assert timer.state is TimerState.PAUSED
    assert book.due(10_000.0) == []  # a paused timer never comes due
    reply, _ = book.apply("HassTimerStatus", {}, now=500.0)
    assert reply == "The timer has 5 minutes left (paused)."
    book.apply("HassUnpauseTimer", {}, now=500.0)
    assert book.next_due() == 800.0


def test_all_timers_are_cancelled_at_once() -> None:
    book = TimerBook()
    for minutes in (1, 2, 3):
        book.apply("HassStartTimer", {"minutes": minutes}, now=0.0)
    reply, changes = book.apply("HassCancelAllTimers", {}, now=0.0)
    assert (reply, len(changes), book.timers) == ("Cancelled 3 timers.", 3, {})


def test_a_preview_says_what_would_happen_and_changes_nothing() -> None:
    book = TimerBook()
    assert book.preview("HassStartTimer", {"seconds": 90}, now=0.0) == (
        "The timer is set for 1 minute and 30 seconds."
    )
    assert book.timers == {}


@pytest.mark.parametrize(
    ("seconds", "said"),
    [
        (0, "0 seconds"),
        (1, "1 second"),
        (61, "1 minute and 1 second"),
        (3725, "1 hour, 2 minutes and 5 seconds"),
    ],
)
def test_durations_are_said_as_people_say_them(seconds: float, said: str) -> None:
    assert say(seconds) == said


def test_the_book_survives_a_json_round_trip_and_refuses_garbage() -> None:
    book = TimerBook()
    book.apply("HassStartTimer", {"minutes": 1, "name": "tea"}, now=0.0)
    book.apply("HassStartTimer", {"minutes": 2}, now=0.0)
    book.apply("HassPauseTimer", {"name": "tea"}, now=30.0)
    again = TimerBook.from_json(json.loads(json.dumps(book.to_json())))
    assert again == book
    with pytest.raises(ValueError, match="not a timer book"):
        TimerBook.from_json({"timers": [{"id": 1}]})


# -- the service: the state file -------------------------------------------------------------------


def test_timers_are_kept_in_a_state_file_written_whole(tmp_path: Path) -> None:
    path = tmp_path / "state" / "timers.json"
    clock = [1000.0]
    service = TimerService(lambda: clock[0], state_file=path)
    service.apply("HassStartTimer", {"minutes": 5, "name": "pasta"})
    kept = json.loads(path.read_text())
    assert [t["name"] for t in kept["timers"]] == ["pasta"]
    assert not path.with_suffix(".tmp").exists()
    again = TimerService(lambda: clock[0], state_file=path)
    again.load()
    assert again.book == service.book


def test_a_timer_that_finished_while_lingling_was_down_rings_once_at_start(tmp_path: Path) -> None:
    path = tmp_path / "timers.json"
    TimerService(lambda: 0.0, state_file=path).apply("HassStartTimer", {"seconds": 10})
    rung: list[Any] = []
    service = TimerService(lambda: 60.0, state_file=path, feed=rung.append)
    service.load()
    service.tick()
    service.tick()
    assert len(rung) == 1
    assert json.loads(path.read_text())["timers"] == []


def test_a_damaged_state_file_is_set_aside(tmp_path: Path) -> None:
    path = tmp_path / "timers.json"
    path.write_text("{not json")
    service = TimerService(lambda: 0.0, state_file=path)
    service.load()
    assert service.book.timers == {}
    assert path.with_suffix(".bad").read_text() == "{not json"


def test_the_state_file_lives_in_systemd_s_state_directory() -> None:
    assert default_state_file({"STATE_DIRECTORY": "/var/lib/lingling"}) == Path(
        "/var/lib/lingling/timers.json"
    )
    assert default_state_file({}).parts[-4:] == (".local", "state", "lingling", "timers.json")


# -- the runtime: a timer set by voice rings, in audio time ---------------------------------------

# The command, then 6 s of silence: the 5 s timer comes due in it.
AFTER = frames((SILENCE, round(6.0 / 0.08)))


def timer_rig(transcript: str, audio: list[bytes]) -> Rig:
    rig = intents_rig(transcript)
    rig.mic = FakeMicrophone(audio)
    rig.audio_clock = True
    rig.settings = {"timers": {"ring_seconds": 1.0}}
    return rig


async def test_a_timer_set_by_voice_rings_when_due_and_says_so() -> None:
    rig = timer_rig("Set a timer for five seconds.", [*COMMAND, *AFTER])
    rings: list[int] = []
    confirmed: list[int] = []  # the intent acts in thinking, while the file waits
    rig.recorder.on_state["thinking"] = lambda: confirmed.append(rig.runtime.listener.frame_index)
    rig.recorder.on_state["ringing"] = lambda: rings.append(rig.runtime.listener.frame_index)
    await rig.run()
    states = rig.recorder.states
    assert states[-2:] == ["ringing", "idle"]  # rang, then stopped after ring_seconds
    assert rig.synthesizer.sentences[0] == "The timer is set for 5 seconds."
    assert RING in rig.speaker.played
    assert "Your timer is done." in rig.synthesizer.sentences
    # due 5 s (62.5 frames of the file's audio) after the answer was confirmed
    assert 61 <= rings[0] - confirmed[0] <= 65  # ±1 frame: when each callback ran
    assert isinstance(rig.recorder, IntentLog)
    assert [name for name, _, _ in rig.recorder.intents] == ["HassStartTimer"]


async def test_stop_ends_the_ring_at_once() -> None:
    rig = timer_rig("Set a timer for two seconds.", [*COMMAND, *AFTER])
    rig.settings = {"timers": {"ring_seconds": 60.0}}
    rig.recorder.on_state["ringing"] = lambda: rig.runtime.request(StopRequested())
    await rig.run(timeout_seconds=5)
    assert rig.recorder.states[-2:] == ["ringing", "idle"]
    assert rig.speaker.stops >= 1


async def test_the_wake_word_ends_the_ring_and_starts_a_turn() -> None:
    audio = [*COMMAND, *frames((SILENCE, 40)), *COMMAND]  # "two seconds", then a wake word
    rig = timer_rig("Set a timer for two seconds.", audio)
    rig.settings = {"timers": {"ring_seconds": 60.0}}
    await rig.run(timeout_seconds=5)
    ringing = rig.recorder.states.index("ringing")
    assert rig.recorder.states[ringing + 1] == "wake"
    assert len(rig.recorder.turns) == 2


# -- volume ----------------------------------------------------------------------------------------


async def test_the_volume_scales_everything_played_and_is_kept(tmp_path: Path) -> None:
    rig = intents_rig("Turn on the kitchen light.")
    rig.runtime.request(VolumeRequested(50))
    await rig.run()
    said = np.frombuffer(b"Turned on the kitchen light.", "<i2")
    assert rig.speaker.played[-1] == (said * 0.25).astype("<i2").tobytes()  # 50 %: a quarter
    path = tmp_path / "volume.json"
    Volume(state_file=path).set(30)
    assert Volume(state_file=path).level == 30  # kept across restarts


@pytest.mark.parametrize(
    ("intent", "slots", "level"),
    [
        ("HassSetVolumeRelative", {"volume_step": "down"}, 70),
        ("HassSetVolumeRelative", {"volume_step": "up"}, 90),
        ("HassSetVolumeRelative", {"volume_step": -25}, 55),
        ("HassSetVolume", {"volume_level": 140}, 100),
        ("HassSetVolume", {"volume_level": 0}, 0),
    ],
)
def test_volume_intents(intent: str, slots: dict[str, Any], level: int) -> None:
    volume = Volume()
    volume.set(80)
    volume.apply(intent, slots)
    assert volume.level == level
