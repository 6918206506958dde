"""Two rooms, one voice: two real ``lingling run`` processes on one mosquitto hear the same
recording, one at 0 dB and one at -12 dB, and only the nearer one answers.

Each run starts two processes (sites ``kitchen`` and ``hall``; which one is nearer alternates),
each with its own WAV for a microphone: 5 s of room noise, then the recorded "hey jarvis" of
tests/data and an espeak-ng command, at its room's gain, over its own quiet-room noise (RMS 30).
``--input-start`` (the launch instant) makes both files play in real time from the same
wall-clock instant; each process starts listening once it is ready, partway into the lead-in, so
the two processes' 80 ms frames fall where they fall, as two microphones' do. Both use the real
wake word, VAD and end-of-turn models, the Piper tone voice, and loopback STT/LLM servers. Each
process's ``--events`` log says how its turn ended and how its claim was decided; a subscriber on
the broker notes when each claim arrived, and each ``--output`` WAV shows what it played.

Then a single satellite, alone on the broker, with ``mqtt.arbitration`` on and off: wake word →
listening from its own turn record (the loop's clock, the earcon played in real time).

    .venv/bin/python -m bench.rooms [--quick] [--runs N]
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import threading
import time
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bench.common import (
    Report,
    have_models,
    machine_line,
    models_dir,
    p50,
    parser,
    quiet_logs,
)
from bench.process import LinglingProcess
from tests.support.broker import Broker
from tests.support.scenarios import Audio, Scenario, noise, recording, write_wav
from tests.support.servers import FakeLlamaServer, FakeWhisperServer

SITES: Final = ("kitchen", "hall")
FAR_DB: Final = -12.0
ROOM_NOISE_RMS: Final = 30.0
LEAD_SECONDS: Final = 5.0
"""Room noise before the wake word: the processes get ready (about 1.5 s) within it."""
RUN_TIMEOUT_SECONDS: Final = 60.0
COMMAND: Final = "turn on the kitchen light"
MODELS: Final = ("openwakeword/hey_jarvis_v0.1.onnx", "piper/tone_voice.onnx")
WAKE_TO_LISTENING_GROWTH_MS: Final = 5.0


def scene() -> Scenario:
    return Scenario.build(
        COMMAND, wake=recording("wyoming_hey_jarvis"), lead_seconds=LEAD_SECONDS, pause_seconds=0.2
    )


def room_audio(scene: Scenario, gain_db: float, seed: int) -> Audio:
    """The scene as one room hears it: at ``gain_db``, over the room's own noise."""
    voice = scene.samples.astype(np.float64) * 10 ** (gain_db / 20)
    mixed = voice + noise(scene.samples.size / 16_000, ROOM_NOISE_RMS, seed).astype(np.float64)
    return np.clip(np.round(mixed), -32768, 32767).astype(np.int16)


def write_config(
    path: Path,
    models: Path,
    broker: Broker,
    site: str,
    urls: tuple[str, str],
    *,
    arbitration: bool = True,
) -> Path:
    whisper, llama = urls
    path.write_text(
        f"models_dir: {models}\n"
        "wake: {models: [hey_jarvis]}\n"
        "tts: {voice: tone_voice}\n"
        "intents: {follow_up_seconds: 0}\n"
        f"stt: {{url: '{whisper}'}}\n"
        f"llm: {{url: '{llama}', model: tiny}}\n"
        f"mqtt: {{host: {broker.host}, port: {broker.port}, site: {site}, discovery: false, "
        f"arbitration: {str(arbitration).lower()}}}\n",
        encoding="utf-8",
    )
    return path


@dataclass(frozen=True, slots=True)
class Heard:
    """What one process did in one run."""

    site: str
    gain_db: float
    outcomes: list[str]
    decisions: list[dict[str, Any]]
    played_ms: float
    """How much it played (earcon, speech), from its output WAV."""
    wake_to_listening_ms: float | None
    ready_seconds: float


