"""`phoenix serve --workers N --broker URL`: one engine and N gateways on one port
(SO_REUSEPORT: the kernel spreads connections over the gateways), as child processes.

SIGTERM, SIGINT or SIGHUP is passed on to every child (each gateway closes its clients
with 1001) and the supervisor exits 0 once they have. A child that dies on its own is
started again after a second, so a crashed gateway's clients come back on the others
and then on it; one that keeps dying (5 times within a minute) ends the whole.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field

from phoenix.config import Config

log = logging.getLogger("phoenix.supervisor")

RESTART_DELAY = 1.0
MAX_RESTARTS = 5  # within RESTART_WINDOW seconds, per child
RESTART_WINDOW = 60.0
STOP_TIMEOUT = 15.0


@dataclass
class Child:
    name: str
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = None
    deaths: deque[float] = field(default_factory=deque)
    due: float = 0.0  # when to start it again

    def start(self) -> None:
        self.proc = subprocess.Popen(self.argv)
        log.info("%s started (pid %d)", self.name, self.proc.pid)


def supervise(engine: list[str], gateway: list[str], workers: int, config: Config) -> int:
    exe = [sys.executable, "-m", "phoenix"]
    children = [Child("engine", [*exe, "engine", *engine])]
    for i in range(workers):
        argv = [*exe, "gateway", *gateway, "--index", str(i), "--reuse-port"]
        children.append(Child(f"gateway {i}", argv))
    stopping: list[int] = []

    def stop(signum: int, frame: object) -> None:
        if not stopping:
            stopping.append(signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, stop)
    log.info(
        "one engine and %d gateways on %s:%d, broker namespace %r",
        workers,
        config.server.host,
        config.server.port,
        config.broker.namespace,
    )
    for child in children:
        child.start()
    code = 0
    while not stopping:
        time.sleep(0.2)
        now = time.monotonic()
        for child in children:
            proc = child.proc
            if proc is not None and proc.poll() is not None:
                log.error("%s (pid %d) exited with %s", child.name, proc.pid, proc.returncode)
                child.proc = None
                child.deaths.append(now)
                while child.deaths and child.deaths[0] < now - RESTART_WINDOW:
                    child.deaths.popleft()
                if len(child.deaths) >= MAX_RESTARTS:
                    log.error("%s keeps exiting; stopping everything", child.name)
                    stopping.append(signal.SIGTERM)
                    code = 1
                    break
                child.due = now + RESTART_DELAY
            elif proc is None and now >= child.due:
                child.start()
    for child in children:
        if child.proc is not None and child.proc.poll() is None:
            child.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    for child in children:
        if child.proc is None:
            continue
        try:
            child.proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.error("%s did not stop in time; killing it", child.name)
            child.proc.kill()
            child.proc.wait()
            code = 1
    log.info("stopped")
    return code
