"""The state diagram is drawn from the machine's own table, and the README shows the same one."""

from __future__ import annotations

import re
import shutil
import stat
from pathlib import Path
from typing import Any

import pytest

from assistant.core.commands import Phase
from assistant.core.table import ALL, BUSY, SWITCHES, TRANSITIONS
from assistant.service.diagram import DiagramError, dot, graph, mermaid, render

README = Path(__file__).parent.parent / "README.md"


def _names(value: Any) -> list[str]:
    if value is None:
        return []
    return [str(value)] if isinstance(value, str) else [str(item) for item in value]


def _arrows(text: str, pattern: str) -> dict[tuple[str, str], list[str]]:
    """``(source, dest) -> [label, ...]`` from the drawing's arrow lines."""
    arrows: dict[tuple[str, str], list[str]] = {}
    for source, dest, label in re.findall(pattern, text, flags=re.MULTILINE):
        arrows.setdefault((source, dest), []).append(label)
    return arrows


MERMAID_ARROW = r"^    (\w+) --> (\w+): (.+)$"
DOT_ARROW = r'^    "(\w+)" -> "(\w+)" \[label="([^"]+)"'


@pytest.mark.parametrize(("draw", "pattern"), [(mermaid, MERMAID_ARROW), (dot, DOT_ARROW)])
def test_every_transition_of_the_machine_is_drawn(draw: Any, pattern: str) -> None:
    text = draw()
    arrows = _arrows(text, pattern)
    for transition in TRANSITIONS:
        trigger = transition["trigger"]
        callbacks = [c for k in ("before", "after", "prepare") for c in _names(transition.get(k))]
        refuses = bool(callbacks) and all(c.startswith(("_refuse", "_hold")) for c in callbacks)
        noted = transition["dest"] is None and (
            not callbacks or refuses or transition["trigger"] in SWITCHES
        )
        for source in _names(transition["source"]):
            if noted:
                # ignored, refused or a switch: named in a note attached to the state
                notes = [
                    line
                    for line in text.splitlines()
                    if re.search(r"(ignored|refused|held|switches) ", line)
                ]
                assert any(re.search(rf"\b{trigger}\b", line) for line in notes), trigger
                continue
            dest = source if transition["dest"] is None else str(transition["dest"])
            labels = arrows.get((source, dest), [])
            assert any(re.search(rf"(^|/ ){trigger}\b", label) for label in labels), (
                f"{source} --{trigger}--> {dest} missing from {labels}"
            )


def test_nothing_is_drawn_that_the_machine_does_not_have() -> None:
    allowed = {
        (source, source if t["dest"] is None else str(t["dest"]), t["trigger"])
        for t in TRANSITIONS
        for source in _names(t["source"])
    }
    for (source, dest), labels in _arrows(mermaid(), MERMAID_ARROW).items():
        for label in labels:
            for part in label.split(" / "):
                trigger = part.split(" [")[0]
                assert (source, dest, trigger) in allowed, (source, dest, part)


P = Phase
# A fixed table in the machine's shape, so that the drawing rules are tested on their own.
TABLE: list[dict[str, Any]] = [
    {"trigger": "wake_detected", "source": P.IDLE, "dest": P.WAKE, "before": "_new_turn"},
    {"trigger": "listen_requested", "source": P.IDLE, "dest": P.WAKE, "before": "_new_turn"},
    {"trigger": "wake_detected", "source": [P.THINKING, P.SPEAKING], "dest": P.WAKE,
     "conditions": "_barge_in", "before": "_interrupt"},
    {"trigger": "wake_detected", "source": BUSY, "dest": None},
    {"trigger": "earcon_finished", "source": P.WAKE, "dest": P.LISTENING},
    {"trigger": "speech_ended", "source": P.LISTENING, "dest": P.TRANSCRIBING},
    {"trigger": "transcribed", "source": P.TRANSCRIBING, "dest": P.THINKING,
     "conditions": "_has_text"},
    {"trigger": "transcribed", "source": P.TRANSCRIBING, "dest": P.IDLE},
    {"trigger": "speaking_started", "source": P.THINKING, "dest": P.SPEAKING},
    {"trigger": "sentence_played", "source": P.SPEAKING, "dest": None, "after": "_rearm"},
    {"trigger": "reply_finished", "source": [P.THINKING, P.SPEAKING], "dest": P.IDLE},
    {"trigger": "failed", "source": BUSY, "dest": P.IDLE, "before": "_fail"},
    {"trigger": "timed_out", "source": BUSY, "dest": P.IDLE, "before": "_time_out"},
    {"trigger": "cancel_requested", "source": P.IDLE, "dest": None},
    {"trigger": "say_requested", "source": BUSY, "dest": None, "after": "_refuse_busy"},
    {"trigger": "mute_requested", "source": ALL, "dest": None, "before": "_set_mute"},
]  # fmt: skip