def read_events(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def played_ms(path: Path) -> float:
    with wave.open(str(path), "rb") as wav:
        return 1000.0 * wav.getnframes() / wav.getframerate()


def run_processes(
    work: Path, name: str, rooms: Sequence[tuple[str, Audio, float, Path]]
) -> list[Heard]:
    """Run one process per room (site, audio, gain, config), the files playing from now, until
    each process ends."""
    for site, audio, _, _ in rooms:
        write_wav(work / f"{name}-{site}.wav", audio)
    start = time.time()
    processes = []
    for site, _, _, config in rooms:
        wav = work / f"{name}-{site}.wav"
        args = [
            "--input-start",
            f"{start:.6f}",
            "--events",
            str(work / f"{name}-{site}.jsonl"),
        ]
        processes.append(LinglingProcess(config, wav, work / f"{name}-{site}-out.wav", args=args))
    ready = []
    try:
        for process in processes:
            process.__enter__()
        for process in processes:
            ready.append(process.wait_ready(LEAD_SECONDS))
        for process in processes:
            if process.wait(RUN_TIMEOUT_SECONDS) != 0:
                raise RuntimeError("lingling run failed:\n" + "\n".join(process.lines[-20:]))
    finally:
        for process in processes:
            process.stop()
    results = []
    for (site, _, gain, _), ready_seconds in zip(rooms, ready, strict=True):
        events = read_events(work / f"{name}-{site}.jsonl")
        turns = [e for e in events if e["event"] == "turn"]
        timings = [t.get("timings_ms", {}).get("wake_to_listening") for t in turns]
        results.append(
            Heard(
                site=site,
                gain_db=gain,
                outcomes=[str(t["outcome"]) for t in turns],
                decisions=[e for e in events if e["event"] == "arbitration"],
                played_ms=played_ms(work / f"{name}-{site}-out.wav"),
                wake_to_listening_ms=next((t for t in timings if t is not None), None),
                ready_seconds=ready_seconds,
            )
        )
    return results


def two_rooms(
    report: Report, root: Path, work: Path, broker: Broker, urls: tuple[str, str], runs: int
) -> None:
    recorded = scene()
    configs = {
        site: write_config(work / f"{site}.yaml", root, broker, site, urls) for site in SITES
    }
    rows = []
    good = 0
    gaps = []
    loser_played = []
    for run in range(runs):
        near = SITES[run % 2]
        rooms = []
        for index, site in enumerate(SITES):
            gain = 0.0 if site == near else FAR_DB
            audio = room_audio(recorded, gain, seed=100 * run + index)
            rooms.append((site, audio, gain, configs[site]))
        watch = ClaimWatch(broker)
        try:
            heard = run_processes(work, f"run{run}", rooms)
            time.sleep(0.2)
        finally:
            watch.close()
        answered = [h.site for h in heard if h.outcomes == ["answered"]]
        lost = [h for h in heard if h.outcomes == ["lost"]]
        ok = answered == [near] and len(lost) == 1
        good += ok
        by_site = {claim["site"]: at for at, claim in watch.claims}
        gap_ms = abs(by_site[SITES[0]] - by_site[SITES[1]]) * 1000 if len(by_site) == 2 else None
        if gap_ms is not None:
            gaps.append(gap_ms)
        levels = {h.site: h.decisions[0]["claim"]["level_dbfs"] for h in heard if h.decisions}
        verdicts = "/".join(h.decisions[0]["verdict"] if h.decisions else "-" for h in heard)
        seen = "/".join(str(len(h.decisions[0]["rivals"])) if h.decisions else "-" for h in heard)
        if lost:
            loser_played.append(lost[0].played_ms)
        rows.append(
            (
                run + 1,
                near,
                gap_ms,
                levels.get(near),
                levels.get(next(s for s in SITES if s != near)),
                ", ".join(answered) or "none",
                verdicts,
                seen,
                lost[0].played_ms if lost else None,
                "yes" if ok else "**no**",
            )
        )
    report.text(
        f"{runs} runs of two `lingling run` processes on one mosquitto (sites `kitchen` and "
        f"`hall`, `arbitration_seconds` 0.15), the same recording at 0 dB (nearer) and "
        f"{FAR_DB:g} dB, over independent room noise (RMS 30), read in real time from the same "
        "wall-clock instant (`--input-start`), each process listening from when it was ready. "
        "Claim gap: between the two claims' arrival at a subscriber on the broker. Rivals seen: "
        "how many claims besides its own each one weighed. Loser played: all its output WAV "
        "holds (the 160 ms earcon, cut short)."
    )
    report.table(
        (
            "run",
            "nearer",
            "claim gap ms",
            "nearer dBFS",
            "farther dBFS",
            "answered",
            "verdicts (kitchen/hall)",
            "rivals seen",
            "loser played ms",
            "one turn, nearer",
        ),
        rows,
    )
    if gaps:
        report.text(
            f"Claim gap p50 {p50(gaps):.1f} ms, max {max(gaps):.1f} ms; loser played p50 "
            f"{p50(loser_played):.0f} ms of the 160 ms earcon."
        )
    report.target(
        "rooms: exactly one turn, on the nearer satellite",
        f"{good} of {runs}",
        f"{runs} of {runs}",
        good == runs,
    )


class ClaimWatch:
    """A client on the broker that notes when (monotonic seconds) each claim arrives."""

    def __init__(self, broker: Broker) -> None:
        self.claims: list[tuple[float, dict[str, Any]]] = []
        self._subscribed = threading.Event()
        client = mqtt.Client(CallbackAPIVersion.VERSION2)
        client.on_connect = lambda c, *_: c.subscribe("lingling/_arbitration/claims", qos=1)
        client.on_subscribe = lambda *_: self._subscribed.set()
        client.on_message = lambda c, u, m: self.claims.append(
            (time.monotonic(), json.loads(m.payload))
        )
        client.connect(broker.host, broker.port)
        client.loop_start()
        self._client = client
        if not self._subscribed.wait(5):
            raise RuntimeError("the claim watcher did not subscribe")

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def single(
    report: Report, root: Path, work: Path, broker: Broker, urls: tuple[str, str], runs: int
) -> None:
    audio = room_audio(scene(), 0.0, seed=7)
    measured: dict[bool, list[float]] = {True: [], False: []}
    for run in range(runs):
        for arbitration in (True, False):
            config = write_config(
                work / f"alone-{arbitration}.yaml",
                root,
                broker,
                "alone",
                urls,
                arbitration=arbitration,
            )
            (heard,) = run_processes(
                work, f"alone{run}-{arbitration}", [("alone", audio, 0.0, config)]
            )
            if heard.outcomes == ["answered"] and heard.wake_to_listening_ms is not None:
                measured[arbitration].append(heard.wake_to_listening_ms)
    on, off = measured[True], measured[False]
    report.text(
        f"A single satellite alone on the broker, {runs} runs each way, alternating: wake word → "
        "`listening` from its turn record (`timings_ms.wake_to_listening`, the loop's clock; the "
        "awake earcon, 160 ms, played in real time to the output WAV)."
    )
    report.table(
        ("mqtt.arbitration", "runs", "p50 ms", "min ms", "max ms"),
        [
            ("true (claims, waits 0.15 s)", len(on), p50(on), min(on), max(on)),
            ("false", len(off), p50(off), min(off), max(off)),
        ],
    )
    growth = p50(on) - p50(off)
    report.target(
        "rooms: a single satellite's wake → listening, growth of p50 with arbitration",
        f"{growth:+.1f} ms",
        f"≤ {WAKE_TO_LISTENING_GROWTH_MS:g} ms",
        growth <= WAKE_TO_LISTENING_GROWTH_MS,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parser(__doc__.splitlines()[0] if __doc__ else "")
    args.add_argument("--runs", type=int, help="two-room runs (default 20, --quick 4)")
    options = args.parse_args(argv)
    quiet_logs()
    report = Report("rooms", "Two rooms, one voice: arbitration between two `lingling run`")
    report.text(machine_line())
    root = models_dir()
    missing = [tool for tool in ("mosquitto", "espeak-ng", "sox") if shutil.which(tool) is None]
    if shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin"):
        missing = [tool for tool in missing if tool != "mosquitto"]
    if missing or not have_models(root, *MODELS):
        report.text(f"Skipped: missing {', '.join(missing) or 'models under LINGLING_MODELS'}.")
        report.target("rooms: exactly one turn, on the nearer satellite", "-", "all runs", None)
        report.emit(options.json)
        return 0
    assert root is not None
    runs = options.runs or (4 if options.quick else 20)
    with (
        tempfile.TemporaryDirectory(prefix="lingling-rooms-") as tmp,
        FakeWhisperServer(f" {COMMAND}\n") as whisper,
        FakeLlamaServer("OK.") as llama,
    ):
        work = Path(tmp)
        broker = Broker(work / "broker")
        broker.start()
        try:
            urls = (whisper.v1_url, llama.v1_url)
            two_rooms(report, root, work, broker, urls, runs)
            single(report, root, work, broker, urls, 2 if options.quick else 5)
        finally:
            broker.stop()
    report.emit(options.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
