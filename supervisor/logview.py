"""The log view of `iii run`: engine events and worker output in one stream.

Two renderings of the same `LogEvent`s: a human one-line-per-event layout
(coloured on a terminal, plain otherwise) and JSON lines for machines.
Output goes to stderr by default so stdout stays free for command output
(e.g. `iii run --print-config > file`) and pipelines.

Every event is written with a single write() under a lock, so lines from
concurrent sources (threads, the logging bridge) never interleave. Write
errors (closed pipe, `| head`) are swallowed: logging must never take the
engine down.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, TextIO

from rich.color import ColorSystem
from rich.console import Console
from rich.style import Style
from rich.text import Text

LEVELS = {"debug": 10, "info": 20, "warn": 30, "error": 40}
_ALIASES = {"warning": "warn", "critical": "error", "fatal": "error"}
FORMATS = ("pretty", "json")


@dataclass(frozen=True, slots=True)
class LogEvent:
    level: str  # "debug" | "info" | "warn" | "error"
    source: str  # "engine" or a worker name ("api", "worker-1")
    message: str
    time: float = field(default_factory=time.time)
    function_id: str | None = None
    trace_id: str | None = None
    stream: str | None = None  # "stdout" | "stderr" for lines captured from a child
    fields: Mapping[str, object] = field(default_factory=dict)


class LogView(Protocol):
    def emit(self, event: LogEvent) -> None: ...


def normalize_level(level: str) -> str:
    """Canonical level name; ValueError naming the bad value otherwise."""
    name = level.strip().lower()
    name = _ALIASES.get(name, name)
    if name not in LEVELS:
        raise ValueError(f"unknown log level {level!r} (expected one of: {', '.join(LEVELS)})")
    return name


def _rank(level: str) -> int:
    """Unknown levels rank as info: better shown than silently lost."""
    rank = LEVELS.get(level)
    if rank is None:
        rank = LEVELS.get(_ALIASES.get(level.lower(), level.lower()), 20)
    return rank


class _Sink:
    """One locked write per line; I/O errors are dropped on purpose."""

    def __init__(self, file: TextIO | None, level: str) -> None:
        self.file = file if file is not None else sys.stderr
        self.min_rank = LEVELS[normalize_level(level)]
        self._lock = threading.Lock()

    def enabled(self, level: str) -> bool:
        """Cheap pre-check so callers can skip building events nobody will see."""
        return _rank(level) >= self.min_rank

    def _write(self, line: str) -> None:
        with self._lock:
            try:
                self.file.write(line)
                self.file.flush()
            except (OSError, ValueError):
                pass


# ---------------------------------------------------------------- pretty view

_CSI_OR_OSC = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def _clean(text: str) -> str:
    """Make child output safe for a terminal: no cursor moves, no colour bleed.

    A carriage return keeps what a terminal would show (the last overwrite);
    other control characters become visible \\xNN escapes.
    """
    if text.isprintable():
        return text
    text = _CSI_OR_OSC.sub("", text)
    if "\r" in text:
        text = "\n".join(line.rstrip("\r").rsplit("\r", 1)[-1] for line in text.split("\n"))
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _value(value: object) -> str:
    if isinstance(value, (dict, list, bool)) or value is None:  # as the worker wrote it: JSON, not Python's repr
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    text = value if isinstance(value, str) else str(value)
    if not text or any(ch in text for ch in ' "=\n\t'):
        return json.dumps(text, ensure_ascii=False)
    return _clean(text)


_LEVEL_STYLES = {
    "debug": Style(dim=True),
    "info": Style(color="green"),
    "warn": Style(color="yellow"),
    "error": Style(color="red", bold=True),
}
_PALETTE = [
    Style(color=c)
    for c in (
        "cyan",
        "magenta",
        "blue",
        "green",
        "yellow",
        "bright_cyan",
        "bright_magenta",
        "bright_blue",
        "bright_green",
        "bright_yellow",
    )
]
ENGINE_SOURCE = "engine"
_ENGINE_STYLE = Style(bold=True)
_DIM = Style(dim=True)
_ITALIC = Style(italic=True)
_MAX_SOURCE_WIDTH = 24
_COLOR_SYSTEMS = {
    "standard": ColorSystem.STANDARD,
    "256": ColorSystem.EIGHT_BIT,
    "truecolor": ColorSystem.TRUECOLOR,
    "windows": ColorSystem.WINDOWS,
}

Segment = tuple[str, Style | None]


class RichLogView(_Sink):
    """`HH:MM:SS.mmm LEVEL [source] function_id trace message key=value`.

    Colour is decided once: `force_color` True/False, or auto (a terminal,
    honouring NO_COLOR / FORCE_COLOR / TERM=dumb as rich does). Without colour
    the layout is identical. Each source keeps the palette colour it got when
    first seen, so a restarted worker keeps its colour; "engine" is fixed bold.
    Worker text is never parsed as rich markup; control sequences in it are
    neutralised so a worker can't repaint the terminal.
    """

    def __init__(self, file: TextIO | None = None, *, level: str = "info", force_color: bool | None = None):
        super().__init__(file, level)
        if force_color is False:
            system = None
        else:
            console = Console(file=self.file, force_terminal=force_color)
            system = console.color_system or ("standard" if force_color else None)
            if force_color is None and console.no_color:
                system = None
        self._colors = _COLOR_SYSTEMS.get(system) if system else None
        self._styles: dict[str, Style] = {ENGINE_SOURCE: _ENGINE_STYLE}
        self._bold_styles: dict[Style, Style] = {}
        self._width = 0
        self._sec = -1
        self._hms = ""

    @property
    def color(self) -> bool:
        return self._colors is not None

    def source_style(self, source: str) -> Style:
        """The source's colour: assigned in first-seen order, then fixed."""
        style = self._styles.get(source)
        if style is None:
            style = _PALETTE[(len(self._styles) - 1) % len(_PALETTE)]
            self._styles[source] = style
        return style

    def _bold(self, style: Style) -> Style:
        bold = self._bold_styles.get(style)
        if bold is None:
            bold = self._bold_styles[style] = style + Style(bold=True)
        return bold

    def segments(self, event: LogEvent) -> list[Segment]:
        """The laid-out line as (text, style) pieces, without the newline."""
        t = event.time
        sec = int(t)
        if sec != self._sec:
            self._sec, self._hms = sec, time.strftime("%H:%M:%S", time.localtime(sec))
        level = event.level
        src = _clean(event.source)
        if len(src) + 2 > self._width:
            self._width = min(len(src) + 2, _MAX_SOURCE_WIDTH)
        src_style = self.source_style(event.source)
        if event.stream == "stderr":
            src_style = self._bold(src_style)
        head = f"[{src}]"
        pad = max(1, self._width - len(head) + 1)
        segs: list[Segment] = [
            (f"{self._hms}.{int((t - sec) * 1000):03d} ", _DIM),
            (f"{level.upper()[:5]:<5} ", _LEVEL_STYLES.get(level)),
            (head, src_style),
            (" " * pad, None),
        ]
        if event.function_id:
            segs.append((_clean(event.function_id) + " ", _ITALIC))
        if event.trace_id:
            segs.append((_clean(event.trace_id[:8]) + " ", _DIM))
        message = _clean(event.message.rstrip("\r\n"))
        if "\n" in message:
            indent = "\n" + " " * (19 + len(head) + pad)
            message = indent.join(message.split("\n"))
        segs.append((message, _DIM if level == "debug" else None))
        if event.fields:
            extra = "".join(f" {_clean(str(k))}={_value(v)}" for k, v in event.fields.items())
            segs.append((extra, _DIM))
        return segs

    def render(self, event: LogEvent) -> Text:
        """The line as a rich Text (for a rich Console/Live); no markup parsing."""
        text = Text(no_wrap=True, end="")
        for piece, style in self.segments(event):
            text.append(piece, style)
        return text

    def format(self, event: LogEvent) -> str:
        """The exact line emit() writes, newline included."""
        segs = self.segments(event)
        colors = self._colors
        if colors is None:
            return "".join(piece for piece, _ in segs) + "\n"
        return "".join(style.render(p, color_system=colors) if style else p for p, style in segs) + "\n"

    def emit(self, event: LogEvent) -> None:
        if _rank(event.level) >= self.min_rank:
            self._write(self.format(event))


# ------------------------------------------------------------------ JSON view

_CORE_KEYS = frozenset({"time", "level", "source", "message", "function_id", "trace_id", "stream"})


class JsonLogView(_Sink):
    """One JSON object per line: time (ISO-8601 UTC, ms), level, source, message,
    function_id/trace_id/stream when set, then `fields`. A field that collides
    with a core key is written with a leading underscore ("_level")."""

    def __init__(self, file: TextIO | None = None, *, level: str = "info"):
        super().__init__(file, level)
        self._sec = -1
        self._stamp = ""

    def format(self, event: LogEvent) -> str:
        t = event.time
        sec = int(t)
        if sec != self._sec:
            self._sec, self._stamp = sec, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
        record: dict[str, object] = {
            "time": f"{self._stamp}.{int((t - sec) * 1000):03d}Z",
            "level": event.level,
            "source": event.source,
            "message": event.message,
        }
        if event.function_id is not None:
            record["function_id"] = event.function_id
        if event.trace_id is not None:
            record["trace_id"] = event.trace_id
        if event.stream is not None:
            record["stream"] = event.stream
        for key, value in event.fields.items():
            key = str(key)
            record["_" + key if key in _CORE_KEYS else key] = value
        return json.dumps(record, ensure_ascii=False, default=str, separators=(",", ":")) + "\n"

    def emit(self, event: LogEvent) -> None:
        if _rank(event.level) >= self.min_rank:
            self._write(self.format(event))


