"""Run the real `phoenix` command as a subprocess, for tests of the CLI, signals and logs."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from .conftest import SECRET

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def env(**extra: str) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("PHOENIX_")}
    e["PHOENIX_JWT_SECRET"] = SECRET
    e.update(extra)
    return e


def run(*args: str, timeout: float = 60, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "phoenix", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=kw.pop("cwd", ROOT),  # type: ignore[arg-type]
        env=kw.pop("env", env()),  # type: ignore[arg-type]
    )


class PhoenixProcess:
    """A `phoenix` command running in the background, its output in a file; stopped by
    PID."""

    def __init__(
        self,
        argv: list[str],
        port: int | None,
        environ: dict[str, str] | None = None,
        preexec_fn: Callable[[], object] | None = None,  # e.g. a lower RLIMIT_NOFILE
    ):
        self.port = port
        # A file, not a pipe: a pipe nobody reads fills up and blocks the server's logging.
        self._log = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "phoenix", *argv],
            cwd=ROOT,
            env=environ or env(),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            text=True,
            preexec_fn=preexec_fn,
        )
        self.output = ""

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if not self._log.closed:
            self._log.seek(0)
            self.output = self._log.read()
            self._log.close()
        return self.output


class ServerProcess(PhoenixProcess):
    """`phoenix serve` on a free loopback port."""

    def __init__(
        self,
        *args: str,
        port: int | None = None,
        environ: dict[str, str] | None = None,
        preexec_fn: Callable[[], object] | None = None,
    ):
        port = port or free_port()
        super().__init__(["serve", "--port", str(port), *args], port, environ, preexec_fn)

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited: {self.stop()}")
            try:
                with urllib.request.urlopen(self.base + "/health", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"server not ready: {self.stop()}")
