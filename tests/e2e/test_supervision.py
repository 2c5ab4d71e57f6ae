"""Crash restart with backoff, FATAL, reload on save without failed requests, clean shutdown."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import httpx

from tests.e2e.conftest import alive, api_config, wait_until

VERSIONED = '''
import os
from iii_stdio import Worker

VERSION = "v1"
worker = Worker()

@worker.http("GET", "/version", function_id="http::version")
def version(req):
    return {"body": {"version": VERSION, "pid": os.getpid()}}

@worker.http("GET", "/die", function_id="http::die")
def die(req):
    os._exit(7)

worker.run()
'''


def test_crash_mid_request_fails_at_once_then_restarts(start_engine):
    exec_cfg = """
    - class: modules::shell::ExecModule
      config:
        name: app
        exec: ["python app.py"]
    """
    engine = start_engine(api_config(exec_cfg), {"app.py": VERSIONED})
    engine.wait_message("worker ready", source="app")
    with httpx.Client(base_url=engine.http_url, timeout=10) as client:
        first_pid = client.get("/version").json()["pid"]
        t0 = time.monotonic()
        r = client.get("/die")
        assert r.status_code == 502, r.text
        assert r.json()["error"]["code"] == "invocation_stopped"
        assert "exit code 7" in r.json()["error"]["message"]
        assert time.monotonic() - t0 < 2.0  # nobody waits for the 30 s timeout
        engine.wait_message("exited with exit code 7", source="app")
        # A request made right after the crash is held and served by the restarted instance.
        r = client.get("/version")
        assert r.status_code == 200, r.text
        assert r.json()["pid"] != first_pid


def test_crash_loop_backs_off_then_fatal(start_engine):
    crasher = "import sys\nprint('starting up', file=sys.stderr)\nsys.exit(3)\n"
    exec_cfg = """
    - class: modules::shell::ExecModule
      config:
        name: crashy
        exec: ["python crash.py"]
        max_restarts: 3
        backoff_base_ms: 100
        watch: ["*.py"]
    """
    engine = start_engine(api_config(exec_cfg), {"crash.py": crasher})
    fatal = engine.wait_message("FATAL", source="crashy", timeout=20)
    restarts = [e for e in engine.events if e.get("source") == "crashy" and "restarting in" in e["message"]]
    assert len(restarts) == 3
    assert all("exited with exit code 3" in e["message"] for e in restarts)
    delays = [float(e["message"].split("restarting in ")[1].split(" s")[0]) for e in restarts]
    assert delays[0] == 0.0 and 0.07 <= delays[1] <= 0.13 and 0.15 <= delays[2] <= 0.25
    assert "gave up after 3 restarts" in fatal["message"] and "save a watched file" in fatal["message"]
    assert fatal["level"] == "error"
    # The worker's own stderr is shown, attributed to it.
    assert any(e.get("source") == "crashy" and e.get("stream") == "stderr" and e["message"] == "starting up"
               for e in engine.events)
    # A fixed file brings it back from FATAL.
    mark = engine.cursor()
    Path(engine.app_dir, "crash.py").write_text("import time\ntime.sleep(600)\n")
    engine.wait_message("starting again: crash.py changed", source="crashy", after=mark)
    assert not [e for e in engine.events[:mark] if "starting again" in str(e.get("message"))], engine.log_text()
    engine.wait_message("started", source="crashy", after=mark)


def test_reload_on_save_serves_new_code_without_failing_requests(start_engine):
    exec_cfg = """
    - class: modules::shell::ExecModule
      config:
        name: app
        exec: ["python app.py"]
        watch: ["**/*.py"]
    """
    engine = start_engine(api_config(exec_cfg), {"app.py": VERSIONED})
    engine.wait_message("worker ready", source="app")
    url = engine.http_url
    failures: list[str] = []
    versions: list[str] = []
    stop = threading.Event()

    def hammer() -> None:
        with httpx.Client(base_url=url, timeout=10) as client:
            while not stop.is_set():
                r = client.get("/version")
                if r.status_code != 200:
                    failures.append(f"{r.status_code} {r.text}")
                else:
                    versions.append(r.json()["version"])

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    wait_until(lambda: len(versions) > 20, what="traffic before the edit")
    mark = engine.cursor()
    app = Path(engine.app_dir, "app.py")
    for _ in range(3):  # a burst of saves is one reload
        app.write_text(VERSIONED.replace('"v1"', '"v2"'))
    engine.wait_message("reloading: app.py changed", source="app", after=mark)
    wait_until(lambda: versions[-1:] == ["v2"], what="new code served")
    count = len(versions)
    wait_until(lambda: len(versions) > count + 20, what="traffic after the reload")
    stop.set()
    for t in threads:
        t.join(10)
    assert failures == []
    reloads = [e for e in engine.events[mark:] if "reloading" in str(e.get("message"))]
    assert len(reloads) == 1


def test_sigterm_stops_every_child(start_engine):
    # one write(2) per line: print() may write the text and the newline separately, and the two
    # children share the pipe, so their lines could interleave into one
    stubborn = ("import os, signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                "os.write(2, b'ignoring SIGTERM\\n')\ntime.sleep(600)\n")
    cfgs = [
        """
    - class: modules::shell::ExecModule
      config:
        name: app
        exec: ["python app.py"]
    """,
        """
    - class: modules::shell::ExecModule
      config:
        name: stubborn
        exec: ["python stubborn.py & python stubborn.py; wait"]
        stop_timeout: 0.5
    """,
    ]
    engine = start_engine(api_config(*cfgs), {"app.py": VERSIONED, "stubborn.py": stubborn})
    engine.wait_message("worker ready", source="app")
    wait_until(lambda: len(engine.children()) >= 5, what="children to start")  # guardian, app, sh + 2 stubborn
    engine.wait_for(lambda e: sum(1 for x in engine.events if x.get("message") == "ignoring SIGTERM") >= 2,
                    what="both stubborn children to ignore SIGTERM")
    pids = [p.pid for p in engine.children()]
    engine.signal(signal.SIGTERM)
    assert engine.wait_exit(20) == 0
    engine.wait_message("did not stop within 0.5 s of SIGTERM; killed", source="stubborn")
    wait_until(lambda: not any(alive(p) for p in pids), timeout=5, what="all children gone")


def test_sigkill_of_engine_leaves_no_child(start_engine):
    stubborn = ("import signal, sys, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                "sys.stdin.close()\ntime.sleep(600)\n")
    cfg = """
    - class: modules::shell::ExecModule
      config:
        name: stubborn
        exec: ["python stubborn.py"]
    """
    cfg2 = """
    - class: modules::shell::ExecModule
      config:
        name: app
        exec: ["python app.py"]
    """
    engine = start_engine(api_config(cfg, cfg2), {"stubborn.py": stubborn, "app.py": VERSIONED})
    engine.wait_message("worker ready", source="app")
    engine.wait_message("started", source="stubborn")
    wait_until(lambda: len(engine.children()) >= 3, what="children to start")
    pids = [p.pid for p in engine.children()]
    engine.signal(signal.SIGKILL)
    engine.wait_exit(5)
    wait_until(lambda: not any(alive(p) for p in pids), timeout=10, what="children to die with the engine")