def make_log_view(fmt: str = "pretty", level: str = "info", file: TextIO | None = None) -> LogView:
    """The view for `--log-format` / `--log-level`; ValueError naming a bad value."""
    name = fmt.strip().lower()
    if name == "pretty":
        return RichLogView(file, level=level)
    if name == "json":
        return JsonLogView(file, level=level)
    raise ValueError(f"unknown log format {fmt!r} (expected one of: {', '.join(FORMATS)})")


# ------------------------------------------------------------ logging bridge


def _level_from_logging(levelno: int) -> str:
    if levelno >= logging.ERROR:
        return "error"
    if levelno >= logging.WARNING:
        return "warn"
    if levelno >= logging.INFO:
        return "info"
    return "debug"


class LogViewHandler(logging.Handler):
    """Forward stdlib logging (asyncio, aiohttp, ...) into a LogView.

    Source is `source` if given (the logger name then goes into fields) else
    the logger name. `extra={"function_id": ..., "trace_id": ..., "fields": {...}}`
    on a log call is carried over.
    """

    def __init__(self, view: LogView, *, source: str | None = None, level: int = logging.NOTSET):
        super().__init__(level)
        self.view = view
        self.source = source

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fields: dict[str, object] = {}
            extra = getattr(record, "fields", None)
            if isinstance(extra, Mapping):
                fields.update(extra)
            if self.source is not None and record.name != self.source:
                fields.setdefault("logger", record.name)
            self.view.emit(
                LogEvent(
                    level=_level_from_logging(record.levelno),
                    source=self.source or record.name,
                    message=self.format(record),
                    time=record.created,
                    function_id=getattr(record, "function_id", None),
                    trace_id=getattr(record, "trace_id", None),
                    fields=fields,
                )
            )
        except Exception:
            self.handleError(record)


__all__ = [
    "FORMATS",
    "LEVELS",
    "JsonLogView",
    "LogEvent",
    "LogView",
    "LogViewHandler",
    "RichLogView",
    "make_log_view",
    "normalize_level",
]
