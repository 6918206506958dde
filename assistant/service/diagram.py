"""The conversation state machine drawn from ``assistant.core.machine.TRANSITIONS`` itself.

``mermaid()`` is the text the README embeds (a test keeps the two equal), ``dot()`` the same graph
for Graphviz, and ``render(path)`` writes either text or, through Graphviz's ``dot``, an image.

How the table becomes a picture:

- transitions between the same two states are merged into one arrow, their triggers joined by
  `` / ``; a guarded transition shows its condition (``transcribed [has text]``) and the
  unguarded one that catches the rest shows ``[else]``;
- triggers that abandon a turn from every busy state (``failed``, ``timed_out``,
  ``cancel_requested``) are drawn last, as their own group;
- an internal transition that does something (``sentence_played`` re-arms the timeout) is a loop;
  one that does nothing is listed in a note ("ignored during a turn (...)"), marked ``[else]``
  where a guarded arrow for the same trigger comes first; one that only refuses (its callbacks
  are ``_refuse…``) is listed in a note too ("refused during a turn (...)"), and so is one that
  only keeps the event for later (``_hold…``: "held during a turn (...)");
- the switches that any state takes (mute, wake word on/off, the deaf tail: ``SWITCHES``) are
  one note rather than a loop on every state.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from assistant.core.machine import Assistant
from assistant.core.table import ALL, BUSY, SWITCHES, TRANSITIONS
from assistant.errors import AssistantError

IMAGE_FORMATS: Final = ("png", "svg", "pdf")
TEXT_FORMATS: Final = {"mmd": "mermaid", "md": "mermaid", "dot": "dot", "gv": "dot"}
RENDER_TIMEOUT_SECONDS: Final = 30.0


class DiagramError(AssistantError):
    code = "diagram"


@dataclass(frozen=True, slots=True)
class Edge:
    """One arrow: every trigger that moves ``source`` to ``dest`` (a loop when they are equal)."""

    source: str
    dest: str
    triggers: tuple[str, ...]
    """Each with its condition, e.g. ``transcribed [has text]``."""
    abandons: bool = False
    """Part of the group that abandons a turn from every busy state."""

    @property
    def label(self) -> str:
        return " / ".join(self.triggers)


@dataclass(frozen=True, slots=True)
class Note:
    """Triggers accepted in ``states`` without moving: ignored, refused, or setting a switch."""

    states: tuple[str, ...]
    triggers: tuple[str, ...]
    verb: str = "ignored"

    @property
    def text(self) -> str:
        if self.states == tuple(str(phase) for phase in BUSY):
            where = "during a turn"
        elif self.states == tuple(str(phase) for phase in ALL):
            where = "in any state"
        else:
            where = "here"
        # no colon: Mermaid ends a note's text at the first one
        return f"{self.verb} {where} ({', '.join(self.triggers)})"


@dataclass(frozen=True, slots=True)
class Graph:
    initial: str
    edges: tuple[Edge, ...]
    notes: tuple[Note, ...]


def _names(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):  # a Phase is a str too
        return (str(value),)
    return tuple(str(item) for item in value)


def _condition(name: str) -> str:
    return name.strip("_").replace("_", " ")


def graph(transitions: Sequence[dict[str, Any]] = TRANSITIONS) -> Graph:
    """The drawing's content, in the table's order."""
    busy = {str(phase) for phase in BUSY}
    guarded: set[tuple[str, str]] = set()  # (trigger, source) seen with a condition
    arrows: dict[tuple[str, str, bool], list[str]] = {}
    ignored: dict[tuple[tuple[str, ...], str], list[str]] = {}
    everywhere = tuple(str(phase) for phase in ALL)
    for transition in transitions:
        trigger = str(transition["trigger"])
        sources = _names(transition["source"])
        dest = transition.get("dest")
        conditions = [_condition(c) for c in _names(transition.get("conditions"))]
        conditions += [f"not {_condition(c)}" for c in _names(transition.get("unless"))]
        callbacks = [
            c for key in ("before", "after", "prepare") for c in _names(transition.get(key))
        ]
        refuses = bool(callbacks) and all(c.startswith("_refuse") for c in callbacks)
        holds = bool(callbacks) and all(c.startswith("_hold") for c in callbacks)
        if dest is None and trigger in SWITCHES and sources == everywhere:
            ignored.setdefault((sources, "switches"), []).append(trigger)
            continue
        if dest is None and (refuses or holds or not callbacks):
            # after a guarded arrow for the same trigger, this is what happens otherwise
            otherwise = any((trigger, source) in guarded for source in sources) and not conditions
            verb = "refused" if refuses else "held" if holds else "ignored"
            ignored.setdefault((sources, verb), []).append(
                trigger + (" [else]" if otherwise else "")
            )
            continue
        abandons = dest is not None and set(sources) == busy and len(sources) == len(busy)
        for source in sources:
            label = trigger
            if conditions:
                label += f" [{' and '.join(conditions)}]"
                guarded.add((trigger, source))
            elif (trigger, source) in guarded:
                label += " [else]"
            target = source if dest is None else str(dest)
            arrows.setdefault((source, target, abandons), []).append(label)
    ordered = sorted(arrows.items(), key=lambda item: item[0][2])  # stable: abandons last
    edges = tuple(
        Edge(source, dest, tuple(labels), abandons) for (source, dest, abandons), labels in ordered
    )
    notes = tuple(
        Note(states, tuple(triggers), verb) for (states, verb), triggers in ignored.items()
    )
    return Graph(initial=str(Assistant().phase), edges=edges, notes=notes)


def mermaid(transitions: Sequence[dict[str, Any]] = TRANSITIONS) -> str:
    """A Mermaid ``stateDiagram-v2`` of the machine (what the README's mermaid block holds)."""
    drawing = graph(transitions)
    lines = ["stateDiagram-v2", f"    [*] --> {drawing.initial}"]
    grouped = False
    for edge in drawing.edges:
        if edge.abandons and not grouped:
            grouped = True
            lines.append("    %% any busy state: the turn is abandoned")
        lines.append(f"    {edge.source} --> {edge.dest}: {edge.label}")
    for note in drawing.notes:
        side = "left" if len(note.states) > 1 else "right"
        lines.append(f"    note {side} of {note.states[0]}: {note.text}")
    return "\n".join(lines) + "\n"


def dot(transitions: Sequence[dict[str, Any]] = TRANSITIONS) -> str:
    """The same graph in Graphviz's DOT language."""
    drawing = graph(transitions)
    lines = [
        "digraph lingling {",
        "    rankdir=LR;",
        '    node [shape=box, style=rounded, fontname="Helvetica"];',
        '    edge [fontname="Helvetica", fontsize=10];',
        '    start [shape=point, width=0.15, label=""];',
        f"    start -> {_quote(drawing.initial)};",
    ]
    for edge in drawing.edges:
        attributes = [f"label={_quote(edge.label)}"]
        if edge.abandons:
            attributes += ["style=dashed", "color=firebrick", "fontcolor=firebrick"]
        lines.append(f"    {_quote(edge.source)} -> {_quote(edge.dest)} [{', '.join(attributes)}];")
    for index, note in enumerate(drawing.notes, 1):
        name = f"note{index}"
        lines.append(f"    {name} [shape=note, fontsize=10, label={_quote(note.text)}];")
        lines.append(f"    {name} -> {_quote(note.states[0])} [style=dotted, arrowhead=none];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render(path: Path, *, dot_command: str = "dot") -> Path:
    """Write the diagram to ``path``; its suffix picks the format.

    ``.mmd``: Mermaid text (``.md``: the same in a fenced block); ``.dot``/``.gv``: DOT text;
    ``.png``/``.svg``/``.pdf``: an image drawn by Graphviz, which must be installed (DiagramError
    otherwise).
    """
    suffix = path.suffix.lower().lstrip(".")
    if suffix in TEXT_FORMATS:
        text = mermaid() if TEXT_FORMATS[suffix] == "mermaid" else dot()
        if suffix == "md":
            text = f"```mermaid\n{text}```\n"
        path.write_text(text, encoding="utf-8")
        return path
    if suffix not in IMAGE_FORMATS:
        known = ", ".join(f".{name}" for name in (*IMAGE_FORMATS, *TEXT_FORMATS))
        raise DiagramError(f"{path}: unknown diagram format (use {known})")
    program = shutil.which(dot_command)
    if program is None:
        raise DiagramError(
            f"drawing {path.name} needs Graphviz's `dot`: apt-get install graphviz "
            "(or brew install graphviz); without it, `lingling diagram` prints Mermaid text"
        )
    _run([program, f"-T{suffix}", "-o", str(path)], dot())
    return path


def _run(command: Iterable[str], text: str) -> None:
    args = list(command)
    try:
        result = subprocess.run(
            args,
            input=text.encode(),
            capture_output=True,
            timeout=RENDER_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        raise DiagramError(f"{args[0]} failed: {err}") from err
    if result.returncode != 0:
        detail = result.stderr.decode(errors="replace").strip().splitlines()
        reason = detail[0] if detail else f"exit code {result.returncode}"
        raise DiagramError(f"{args[0]} failed: {reason}")
