"""Log view layout, safety, colours, filtering, JSON lines and the logging bridge."""

from __future__ import annotations

import io
import json
import logging
import re
import threading
import time
from datetime import UTC, datetime

import pytest
from rich.console import Console

from supervisor.logview import (
    JsonLogView,
    LogEvent,
    LogViewHandler,
    RichLogView,
    make_log_view,
)

T0 = datetime(2024, 5, 6, 7, 8, 9, 123_000, tzinfo=UTC).timestamp() + 0.0004
LOCAL_HMS = time.strftime("%H:%M:%S", time.localtime(int(T0)))
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def plain(**kw: object) -> tuple[RichLogView, io.StringIO]:
    out = io.StringIO()
    return RichLogView(out, force_color=False, **kw), out  # type: ignore[arg-type]


def ev(message: str = "hello", **kw: object) -> LogEvent:
    kw.setdefault("level", "info")
    kw.setdefault("source", "api")
    kw.setdefault("time", T0)
    return LogEvent(message=message, **kw)  # type: ignore[arg-type]


def test_plain_layout() -> None:
    view, out = plain()
    view.emit(ev("GET /users 200", function_id="users.list", trace_id="0123456789abcdef", fields={"ms": 3}))
    assert out.getvalue() == f"{LOCAL_HMS}.123 INFO  [api] users.list 01234567 GET /users 200 ms=3\n"


def test_levels_sources_and_alignment() -> None:
    view, out = plain(level="debug")
    view.emit(ev("a", level="error", source="engine"))
    view.emit(ev("b", level="warn", source="worker-1"))
    view.emit(ev("c", level="debug", source="api"))
    lines = out.getvalue().splitlines()
    assert lines[0].endswith("ERROR [engine] a")
    assert lines[1].endswith("WARN  [worker-1] b")
    assert lines[2].endswith("DEBUG [api]      c")  # padded to the widest source so far


def test_field_values_are_quoted_when_ambiguous() -> None:
    view, out = plain()
    view.emit(ev("m", fields={"a": "two words", "b": "", "c": 'x"y', "d": None, "e": [1, 2],
                              "f": {"ok": True, "n": None, "s": "été"}}))
    # structured values read as the JSON the worker sent, not as Python's repr
    assert out.getvalue().rstrip("\n").endswith(
        ' m a="two words" b="" c="x\\"y" d=null e=[1,2] f={"ok":true,"n":null,"s":"été"}')


def test_multiline_message_is_indented_under_the_message() -> None:
    view, out = plain()
    view.emit(ev("Traceback:\n  File x\nValueError"))
    first, second, third = out.getvalue().splitlines()
    column = first.index("Traceback")
    assert second == " " * column + "  File x"
    assert third == " " * column + "ValueError"


@pytest.mark.parametrize("color", [False, True])
def test_worker_text_is_never_markup(color: bool) -> None:
    out = io.StringIO()
    view = RichLogView(out, force_color=color)
    view.emit(ev("[red]not red[/] [bold]x[/bold] [link=http://e]y[/link] \\[z]", source="[b]w[/b]"))
    text = ANSI.sub("", out.getvalue())
    assert "[[b]w[/b]] [red]not red[/] [bold]x[/bold] [link=http://e]y[/link] \\[z]\n" in text
    assert view.render(ev("[red]x[/]")).plain.endswith("[red]x[/]")


def test_control_sequences_are_neutralised() -> None:
    view, out = plain()
    view.emit(ev("\x1b[31mred\x1b[0m \x1b[2J\x1b]0;title\x07done\x00\x7f\tend\r\n"))
    view.emit(ev("progress 10%\rprogress 50%\rprogress 100%"))
    first, second = out.getvalue().splitlines(keepends=True)
    assert first.endswith(" red done\\x00\\x7f\tend\n")
    assert second.endswith("] progress 100%\n")
    assert "\x1b" not in first


def test_level_filtering() -> None:
    view, out = plain(level="warn")
    for level in ("debug", "info", "warn", "error"):
        view.emit(ev(level, level=level))
    assert [line.split()[1] for line in out.getvalue().splitlines()] == ["WARN", "ERROR"]
    assert view.enabled("error") and not view.enabled("info")


def test_colours_are_stable_per_source_and_engine_is_neutral() -> None:
    out = io.StringIO()
    view = RichLogView(out, force_color=True)
    assert view.color
    for name in ("api", "worker-1", "api", "engine", "worker-1"):
        view.emit(ev("x", source=name))
    codes = [re.search(r"(\x1b\[[0-9;]*m)\[", line).group(1) for line in out.getvalue().splitlines()]  # type: ignore[union-attr]
    api, worker, api_again, engine, worker_again = codes
    assert api == api_again and worker == worker_again and api != worker
    assert engine == "\x1b[1m"
    # A "restarted" worker keeps its colour even after many others appeared.
    style = view.source_style("api")
    for i in range(30):
        view.source_style(f"other-{i}")
    assert view.source_style("api") is style