def test_guards_merges_loops_notes_and_the_abandon_group() -> None:
    assert mermaid(TABLE) == (
        "stateDiagram-v2\n"
        "    [*] --> idle\n"
        "    idle --> wake: wake_detected / listen_requested\n"
        "    thinking --> wake: wake_detected [barge in]\n"
        "    speaking --> wake: wake_detected [barge in]\n"
        "    wake --> listening: earcon_finished\n"
        "    listening --> transcribing: speech_ended\n"
        "    transcribing --> thinking: transcribed [has text]\n"
        "    transcribing --> idle: transcribed [else]\n"
        "    thinking --> speaking: speaking_started\n"
        "    speaking --> speaking: sentence_played\n"
        "    thinking --> idle: reply_finished\n"
        "    speaking --> idle: reply_finished\n"
        "    %% any busy state: the turn is abandoned\n"
        "    wake --> idle: failed / timed_out\n"
        "    listening --> idle: failed / timed_out\n"
        "    transcribing --> idle: failed / timed_out\n"
        "    thinking --> idle: failed / timed_out\n"
        "    speaking --> idle: failed / timed_out\n"
        "    note left of wake: ignored during a turn (wake_detected [else])\n"
        "    note right of idle: ignored here (cancel_requested)\n"
        "    note left of wake: refused during a turn (say_requested)\n"
        "    note left of idle: switches in any state (mute_requested)\n"
    )


def test_the_machine_abandons_turns_from_every_busy_state() -> None:
    lines = mermaid().splitlines()
    abandon = [line for line in lines if "failed / timed_out / cancel_requested" in line]

    assert [line.split()[0] for line in abandon] == [str(phase) for phase in BUSY]
    assert lines[lines.index(abandon[0]) - 1].startswith("    %%")


def test_a_table_with_unless_and_several_sources_is_drawn_as_declared() -> None:
    table: list[dict[str, Any]] = [
        {"trigger": "go", "source": ["a", "b"], "dest": "c", "unless": "_is_late"},
        {"trigger": "go", "source": "a", "dest": "d"},
        {"trigger": "poke", "source": "c", "dest": None},
        {"trigger": "tick", "source": "c", "dest": None, "after": "_count"},
    ]

    drawing = graph(table)

    assert [(e.source, e.dest, e.label) for e in drawing.edges] == [
        ("a", "c", "go [not is late]"),
        ("b", "c", "go [not is late]"),
        ("a", "d", "go [else]"),
        ("c", "c", "tick"),
    ]
    assert [(n.states, n.triggers) for n in drawing.notes] == [(("c",), ("poke",))]


def test_the_readme_embeds_the_diagram() -> None:
    text = README.read_text(encoding="utf-8")
    blocks = re.findall(r"^```mermaid\n(.*?)^```$", text, flags=re.MULTILINE | re.DOTALL)

    assert blocks, "README.md has no ```mermaid block"
    assert blocks[0] == mermaid(), (
        "README.md's state diagram is not the machine's: paste the output of `lingling diagram`"
    )


def test_dot_is_a_digraph_with_notes() -> None:
    text = dot(TABLE)

    assert text.startswith("digraph lingling {\n")
    assert text.endswith("}\n")
    assert 'start -> "idle";' in text
    assert '"speaking" -> "speaking" [label="sentence_played"];' in text
    assert text.count("style=dashed") == len(BUSY)
    assert 'note2 [shape=note, fontsize=10, label="ignored here (cancel_requested)"];' in text
    assert 'note2 -> "idle" [style=dotted, arrowhead=none];' in text


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("m.mmd", mermaid),
        ("m.dot", dot),
        ("m.gv", dot),
        ("m.md", lambda: f"```mermaid\n{mermaid()}```\n"),
    ],
)
def test_render_writes_text_formats_without_graphviz(
    tmp_path: Path, name: str, expected: Any
) -> None:
    path = render(tmp_path / name, dot_command=str(tmp_path / "no-such-dot"))

    assert path.read_text(encoding="utf-8") == expected()


def test_render_without_graphviz_says_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(DiagramError, match=r"apt-get install graphviz.*brew install graphviz"):
        render(tmp_path / "m.png", dot_command=str(tmp_path / "no-such-dot"))
    assert not (tmp_path / "m.png").exists()


def test_render_refuses_an_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(DiagramError, match=r"unknown diagram format \(use \.png"):
        render(tmp_path / "m.jpeg")


def test_render_reports_graphviz_errors(tmp_path: Path) -> None:
    fake = tmp_path / "dot"
    fake.write_text("#!/bin/sh\necho 'Error: <stdin>: syntax error in line 3' >&2\nexit 1\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)

    with pytest.raises(DiagramError, match="syntax error in line 3"):
        render(tmp_path / "m.svg", dot_command=str(fake))


def test_render_passes_the_dot_text_and_format_to_graphviz(tmp_path: Path) -> None:
    fake = tmp_path / "dot"
    # writes what it was given, and its arguments, where the image would go
    fake.write_text('#!/bin/sh\nout="$3"\n{ echo "$1 $2"; cat; } > "$out"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)

    path = render(tmp_path / "m.svg", dot_command=str(fake))

    assert path.read_text() == "-Tsvg -o\n" + dot()


@pytest.mark.skipif(
    shutil.which("dot") is None, reason="Graphviz not installed (apt-get install graphviz)"
)
@pytest.mark.parametrize(("suffix", "magic"), [(".png", b"\x89PNG"), (".svg", b"<?xml")])
def test_render_draws_an_image_with_graphviz(tmp_path: Path, suffix: str, magic: bytes) -> None:
    path = render(tmp_path / f"machine{suffix}")

    assert path.read_bytes().startswith(magic)
