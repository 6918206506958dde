"""Where ``lingling run``'s start-up time, memory and idle CPU go (used by bench.footprint).

* ``imports``: each dependency imported alone in a fresh process (time, RSS), and ``-X importtime``
  of everything ``lingling run`` imports;
* ``memory_map``: the RSS of a ready process by mapping (/proc/PID/smaps): whose shared libraries,
  and how much is heap;
* ``projection``: the same models loaded as ``lingling run`` loads them, against the three
  openWakeWord ONNX models run by onnxruntime directly (no ``openwakeword`` import);
* ``waterfall``: the start-up step by step in one process (time and RSS per step).

py-spy's profiles are in ``bench.spy``.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from bench.common import ROOT, Report
from bench.process import LinglingProcess, write_noise_wav, write_run_config

DEPENDENCIES: Final = (
    "numpy",
    "onnxruntime",
    "scipy",
    "sklearn",
    "openwakeword.model",
    "piper",
    "openai",
    "pydantic",
    "transitions",
    "yaml",
    "hassil",
    "sounddevice",
    "paho.mqtt.client",
)
_RSS: Final = (
    "def rss():\n"
    "    for line in open('/proc/self/status'):\n"
    "        if line.startswith('VmRSS:'):\n"
    "            return int(line.split()[1]) * 1024 / 1e6\n"
)
_IMPORT_ONE: Final = (
    "import importlib, json, sys, time\n" + _RSS + "before = rss()\n"
    "started = time.perf_counter()\n"
    "for name in sys.argv[1].split(','):\n"
    "    importlib.import_module(name)\n"
    "print(json.dumps({'seconds': time.perf_counter() - started, 'rss': rss(),"
    " 'added': rss() - before}))\n"
)


@contextlib.contextmanager
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="lingling-bench-") as path:
        yield Path(path)


def _python(code: str, *args: str) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def imports(report: Report, root: Path, work: Path) -> None:
    tree = run_importtime(root, work)
    rows = []
    everything = ",".join(name for name, _, _ in tree if not name.startswith("_"))
    for name in (*DEPENDENCIES, everything):
        runs = [_python(_IMPORT_ONE, name) for _ in range(2)]  # the first warms the page cache
        best = min(runs, key=lambda run: run["seconds"])
        label = "everything `lingling run` imports" if name == everything else name
        rows.append((label, best["seconds"] * 1000, best["added"], best["rss"]))
    report.text(
        "Import cost, each in a fresh process (best of 2): time, RSS added by the import, RSS "
        "after it (the interpreter alone is ~9 MB). The last row imports every top-level module "
        "a real `lingling run` imported before it was ready."
    )
    report.table(("import", "ms", "RSS added MB", "RSS after MB"), rows)
    report.text(
        "`python -X importtime -m assistant run …` until ready: the costliest top-level imports"
    )
    top = sorted(tree, key=lambda node: -node[1])[:10]
    report.table(
        ("import", "cumulative ms", "of which the costliest nested imports (ms)"),
        [
            (
                name,
                ms,
                ", ".join(f"{c} {c_ms:.0f}" for c, c_ms in sorted(kids, key=lambda k: -k[1])[:4]),
            )
            for name, ms, kids in top
        ],
    )


def run_importtime(root: Path, work: Path) -> list[tuple[str, float, list[tuple[str, float]]]]:
    """A real ``lingling run`` under ``-X importtime`` until ready: its top-level imports as
    (name, cumulative ms, [(nested import, cumulative ms)])."""
    wav = write_noise_wav(work / "importtime.wav", 30)
    cfg = write_run_config(work / "importtime.yaml", root, ["hey_jarvis"])
    out = work / "importtime-out.wav"
    with LinglingProcess(cfg, wav, out, python_flags=("-X", "importtime")) as process:
        process.wait_ready()
        lines = list(process.lines)
    line_re = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)")
    pending: dict[int, list[tuple[str, float, list[tuple[str, float]]]]] = {}
    for line in lines:
        match = line_re.match(line)
        if match is None:
            continue
        cumulative_ms = int(match.group(2)) / 1000
        level = len(match.group(3)) // 2
        children = [(name, ms) for name, ms, _ in pending.pop(level + 1, [])]
        pending.setdefault(level, []).append((match.group(4), cumulative_ms, children))
    return pending.get(0, [])


# -- memory --------------------------------------------------------------------------------------


def _mapping_owner(path: str) -> str:
    if not path or path.startswith("["):
        return "anonymous (heap, Python objects, arrays, onnxruntime arenas)"
    if "site-packages/" in path:
        package = path.split("site-packages/", 1)[1].split("/", 1)[0]
        package = package.removesuffix(".libs").replace("scikit_learn", "sklearn")
        return f"{package} (shared libraries)"
    if "python3" in Path(path).name or "libpython" in path:
        return "python interpreter"
    if path.endswith(".onnx"):
        return "model files"
    return "system libraries and other files"


def smaps_by_owner(pid: int) -> Counter[str]:
    owners: Counter[str] = Counter()
    owner = ""
    header = re.compile(r"^[0-9a-f]+-[0-9a-f]+ ")
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        if header.match(line):
            parts = line.split(None, 5)
            owner = _mapping_owner(parts[5].strip() if len(parts) > 5 else "")
        elif line.startswith("Rss:"):
            owners[owner] += int(line.split()[1]) * 1024
    return owners


def memory_map(report: Report, root: Path, work: Path) -> None:
    wav = write_noise_wav(work / "map.wav", 30)
    cfg = write_run_config(work / "map.yaml", root, ["hey_jarvis"])
    with LinglingProcess(cfg, wav, work / "map-out.wav") as process:
        process.wait_ready()
        time.sleep(3)
        owners = smaps_by_owner(process.pid)
    total = sum(owners.values())
    rows = [(owner, size / 1e6) for owner, size in owners.most_common(12)]
    rows.append(("total", total / 1e6))
    report.text("RSS of a ready `lingling run` (one wake word) by mapping (/proc/PID/smaps), MB:")
    report.table(("owner", "RSS MB"), rows)


_PROJECTION: Final = (
    "import json, sys, time\n" + _RSS + "started = time.perf_counter()\n"
    "from pathlib import Path\n"
    "import numpy as np\n"
    "import assistant.service.serve, assistant.runtime.runtime, assistant.adapters.microphone\n"
    "import assistant.adapters.llama, assistant.adapters.whisper\n"
    "import assistant.adapters.wavfile, assistant.core.intents\n"
    "from assistant.config import Config\n"
    "from assistant.adapters.piper import PiperSynthesizer\n"
    "from assistant.adapters.silero import SileroVad\n"
    "root = Path(sys.argv[1])\n"
    "config = Config.model_validate({'tts': {'voice': 'tone_voice'}})\n"
    "words = root / 'openwakeword'\n"
    "if sys.argv[2] == 'runtime':\n"
    "    from assistant.adapters.openwakeword import OpenWakeWord\n"
    "    wake = OpenWakeWord(config.wake, root)\n"
    "    wake.process(bytes(2560))\n"
    "elif sys.argv[2] == 'openwakeword':\n"
    "    from openwakeword.model import Model\n"
    "    model = Model(wakeword_models=[str(words / 'hey_jarvis_v0.1.onnx')],"
    " inference_framework='onnx', melspec_model_path=str(words / 'melspectrogram.onnx'),"
    " embedding_model_path=str(words / 'embedding_model.onnx'), ncpu=1)\n"
    "    model.predict(np.zeros(1280, np.int16))\n"
    "else:\n"
    "    import onnxruntime as ort\n"
    "    options = ort.SessionOptions()\n"
    "    options.intra_op_num_threads = 1\n"
    "    options.inter_op_num_threads = 1\n"
    "    for name in ('melspectrogram', 'embedding_model', 'hey_jarvis_v0.1'):\n"
    "        session = ort.InferenceSession(str(words / f'{name}.onnx'),"
    " sess_options=options, providers=['CPUExecutionProvider'])\n"
    "        for value in session.get_inputs():\n"
    "            shape = [d if isinstance(d, int) else 1 for d in value.shape]\n"
    "            if name == 'melspectrogram':\n"
    "                shape[-1] = 1760\n"
    "            session.run(None, {value.name: np.zeros(shape, np.float32)})\n"
    "vad = SileroVad(config.vad, root)\n"
    "piper = PiperSynthesizer(config.tts, root)\n"
    "piper.warm()\n"
    "print(json.dumps({'seconds': time.perf_counter() - started, 'rss': rss(),"
    " 'openwakeword': float('openwakeword' in sys.modules),"
    " 'scipy': float('scipy' in sys.modules), 'sklearn': float('sklearn' in sys.modules)}))\n"
)


def projection(report: Report, root: Path) -> None:
    """The same models loaded three ways, each in a fresh process (best of 2)."""
    rows = []
    for way, label in (
        ("runtime", "`assistant.adapters.openwakeword.OpenWakeWord` (what `lingling run` uses)"),
        ("openwakeword", "`openwakeword.Model` (the library)"),
        ("onnxruntime", "onnxruntime directly (the same 3 models)"),
    ):
        runs = [_python(_PROJECTION, str(root), way) for _ in range(2)]
        best = min(runs, key=lambda run: run["seconds"])
        loaded = [name for name in ("openwakeword", "scipy", "sklearn") if best[name]]
        rows.append((label, best["seconds"], best["rss"], ", ".join(loaded) or "none"))
    report.text(
        "Projection: what `lingling run` loads before it is ready (its modules, one wake word, "
        "Silero VAD, Piper warmed up), in one thread and a fresh process, with the wake word's "
        "three ONNX models loaded three ways:"
    )
    report.table(("wake word loaded by", "load s", "RSS MB", "heavy modules imported"), rows)


_WATERFALL: Final = (
    "import json, sys, time\n" + _RSS + "from pathlib import Path\n"
    "steps = []\n"
    "def step(name, started):\n"
    "    steps.append((name, time.perf_counter() - started, rss()))\n"
    "t = time.perf_counter(); step('python interpreter', t)\n"
    "t = time.perf_counter(); import numpy; step('import numpy', t)\n"
    "t = time.perf_counter(); import onnxruntime; step('import onnxruntime', t)\n"
    "t = time.perf_counter(); import piper; step('import piper', t)\n"
    "t = time.perf_counter(); import pydantic; step('import pydantic', t)\n"
    "t = time.perf_counter(); import openai; step('import openai (its types, httpx2)', t)\n"
    "t = time.perf_counter(); import transitions, yaml, hassil; "
    "step('import transitions, yaml, hassil', t)\n"
    "t = time.perf_counter()\n"
    "import assistant.service.serve, assistant.runtime.runtime, assistant.adapters.microphone\n"
    "import assistant.adapters.llama, assistant.adapters.whisper\n"
    "import assistant.adapters.piper, assistant.adapters.silero, assistant.adapters.openwakeword\n"
    "import assistant.adapters.wavfile, assistant.core.intents\n"
    "step('import assistant.*', t)\n"
    "from assistant.config_files import load_config\n"
    "config = load_config(env={})\n"
    "config = config.model_copy(update={'models_dir': Path(sys.argv[1]),"
    " 'tts': config.tts.model_copy(update={'voice': 'tone_voice'})})\n"
    "t = time.perf_counter(); wake = assistant.adapters.openwakeword.OpenWakeWord(config.wake,"
    " config.models_dir); wake.process(bytes(2560)); step('wake word (1) loaded, one frame', t)\n"
    "t = time.perf_counter(); vad = assistant.adapters.silero.SileroVad(config.vad,"
    " config.models_dir); vad.process(bytes(2560)); step('Silero VAD loaded, one frame', t)\n"
    "t = time.perf_counter(); tts = assistant.adapters.piper.PiperSynthesizer(config.tts,"
    " config.models_dir); tts.warm(); step('Piper tone voice loaded and warmed', t)\n"
    "t = time.perf_counter(); intents = assistant.core.intents.Intents.load(config.intents);"
    " step('intents loaded', t)\n"
    "t = time.perf_counter(); stt = assistant.adapters.whisper.WhisperTranscriber(config.stt);"
    " chat = assistant.adapters.llama.LlamaChat(config.llm); step('HTTP clients created', t)\n"
    "print(json.dumps(steps))\n"
)


def waterfall(report: Report, root: Path) -> None:
    """What ``lingling run`` builds before it is ready, step by step in one fresh process."""
    done = subprocess.run(
        [sys.executable, "-c", _WATERFALL, str(root)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    steps = json.loads(done.stdout.strip().splitlines()[-1])
    rows = []
    previous = 0.0
    for name, seconds, rss in steps:
        rows.append((name, seconds * 1000, rss - previous, rss))
        previous = rss
    report.text(
        "Waterfall: `lingling run`'s start-up done step by step in one fresh process and one "
        "thread (the real process loads the models in parallel threads):"
    )
    report.table(("step", "ms", "RSS added MB", "RSS MB"), rows)