def test_level_colours_and_stderr_prefix_bold() -> None:
    out = io.StringIO()
    view = RichLogView(out, force_color=True, level="debug")
    view.emit(ev("e", level="error"))
    view.emit(ev("w", level="warn"))
    view.emit(ev("s", stream="stderr"))
    error, warn, stderr = out.getvalue().splitlines()
    assert "\x1b[1;31mERROR" in error
    assert "\x1b[33mWARN" in warn
    assert re.search(r"\x1b\[1;36m\[api\]", stderr)


def test_render_returns_rich_text_with_same_layout() -> None:
    view, _ = plain()
    event = ev("hi", fields={"k": 1})
    text = view.render(event)
    assert text.plain + "\n" == view.format(event)
    console = Console(file=io.StringIO(), force_terminal=True, width=200)
    console.print(text)


def test_auto_colour_off_for_non_tty_and_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not RichLogView(io.StringIO()).color
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("FORCE_COLOR", "1")
    assert not RichLogView(io.StringIO()).color


def test_one_write_per_event_under_concurrency() -> None:
    class Recorder(io.StringIO):
        writes: list[str] = []

        def write(self, s: str) -> int:
            self.writes.append(s)
            return super().write(s)

    out = Recorder()
    view = RichLogView(out, force_color=True)

    def spam(name: str) -> None:
        for i in range(200):
            view.emit(ev(f"line {i}", source=name, fields={"i": i}))

    threads = [threading.Thread(target=spam, args=(f"w{n}",)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert len(out.writes) == 800
    assert all(w.endswith("\n") and w.count("\n") == 1 for w in out.writes)


def test_write_errors_are_swallowed() -> None:
    out = io.StringIO()
    out.close()
    RichLogView(out, force_color=False).emit(ev())
    JsonLogView(out).emit(ev())


def test_json_lines() -> None:
    out = io.StringIO()
    view = JsonLogView(out, level="debug")
    view.emit(
        ev("hi [red]", stream="stderr", trace_id="t1", function_id="f.x", fields={"n": 1, "level": "x"})
    )
    view.emit(ev("plain", level="debug", fields={"obj": object()}))
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first == {
        "time": "2024-05-06T07:08:09.123Z",
        "level": "info",
        "source": "api",
        "message": "hi [red]",
        "function_id": "f.x",
        "trace_id": "t1",
        "stream": "stderr",
        "n": 1,
        "_level": "x",
    }
    assert set(second) == {"time", "level", "source", "message", "obj"}
    assert second["obj"].startswith("<object object")


def test_json_level_filter() -> None:
    out = io.StringIO()
    view = JsonLogView(out, level="error")
    view.emit(ev(level="warn"))
    view.emit(ev(level="error"))
    assert len(out.getvalue().splitlines()) == 1


def test_make_log_view() -> None:
    out = io.StringIO()
    assert isinstance(make_log_view("pretty", "info", out), RichLogView)
    assert isinstance(make_log_view("JSON", "warning", out), JsonLogView)
    with pytest.raises(ValueError, match="'yaml'"):
        make_log_view("yaml", "info", out)
    with pytest.raises(ValueError, match="'loud'"):
        make_log_view("pretty", "loud", out)


def test_default_file_is_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    RichLogView(force_color=False).emit(ev("to stderr"))
    captured = capsys.readouterr()
    assert captured.out == "" and "to stderr" in captured.err


def test_logging_bridge() -> None:
    out = io.StringIO()
    view = JsonLogView(out, level="debug")
    logger = logging.getLogger("test_logview.bridge")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    handler = LogViewHandler(view)
    logger.addHandler(handler)
    try:
        logger.debug("d %s", 1)
        logger.warning("careful", extra={"trace_id": "abc", "fields": {"port": 80}})
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("failed")
        handler.source = "engine"
        logger.critical("c")
    finally:
        logger.removeHandler(handler)
    d, w, e, c = (json.loads(line) for line in out.getvalue().splitlines())
    assert (d["level"], d["source"], d["message"]) == ("debug", "test_logview.bridge", "d 1")
    assert (w["level"], w["trace_id"], w["port"]) == ("warn", "abc", 80)
    assert e["level"] == "error" and e["message"].startswith("failed\nTraceback")
    assert "ValueError: boom" in e["message"]
    assert (c["level"], c["source"], c["logger"]) == ("error", "engine", "test_logview.bridge")


def test_emit_cost_plain_non_tty() -> None:
    view, _ = plain()
    events = [ev(f"GET /users/{i} 200", source=f"w{i % 3}", fields={"ms": i}) for i in range(2000)]
    started = time.perf_counter()
    for event in events:
        view.emit(event)
    per_event = (time.perf_counter() - started) / len(events)
    print(f"\nRichLogView plain emit: {per_event * 1e6:.1f} us/event")
    assert per_event < 200e-6
