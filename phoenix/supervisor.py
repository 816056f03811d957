"""`phoenix serve --workers N --broker URL`: one engine and N gateways on one port
(SO_REUSEPORT: the kernel spreads connections over the gateways), as child processes.

SIGTERM, SIGINT or SIGHUP is passed on to every child (each gateway closes its clients
with 1001) and the supervisor exits 0 once they have. A child that dies on its own is
started again, after a second and then after longer and longer waits (at most 30 s) while
it keeps dying: a child that cannot start while Redis is away comes back with it, and
the others keep their clients meanwhile. The broker URL reaches the children in their
environment (PHOENIX_BROKER__URL), never in their arguments, where `ps` would show a
password in it.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

from phoenix.config import Config

log = logging.getLogger("phoenix.supervisor")

RESTART_DELAY = 1.0  # seconds before a child that died is started again, doubled while
MAX_DELAY = 30.0  # it keeps dying (it lived less than STABLE), up to this
STABLE = 60.0
STOP_TIMEOUT = 15.0


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    delay: float = RESTART_DELAY
    due: float = 0.0  # when to start it again

    def start(self) -> None:
        self.proc = subprocess.Popen(self.argv, env=self.env)
        self.started = time.monotonic()
        log.info("%s started (pid %d)", self.name, self.proc.pid)


def supervise(engine: list[str], gateway: list[str], workers: int, config: Config) -> int:
    exe = [sys.executable, "-m", "phoenix"]
    env = {**os.environ, "PHOENIX_BROKER__URL": str(config.broker.url)}
    children = [Child("engine", [*exe, "engine", *engine], env)]
    for i in range(workers):
        argv = [*exe, "gateway", *gateway, "--index", str(i), "--reuse-port"]
        children.append(Child(f"gateway {i}", argv, env))
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
                child.proc = None
                # Dying again soon after a start: wait longer before the next one.
                lived = now - child.started
                child.delay = RESTART_DELAY if lived > STABLE else min(child.delay * 2, MAX_DELAY)
                child.due = now + child.delay
                log.error(
                    "%s (pid %d) exited with %s; starting it again in %g s",
                    child.name,
                    proc.pid,
                    proc.returncode,
                    child.delay,
                )
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
