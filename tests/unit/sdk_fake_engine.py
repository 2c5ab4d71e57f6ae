"""A stand-in for the engine in SDK tests: a real child process over real pipes.

The test plays the engine by writing NDJSON to the worker's stdin and reading
its stdout. Every wait is bounded; nothing sleeps.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path

SDK_PATH = str(Path(__file__).resolve().parents[2] / "sdk" / "python")
TIMEOUT = 5.0


def worker_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [SDK_PATH, env.get("PYTHONPATH")]))
    env["III_PROTOCOL"] = "stdio-jsonrpc"
    env["III_WORKER_NAME"] = "test-worker"
    env["III_ENGINE_PID"] = str(os.getpid())
    env["III_ENGINE_URL"] = "stdio://"
    env.update(extra)
    return env


class FakeEngine:
    """Runs ``script`` as a worker and speaks the engine's side of the protocol."""

    def __init__(self, script: Path, **env: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(script)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=worker_env(**env),
        )
        self._lines: queue.Queue[bytes | None] = queue.Queue()
        self._stderr: list[bytes] = []
        self.raw_stdout: list[bytes] = []
        self._stdout_thread = threading.Thread(target=self._pump_stdout, daemon=True)
        self._stderr_thread = threading.Thread(target=self._pump_stderr, daemon=True)
        self._stdout_thread.start()
        self._stderr_thread.start()

    def _pump_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.raw_stdout.append(line)
            self._lines.put(line)
        self._lines.put(None)

    def _pump_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._stderr.append(line)

    # -- engine -> worker ---------------------------------------------------------------

    def send_raw(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def send(self, message: object) -> None:
        line = json.dumps(message, ensure_ascii=False, separators=(",", ":"))
        self.send_raw(line.encode() + b"\n")

    def invoke(self, inv_id: str, function_id: str, data: object = None, **extra: object) -> None:
        params = {"function_id": function_id, "data": data, **extra}
        self.send({"jsonrpc": "2.0", "id": inv_id, "method": "invoke", "params": params})

    def reply(self, request: dict, result: object = None) -> None:
        self.send({"jsonrpc": "2.0", "id": request["id"], "result": result})

    def reply_error(self, request: dict, code: str, message: str) -> None:
        error = {"code": -32000, "message": message, "data": {"code": code}}
        self.send({"jsonrpc": "2.0", "id": request["id"], "error": error})

    def close_stdin(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()

    # -- worker -> engine ---------------------------------------------------------------

    def recv(self, timeout: float = TIMEOUT) -> object:
        """The next message the worker wrote; every stdout line must be JSON."""
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(
                f"no message from worker within {timeout}s; stderr:\n{self.stderr()}"
            ) from None
        if line is None:
            raise AssertionError(f"worker closed stdout; stderr:\n{self.stderr()}")
        assert line.endswith(b"\n")
        return json.loads(line)

    def expect(self, method: str, *, request: bool = True) -> dict:
        message = self.recv()
        assert isinstance(message, dict), message
        assert message.get("method") == method, message
        assert message["jsonrpc"] == "2.0"
        assert ("id" in message) is request, message
        return message

    def response(self, inv_id: object) -> dict:
        message = self.recv()
        assert isinstance(message, dict) and message.get("id") == inv_id, message
        assert message["jsonrpc"] == "2.0"
        return message

    def handshake(self) -> list[dict]:
        """Accept every registration until ``ready``; return the registration requests."""
        registrations = []
        while True:
            message = self.recv()
            assert isinstance(message, dict), message
            if message.get("method") == "ready":
                assert "id" not in message and message.get("params") == {}
                return registrations
            assert "id" in message, message
            registrations.append(message)
            result = (
                {"id": message["params"].get("id") or "trg-1"}
                if message["method"] == "register_trigger"
                else None
            )
            self.reply(message, result)

    # -- process --------------------------------------------------------------------------

    def wait(self, timeout: float = TIMEOUT) -> int:
        return self.proc.wait(timeout=timeout)

    def stderr(self, timeout: float = 0.0) -> str:
        if timeout:
            self._stderr_thread.join(timeout)
        return b"".join(self._stderr).decode(errors="replace")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=TIMEOUT)
        self._stdout_thread.join(TIMEOUT)  # the pumps end at EOF; close their files only after
        self._stderr_thread.join(TIMEOUT)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass
