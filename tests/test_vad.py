"""The endpointer as tables of probabilities, and real Silero VAD on generated scenarios."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from assistant.adapters.silero import SileroVad
from assistant.config import VadConfig
from assistant.core.audioformat import FRAME_SAMPLES, FRAME_SECONDS, SAMPLE_RATE_HZ
from assistant.core.endpointer import Endpoint, Endpointer
from assistant.core.turn_end import TurnPolicy
from assistant.errors import ConfigError, ModelError
from tests.support.models import require_model
from tests.support.scenarios import (
    Audio,
    Scenario,
    concat,
    frames,
    noise,
    recording,
    silence,
    speak,
)

STARTED, ENDED, NONE = Endpoint.SPEECH_STARTED, Endpoint.SPEECH_ENDED, Endpoint.NO_SPEECH
PAUSED, RESUMED = Endpoint.SPEECH_PAUSED, Endpoint.SPEECH_RESUMED
S, N = 0.9, 0.1  # clearly speech, clearly not
H = 0.4  # between threshold - 0.15 and threshold: speech only while already in speech
L = 0.3  # below threshold - 0.15

# In frames of 80 ms: silence 3, min speech 2, no speech 10, max command 13, margin 1.
SMALL: dict[str, Any] = {
    "threshold": 0.5,
    "silence_seconds": 0.24,
    "min_speech_seconds": 0.16,
    "no_speech_seconds": 0.8,
    "max_command_seconds": 1.0,
    "margin_seconds": 0.08,
    "speculate_seconds": 0.0,  # pauses have cases of their own
}


@dataclass(frozen=True)
class Case:
    probabilities: list[float]
    endpoints: dict[int, Endpoint]  # frame index -> what process() returned there
    command: tuple[int, int]  # command_frames() as (start, stop) after the last frame
    config: dict[str, Any] = field(default_factory=dict)


CASES: dict[str, Case] = {
    "start and end": Case(
        [N, N, S, S, S, S, N, N, N, N],
        {3: STARTED, 8: ENDED},
        (1, 7),
    ),
    "a blip shorter than min speech is ignored": Case(
        [N, S, N, N, S, S, S, N, N, N],
        {5: STARTED, 9: ENDED},
        (3, 8),
    ),
    "two one-frame blips apart do not add up": Case(
        [N, S] * 5 + [N, N],
        {10: NONE},
        (0, 0),
    ),
    "no speech gives up after no_speech_seconds": Case(
        [N] * 12,
        {9: NONE},
        (0, 0),
    ),
    "no speech waits while a run of speech is under way": Case(
        [N] * 9 + [S, S, N, N, N],
        {10: STARTED, 13: ENDED},
        (8, 12),
    ),
    "hysteresis keeps speech going below the threshold": Case(
        [S, S, H, H, H, H, L, L, L],
        {1: STARTED, 8: ENDED},
        (0, 7),
    ),
    "hysteresis needs the threshold to enter speech": Case(
        [H] * 12,
        {9: NONE},
        (0, 0),
    ),
    "after silence a middling frame is silence": Case(
        [S, S, L, H, H, H, S],
        {1: STARTED, 4: ENDED},
        (0, 3),
    ),
    "a pause shorter than silence_seconds does not end": Case(
        [S, S, N, N, S, S, N, N, N],
        {1: STARTED, 8: ENDED},
        (0, 7),
    ),
    "max_command_seconds cuts endless speech": Case(
        [N] + [S] * 20,
        {2: STARTED, 13: ENDED},
        (0, 14),
    ),
    "the margin is clipped to the frames seen": Case(
        [N, S, S, N, N, N],
        {2: STARTED, 5: ENDED},
        (0, 6),
        {"margin_seconds": 0.4},
    ),
    "nothing after the end": Case(
        [S, S, N, N, N, S, S, S, N, N, N, N, N, N],
        {1: STARTED, 4: ENDED},
        (0, 3),
    ),
    "min_speech_seconds 0 starts on one frame": Case(
        [N, S, N, N, N],
        {1: STARTED, 4: ENDED},
        (0, 3),
        {"min_speech_seconds": 0.0},
    ),
    "defaults: the upload leaves out the trailing silence": Case(
        [N] * 5 + [S] * 10 + [N] * 12,
        {6: STARTED, 16: PAUSED, 23: ENDED},
        (3, 17),
        {key: getattr(VadConfig(), key) for key in SMALL},
    ),
    "a pause is announced after speculate_seconds, and its end": Case(
        [S] * 5 + [N] * 3 + [S] * 2 + [N] * 6,
        {1: STARTED, 6: PAUSED, 8: RESUMED, 11: PAUSED, 15: ENDED},
        (0, 11),
        {"silence_seconds": 0.48, "speculate_seconds": 0.16, "max_command_seconds": 2.0},
    ),
    "no pause when it would come with the end (the margin is longer than the hangover)": Case(
        [S] * 5 + [N] * 4,
        {1: STARTED, 7: ENDED},
        (0, 8),  # the margin takes every silent frame up to the end
        {"speculate_seconds": 0.16, "margin_seconds": 0.4},
    ),
    "no pause after a blip too short to be worth a guess": Case(
        [S] * 3 + [N] * 7,
        {1: STARTED, 8: ENDED},
        (0, 4),
        {"silence_seconds": 0.48, "speculate_seconds": 0.16},
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_endpointer(case: Case) -> None:
    endpointer = Endpointer(VadConfig(**{**SMALL, **case.config}))
    seen = {}
    for index, probability in enumerate(case.probabilities):
        result = endpointer.process(probability)
        if result is not None:
            seen[index] = result
    assert seen == case.endpoints
    command = endpointer.command_frames()
    assert (command.start, command.stop) == case.command
    assert command.step is None


def test_a_pause_before_the_uploads_margin_is_announced_again_with_it() -> None:
    # With a policy the pause may come before the trailing margin (3 frames) is heard: the upload
    # then holds what there is, and MARGIN_HEARD follows once the margin is complete.
    config = VadConfig(**{**SMALL, "silence_seconds": 0.48, "margin_seconds": 0.24})
    endpointer = Endpointer(config, TurnPolicy(pause_seconds=0.08, silence_seconds=0.48))
    seen, uploads = {}, {}
    for index, probability in enumerate([S] * 5 + [N] * 8):
        if (result := endpointer.process(probability)) is not None:
            seen[index] = result
            uploads[index] = (endpointer.command_frames(), endpointer.margin_heard)
    assert seen == {1: STARTED, 5: PAUSED, 7: Endpoint.MARGIN_HEARD, 10: ENDED}
    assert uploads[5] == (slice(0, 6), False)  # one frame of the margin so far
    assert uploads[7] == (slice(0, 8), True)
    assert endpointer.command_frames() == slice(0, 8)


def test_an_early_pause_that_resumes_before_its_margin_is_not_announced_again() -> None:
    config = VadConfig(**{**SMALL, "silence_seconds": 0.48, "margin_seconds": 0.24})
    endpointer = Endpointer(config, TurnPolicy(pause_seconds=0.08, silence_seconds=0.48))
    results = [endpointer.process(p) for p in [S] * 5 + [N] * 2 + [S] * 2 + [N]]
    assert results == [None, STARTED, None, None, None, PAUSED, None, RESUMED, None, PAUSED]
    assert not endpointer.margin_heard


def test_without_a_policy_a_pause_waits_for_the_margin() -> None:
    # vad.end_of_turn: silence: speculate_seconds below margin_seconds counts as the margin.
    config = VadConfig(**{**SMALL, "silence_seconds": 0.48, "margin_seconds": 0.24})
    endpointer = Endpointer(config.model_copy(update={"speculate_seconds": 0.08}))
    seen = {}
    for index, probability in enumerate([S] * 5 + [N] * 8):
        if (result := endpointer.process(probability)) is not None:
            seen[index] = result
    assert seen == {1: STARTED, 7: PAUSED, 10: ENDED}
    assert endpointer.margin_heard is False  # over: no pause in progress


def test_frames_counts_up_to_the_end_and_then_stops() -> None:
    endpointer = Endpointer(VadConfig(**SMALL))
    assert endpointer.frames == 0
    assert endpointer.command_frames() == slice(0, 0)
    for probability in [N, S, S]:
        endpointer.process(probability)
    assert endpointer.frames == 3
    assert endpointer.started
    assert endpointer.command_frames() == slice(0, 3)  # in progress: clipped to the frames seen
    for probability in [N, N, N]:
        endpointer.process(probability)
    assert endpointer.done
    assert endpointer.frames == 6
    assert endpointer.process(S) is None
    assert endpointer.frames == 6


def test_seconds_become_whole_frames() -> None:
    # 0.7 s is 8.75 frames: the silence needs 9 (0.72 s), never 8.
    config = VadConfig(silence_seconds=0.7, min_speech_seconds=0.08, speculate_seconds=0)
    endpointer = Endpointer(config)
    results = [endpointer.process(p) for p in [S] + [N] * 9]
    assert results == [STARTED] + [None] * 8 + [ENDED]


# --- real Silero VAD ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def silero() -> SileroVad:
    root = require_model("openwakeword/silero_vad.onnx").parent.parent
    return SileroVad(VadConfig(), root)


@dataclass(frozen=True)
class Run:
    probabilities: list[float]
    endpoints: dict[int, Endpoint]
    command: slice

    def at(self, endpoint: Endpoint) -> float:
        """Seconds from the first frame fed to the end of the frame that returned ``endpoint``."""
        (index,) = [i for i, seen in self.endpoints.items() if seen == endpoint]
        return (index + 1) * FRAME_SECONDS


def listen(vad: SileroVad, samples: Audio, config: VadConfig | None = None) -> Run:
    """Feed every frame to the VAD and an endpointer, as the runtime does while listening."""
    vad.reset()
    endpointer = Endpointer(config or VadConfig())
    probabilities: list[float] = []
    endpoints = {}
    for index, frame in enumerate(frames(samples)):
        probabilities.append(vad.process(frame))
        result = endpointer.process(probabilities[-1])
        if result in (STARTED, ENDED, NONE):  # pauses are tested in the tables
            endpoints[index] = result
    return Run(probabilities, endpoints, endpointer.command_frames())


def listen_after_wake(vad: SileroVad, scene: Scenario) -> tuple[Run, float, float]:
    """Listen from the end of the wake word; also the command's true start and end in seconds
    from there (the listening clip starts at the frame boundary at or before ``wake_end``)."""
    first = scene.wake_end // FRAME_SAMPLES * FRAME_SAMPLES
    run = listen(vad, scene.samples[first:])
    return (
        run,
        (scene.command_start - first) / SAMPLE_RATE_HZ,
        (scene.command_end - first) / SAMPLE_RATE_HZ,
    )


@pytest.mark.models
def test_silero_is_low_on_silence_and_high_on_speech(silero: SileroVad) -> None:
    quiet = listen(silero, silence(2.0)).probabilities
    assert max(quiet) < 0.1
    speech = np.array(listen(silero, recording("jfk")).probabilities)
    assert speech.max() > 0.95
    assert np.mean(speech > 0.5) > 0.6  # JFK speaks most of the 11 s, with pauses
    assert np.mean(speech < 0.3) > 0.15


@pytest.mark.models
def test_each_frame_gives_the_last_of_the_windows_it_completed(silero: SileroVad) -> None:
    import onnxruntime

    path = require_model("openwakeword/silero_vad.onnx")
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    clip = recording("jfk")[: 40 * FRAME_SAMPLES]
    h = c = np.zeros((2, 1, 64), np.float32)
    windows = []  # (sample index one past the window, probability), straight through the model
    for end in range(512, clip.size + 1, 512):
        window = (clip[end - 512 : end].astype(np.float32) / 32768.0)[None, :]
        sr = np.array(SAMPLE_RATE_HZ, dtype=np.int64)
        output, h, c = session.run(None, {"input": window, "sr": sr, "h": h, "c": c})
        windows.append((end, float(output[0, 0])))
    expected = []
    for index in range(40):
        done = [
            p for end, p in windows if index * FRAME_SAMPLES < end <= (index + 1) * FRAME_SAMPLES
        ]
        assert len(done) in (2, 3)  # 2.5 windows per frame
        expected.append(done[-1])  # the freshest: the max would lag the end of speech
    assert listen(silero, clip).probabilities == pytest.approx(expected, abs=1e-5)


@pytest.mark.models
def test_silero_is_repeatable_after_reset(silero: SileroVad) -> None:
    clip = speak("turn on the kitchen light")
    assert listen(silero, clip).probabilities == listen(silero, clip).probabilities


@pytest.mark.models
def test_a_short_chunk_that_completes_no_window_repeats_the_last_value(silero: SileroVad) -> None:
    silero.reset()
    for frame in frames(speak("turn on the kitchen light"))[:8]:
        last = silero.process(frame)
    assert last > 0.5
    assert silero.process(bytes(200)) == last
    silero.reset()
    assert silero.process(bytes(200)) == 0.0


@pytest.mark.models
@pytest.mark.parametrize(
    "command", ["turn on the kitchen light", "what time is it", "set a timer for five minutes"]
)
def test_an_espeak_command_is_found_and_uploaded_whole(silero: SileroVad, command: str) -> None:
    run, start, end = listen_after_wake(silero, Scenario.build(command))
    assert list(run.endpoints.values()) == [STARTED, ENDED]
    assert start - 0.1 <= run.at(STARTED) <= start + 0.35
    # SPEECH_ENDED comes silence_seconds (0.72 s in frames) after the speech, give or take
    assert 0.6 <= run.at(ENDED) - end <= 1.0
    upload_start = run.command.start * FRAME_SECONDS
    upload_end = run.command.stop * FRAME_SECONDS
    assert upload_start <= start
    assert end <= upload_end <= end + 0.4  # the hangover is not uploaded


@pytest.mark.models
@pytest.mark.parametrize("pause_seconds", [0.3, 0.4])
def test_a_pause_in_the_middle_does_not_cut_the_command(
    silero: SileroVad, pause_seconds: float
) -> None:
    command = concat(speak("turn on the"), silence(pause_seconds), speak("kitchen light"))
    run, start, end = listen_after_wake(silero, Scenario.build(command))
    assert list(run.endpoints.values()) == [STARTED, ENDED]
    assert run.at(ENDED) > end
    assert run.command.start * FRAME_SECONDS <= start
    assert end <= run.command.stop * FRAME_SECONDS <= end + 0.4


@pytest.mark.models
@pytest.mark.parametrize("rms", [0.0, 30.0, 100.0], ids=["silence", "noise30", "noise100"])
def test_nothing_said_gives_up_after_no_speech_seconds(silero: SileroVad, rms: float) -> None:
    clip = noise(7.0, rms) if rms else silence(7.0)
    run = listen(silero, clip)
    assert run.endpoints == {62: NONE}  # 5 s is 62.5 frames: 63 frames
    assert run.command == slice(0, 0)
    assert max(run.probabilities) < 0.5


@pytest.mark.models
@pytest.mark.parametrize("rms", [300.0, 1000.0])
def test_speech_over_moderate_noise_still_ends(silero: SileroVad, rms: float) -> None:
    # The command's RMS is about 3300, so 1000 is about 10 dB below it.
    scene = Scenario.build("turn on the kitchen light", noise_rms=rms)
    run, start, end = listen_after_wake(silero, scene)
    assert list(run.endpoints.values()) == [STARTED, ENDED]
    assert start - 0.1 <= run.at(STARTED) <= start + 0.4
    assert 0.6 <= run.at(ENDED) - end <= 1.2
    assert run.command.start * FRAME_SECONDS <= start
    assert end <= run.command.stop * FRAME_SECONDS <= end + 0.5


@pytest.mark.models
def test_a_model_that_is_not_silero_is_a_model_error() -> None:
    melspec = require_model("openwakeword/melspectrogram.onnx")
    with pytest.raises(ModelError, match="not a Silero v4 VAD"):
        SileroVad(VadConfig(model=str(melspec)), melspec.parent.parent)


def test_a_broken_model_file_is_a_model_error(tmp_path: Path) -> None:
    (tmp_path / "vad").mkdir()
    (tmp_path / "vad" / "silero_vad.onnx").write_bytes(b"not a model")
    with pytest.raises(ModelError, match="cannot load"):
        SileroVad(VadConfig(), tmp_path)


def test_a_missing_model_names_the_config_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^vad\.model: no model 'silero_vad'"):
        SileroVad(VadConfig(), tmp_path)
