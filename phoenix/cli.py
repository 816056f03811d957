"""The `phoenix` command: serve, engine, gateway, record, simulate, token, check,
scenarios, config.

Parsing argv lives here and only here; every command ends in a call to a function that
takes plain values (create_app takes a Config, never argv).
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import gc
import json
import logging
import math
import os
import re
import signal
import sys
import time
from pathlib import Path
from typing import IO, Any

from phoenix.auth import MAX_SUB_LENGTH as MAX_SUB  # the server refuses a longer `sub`
from phoenix.config import SCHEMA, Config, ConfigError, load_config, parse_config
from phoenix.replay import ReplayError
from simulator.clock import format_duration, parse_duration, parse_start, rfc3339
from simulator.scenario import ScenarioError

DEFAULT_CONFIG = "config.yaml"
MAX_TTL = 315_360_000  # seconds: a token lives at most 10 years


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except (ConfigError, ScenarioError, ReplayError) as exc:
        print(f"phoenix: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="phoenix",
        description="A deterministic simulator of a Phoenix fleet that speaks the Phoenix "
        "WebSocket API.",
    )
    p.add_argument("--version", action="version", version=f"phoenix {_version()}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("serve", help="run the server (WebSocket API, HTTP API, page)")
    _config_arg(s)
    s.add_argument("--host", help="address to bind (default: server.host, 127.0.0.1)")
    s.add_argument("--port", type=int, help="port (default: server.port, 8080)")
    _scenario_args(s)
    s.add_argument("--speed", type=float, help="simulated seconds per wall second (1 = real time)")
    s.add_argument(
        "--rate",
        action="append",
        default=[],
        metavar="CHANNEL=N/s",
        help="set an event rate directly, e.g. agents=20000/s (repeatable)",
    )
    s.add_argument("--replay", metavar="FILE.jsonl", help="serve a recorded stream instead")
    s.add_argument(
        "--loop",
        action=argparse.BooleanOptionalAction,
        help="start the scenario (or replay) over when it ends (default: simulation.loop, on)",
    )
    _log_args(s)
    s.add_argument(
        "--broker",
        metavar="URL",
        help="redis://HOST:PORT/DB: run one engine and --workers gateways around it "
        "(default: broker.url; none: one process, everything in memory)",
    )
    s.add_argument(
        "--workers",
        type=int,
        help="gateways on this port (SO_REUSEPORT), with --broker; 1 to 64 (default 1)",
    )
    s.set_defaults(run=_serve)

    s = sub.add_parser(
        "engine", help="run the simulation for gateways, publishing to a broker (scaling out)"
    )
    _config_arg(s)
    _scenario_args(s)
    s.add_argument("--speed", type=float, help="simulated seconds per wall second (1 = real time)")
    s.add_argument("--rate", action="append", default=[], metavar="CHANNEL=N/s")
    s.add_argument("--replay", metavar="FILE.jsonl", help="publish a recorded stream instead")
    s.add_argument("--loop", action=argparse.BooleanOptionalAction, help="as for serve")
    s.add_argument("--broker", metavar="URL", help="redis://HOST:PORT/DB (default: broker.url)")
    _log_args(s)
    s.set_defaults(run=_engine)

    s = sub.add_parser(
        "gateway", help="serve /ws, the API and the page from a broker's engine (scaling out)"
    )
    _config_arg(s)
    s.add_argument("--host", help="address to bind (default: server.host, 127.0.0.1)")
    s.add_argument("--port", type=int, help="port (default: server.port, 8080)")
    s.add_argument("--broker", metavar="URL", help="redis://HOST:PORT/DB (default: broker.url)")
    s.add_argument(
        "--index",
        type=int,
        default=0,
        help="this gateway's number, 0 to 1023, in the seeds of its delivery faults (default 0)",
    )
    s.add_argument(
        "--reuse-port",
        action="store_true",
        help="share the port with other gateways on this machine (SO_REUSEPORT)",
    )
    _log_args(s)
    s.set_defaults(run=_gateway)

    s = sub.add_parser(
        "record", help="record the events of any server that speaks this API, for --replay"
    )
    s.add_argument("url", help="ws://HOST:PORT/ws?token=JWT")
    s.add_argument("--channels", default=",".join(_channels()), help="comma-separated (all)")
    s.add_argument("--filters", action="append", default=[], metavar="KEY=VALUE", help="repeatable")
    s.add_argument("--out", default="-", help="JSON Lines file, or - for stdout (default)")
    s.add_argument("--duration", help="stop after this long, e.g. 10m (default: until closed)")
    s.set_defaults(run=_record)

    s = sub.add_parser("simulate", help="run a scenario headless, as fast as it can")
    _scenario_args(s)
    s.add_argument("--duration", default="30m", help="simulated time to run (default 30m)")
    s.add_argument("--out", default="-", help="JSON Lines file, or - for stdout (default)")
    s.add_argument("--rate", action="append", default=[], metavar="CHANNEL=N/s")
    s.set_defaults(run=_simulate)

    s = sub.add_parser("token", help="print a JWT signed with the configured secret")
    _config_arg(s)
    s.add_argument(
        "--sub", default="dev", help=f"the token's subject (user), 1 to {MAX_SUB} characters"
    )
    s.add_argument(
        "--ttl",
        default="3600",
        help=f"seconds until it expires, 1 to {MAX_TTL} (10 years); default 3600",
    )
    s.add_argument("--role", choices=["viewer", "admin"], help="role claim (admin: controls)")
    s.add_argument("--channels", help="comma-separated channels the token may subscribe to")
    s.add_argument(
        "--count",
        type=int,
        default=1,
        help="print this many tokens, one a line, for users SUB-1 ... SUB-N (load tests; "
        "at most 100000)",
    )
    s.add_argument(
        "--decode",
        metavar="TOKEN",
        help="say what the server would make of TOKEN (with this config's secret) instead; "
        "exit 1 if it would refuse it",
    )
    s.set_defaults(run=_token)

    s = sub.add_parser("check", help="validate the config (and a scenario) without serving")
    _config_arg(s)
    s.add_argument("--scenario", help="also validate this scenario (name or path)")
    s.set_defaults(run=_check)

    s = sub.add_parser("scenarios", help="list the bundled scenarios")
    s.set_defaults(run=_scenarios)

    s = sub.add_parser("config", help="print the config")
    s.add_argument(
        "--defaults",
        action="store_true",
        required=True,
        help="the full default config, every key commented (the project's config.yaml)",
    )
    s.set_defaults(run=_config)
    return p


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("phoenix-simulator")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def _config_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        help=f"config file (default: ./{DEFAULT_CONFIG} if present, else built-in defaults)",
    )


def _log_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--log-format", choices=["text", "json"], default="text", help="log lines (default text)"
    )
    p.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        default="info",
        help="the least severe level logged (default info)",
    )


def _scenario_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scenario", help="bundled scenario name or path to a .yaml file")
    p.add_argument("--seed", type=int, help="random seed (default: the scenario's)")
    p.add_argument(
        "--start", help="simulated start time, RFC 3339, or now (default: the scenario's)"
    )


def _load(args: argparse.Namespace) -> Config:
    path = args.config
    if path is None and Path(DEFAULT_CONFIG).is_file():
        path = DEFAULT_CONFIG
    return load_config(path, os.environ)


def _overrides(config: Config, args: argparse.Namespace) -> Config:
    """Command-line values win over the file; the result is validated again as a whole."""
    server = {k: v for k in ("host", "port") if (v := getattr(args, k, None)) is not None}
    brokers = {"url": v} if (v := getattr(args, "broker", None)) is not None else {}
    sim = {
        k: v
        for k in ("scenario", "seed", "start", "speed", "loop")
        if (v := getattr(args, k, None)) is not None
    }
    given = {"server": server, "simulation": sim, "broker": brokers}
    # Every section, as the file and the environment made it (one left out would be
    # reset to its defaults), the command line's values on top.
    raw = {name: {**_asdict(getattr(config, name)), **given.get(name, {})} for name in SCHEMA}
    # The environment is already in `config` (file < environment < command line).
    return parse_config(raw, {})


def _configure_logs(args: argparse.Namespace) -> None:
    from phoenix import logs

    logs.configure(getattr(logging, args.log_level.upper()), args.log_format)


def _duration(text: str) -> float:
    """--duration, or a message that says what to write."""
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise ConfigError(f"--duration: {exc}") from None


def _asdict(section: object) -> dict[str, object]:
    """A section as a file gives it: lists, not the tuples it is kept as."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in vars(section).items()}


RATE = re.compile(r"^\s*([a-z-]+)\s*=\s*([0-9]+(?:\.[0-9]+)?)\s*(?:/s)?\s*$")


def parse_rates(values: list[str]) -> dict[str, float]:
    rates = {}
    for value in values:
        m = RATE.match(value)
        if m is None:
            raise ConfigError(f"--rate {value!r}: expected CHANNEL=N/s, e.g. agents=20000/s")
        rates[m.group(1)] = float(m.group(2))
    return rates


def _serve(args: argparse.Namespace) -> int:
    from phoenix.app import create_app
    from phoenix.keys import FEED

    config = _overrides(_load(args), args)
    if args.workers is not None and not 1 <= args.workers <= 64:
        raise ConfigError(f"--workers: expected 1 to 64 gateways, got {args.workers}")
    if config.broker.url is not None:
        return _serve_workers(args, config)
    if args.workers is not None:
        raise ConfigError(
            "--workers: gateways need a broker; add --broker redis://HOST:PORT/DB "
            "(README, Scaling out)"
        )
    rates = parse_rates(args.rate)
    _configure_logs(args)
    source, info = _source(args, config)
    app = create_app(config, source, info)
    for channel, rate in rates.items():
        app[FEED].source.set_rate(channel, rate)  # type: ignore[attr-defined]
    _started(config, app[FEED].state())
    return _run_app(app, config)


def _source(args: argparse.Namespace, config: Config) -> tuple[Any, Any]:
    """The scenario of the config, or --replay's recording (None, None: the config's)."""
    if not args.replay:
        return None, None
    from phoenix.feed import SourceInfo
    from phoenix.replay import ReplaySource

    if args.rate:
        raise ConfigError("--rate: a replayed stream plays at its recorded rate; use --speed")
    replay = ReplaySource(args.replay, loop=config.simulation.loop)
    return replay, SourceInfo("replay", replay.path.name)


def _started(config: Config, state: dict[str, Any]) -> None:
    base = _address(config)
    # What a newcomer needs next: where the page and the socket are, and how to get a token.
    logging.getLogger("phoenix").info(
        "serving scenario %s (seed %s, simulated time from %s, speed %g): page "
        "http://%s/ , WebSocket ws://%s/ws (the JWT goes in the `token` query parameter; "
        "print one with: %s token [--role admin])",
        state["scenario"],
        state["seed"],
        state["simulated_time"],
        state["speed"],
        base,
        base,
        _token_command(),
    )


def _address(config: Config) -> str:
    """host:port as it goes in a URL (an IPv6 address in brackets)."""
    host = f"[{config.server.host}]" if ":" in config.server.host else config.server.host
    return f"{host}:{config.server.port}"


def _serve_workers(args: argparse.Namespace, config: Config) -> int:
    """One engine and N gateways on one port, supervised (phoenix.supervisor)."""
    from phoenix.broker import check_reachable
    from phoenix.supervisor import supervise

    _configure_logs(args)
    asyncio.run(check_reachable(config.broker))
    common = ["--log-format", args.log_format, "--log-level", args.log_level]
    if args.config:
        common += ["--config", args.config]
    # The broker URL goes to the children in their environment, not their arguments:
    # a password in it would show in every `ps` on the machine.
    engine = [*common]
    for flag in ("scenario", "seed", "start", "speed", "replay"):
        if (value := getattr(args, flag)) is not None:
            engine += [f"--{flag}", str(value)]
    for rate in args.rate:
        engine += ["--rate", rate]
    if args.loop is not None:
        engine.append("--loop" if args.loop else "--no-loop")
    gateway = [*common, "--host", config.server.host, "--port", str(config.server.port)]
    workers = args.workers or 1
    return supervise(engine, gateway, workers, config)


def _engine(args: argparse.Namespace) -> int:
    from phoenix.app import reloader
    from phoenix.broker import check_reachable
    from phoenix.engine import EngineNode
    from phoenix.sources import source_from_config

    config = _overrides(_load(args), args)
    if config.broker.url is None:
        raise ConfigError("--broker: the engine publishes to a broker; give redis://HOST:PORT/DB")
    rates = parse_rates(args.rate)
    _configure_logs(args)
    source, info = _source(args, config)
    if source is None:
        source, info = source_from_config(config.simulation)
    for channel, rate in rates.items():
        source.set_rate(channel, rate)
    reload = reloader(config.simulation)
    node = EngineNode(config, source, info, reload)

    async def run() -> None:
        await check_reachable(config.broker)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.add_signal_handler(sig, node.stop)
        await node.run()
        logging.getLogger("phoenix").info("engine stopped")

    _freeze_heap()
    asyncio.run(run())
    return 0


def _gateway(args: argparse.Namespace) -> int:
    from phoenix.app import create_gateway
    from phoenix.broker import check_reachable, redact

    config = _overrides(_load(args), args)
    if config.broker.url is None:
        raise ConfigError("--broker: a gateway reads its engine from a broker; give redis://...")
    if not 0 <= args.index <= 1023:
        raise ConfigError(f"--index: expected 0 to 1023, got {args.index}")
    _configure_logs(args)
    asyncio.run(check_reachable(config.broker))
    app = create_gateway(config, args.index)
    base = _address(config)
    logging.getLogger("phoenix").info(
        "gateway %d of namespace %r at %s: page http://%s/ , WebSocket ws://%s/ws "
        "(print a token with: %s token)",
        args.index,
        config.broker.namespace,
        redact(config.broker.url),
        base,
        base,
        _token_command(),
    )
    return _run_app(app, config, reuse_port=args.reuse_port)


def _run_app(app: Any, config: Config, reuse_port: bool = False) -> int:
    from aiohttp import web

    from phoenix.app import AccessLogger

    _freeze_heap()
    # run_app handles SIGINT and SIGTERM; SIGHUP (the terminal went away, or a process
    # manager's stop) ends the server the same way: 1001 to every client, exit 0.
    loop = asyncio.new_event_loop()
    loop.add_signal_handler(signal.SIGHUP, _graceful_exit)
    try:
        web.run_app(
            app,
            host=config.server.host,
            port=config.server.port,
            access_log_class=AccessLogger,
            access_log=logging.getLogger("aiohttp.access") if config.server.access_log else None,
            print=None,
            shutdown_timeout=5.0,
            loop=loop,
            reuse_port=reuse_port or None,
        )
    except OSError as exc:
        where = f"{config.server.host}:{config.server.port}"
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"cannot listen on {where}: the address is in use; pick another with --port "
                "(or server.port) or stop what is using it"
            ) from None
        if exc.errno == errno.EADDRNOTAVAIL:
            raise ConfigError(
                f"cannot listen on {where}: {config.server.host} is not an address of this "
                "machine; pick another with --host (or server.host)"
            ) from None
        if exc.errno == errno.EACCES:
            raise ConfigError(
                f"cannot listen on {where}: permission denied (ports below 1024 need "
                "privileges); pick another with --port (or server.port)"
            ) from None
        raise
    return 0


def _token_command() -> str:
    """How this `phoenix` was started, to print a token with it."""
    exe = Path(sys.argv[0])
    if exe.name == "phoenix":
        return str(exe) if exe.parent != Path() else "phoenix"
    return f"{sys.executable} -m phoenix"


def _graceful_exit() -> None:
    from aiohttp import web

    raise web.GracefulExit()  # what run_app's own SIGINT/SIGTERM handler raises


def _freeze_heap() -> None:
    """Everything made so far (modules, the scenario, the fleet) lives as long as the
    process: out of the cyclic GC's sight, so that its full collections, set off by the
    many short-lived events, do not walk it again and again (firehose: about a quarter
    of `simulate`'s CPU time, bench/README.md)."""
    gc.collect()
    gc.freeze()


def _channels() -> tuple[str, ...]:
    from simulator.events import CHANNELS

    return CHANNELS


def _channel_list(text: str) -> list[str]:
    """--channels a,b: known channel names, at least one."""
    channels = [c.strip() for c in text.split(",") if c.strip()]
    unknown = [c for c in channels if c not in _channels()]
    if unknown or not channels:
        raise ConfigError(
            f"--channels: unknown {unknown}; valid: {', '.join(_channels())}"
            if unknown
            else f"--channels: expected some of {', '.join(_channels())}"
        )
    return channels


def _record(args: argparse.Namespace) -> int:
    from phoenix.record import RecordError, record

    channels = _channel_list(args.channels)
    filters = {}
    for item in args.filters:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--filters {item!r}: expected KEY=VALUE, e.g. agent_id=agent-1")
        filters[key] = value
    duration = None
    if args.duration is not None:
        duration = _duration(args.duration)
    if not args.url.startswith(("ws://", "wss://")):
        raise ConfigError("url: expected ws://HOST:PORT/ws?token=JWT (or wss://)")
    opened: list[IO[bytes]] = []

    def out() -> IO[bytes]:  # opened at the first event: a failed start erases nothing
        if not opened:
            opened.append(sys.stdout.buffer if args.out == "-" else open(args.out, "wb"))  # noqa: SIM115
        return opened[0]

    try:
        written = asyncio.run(record(args.url, channels, filters, out, duration))
    except RecordError as exc:
        raise ConfigError(str(exc)) from None
    except KeyboardInterrupt:
        written = -1
    finally:
        for f in opened:
            f.flush()
            if f is not sys.stdout.buffer:
                f.close()
    if written >= 0:
        print(f"{written} events written", file=sys.stderr)
    return 0


def _simulate(args: argparse.Namespace) -> int:
    from phoenix.protocol import event_frame
    from phoenix.sources import scenario_source

    duration = _duration(args.duration)
    if args.start is not None and args.start != "now":
        try:
            parse_start(args.start)  # the bounds every start has (config, API, scenario)
        except ValueError as exc:
            raise ConfigError(f"--start: {exc}") from None
    engine, _ = scenario_source(args.scenario or "demo", args.seed, args.start)
    _freeze_heap()
    for channel, rate in parse_rates(args.rate).items():
        engine.set_rate(channel, rate)  # type: ignore[attr-defined]
    out: IO[bytes]
    out = sys.stdout.buffer if args.out == "-" else open(args.out, "wb")  # noqa: SIM115
    start = engine.now
    end = start + duration
    if engine.end is not None and engine.end < end:
        # Say so rather than stop short without a word (serve starts it over instead).
        print(
            f"phoenix: {args.scenario or 'demo'} ends after "
            f"{format_duration(engine.end - start)} (its duration), before --duration "
            f"{format_duration(duration)}: stopping at {rfc3339(engine.end)}",
            file=sys.stderr,
        )
        end = engine.end
    progress = _Progress(end - start) if sys.stderr.isatty() else None
    seq = 0
    try:
        while engine.now < end:
            chunk_end = min(end, engine.now + 60.0)
            lines = []
            for event in engine.advance_to(chunk_end):
                if event.channel == "control":
                    continue
                seq += 1
                lines.append(event_frame(seq, event))  # the bytes `serve` would send
            if lines:
                out.write(b"\n".join(lines) + b"\n")
            if progress is not None:
                progress.show(engine.now - start, seq)
    finally:
        if progress is not None:
            progress.done()
        if out is not sys.stdout.buffer:
            out.close()
        else:
            out.flush()
    return 0


class _Progress:
    def __init__(self, total: float) -> None:
        self.total = max(total, 1.0)
        self.started = time.monotonic()

    def show(self, done: float, events: int) -> None:
        share = min(1.0, done / self.total)
        bar = "#" * int(share * 30)
        rate = done / max(time.monotonic() - self.started, 1e-9) / 3600
        sys.stderr.write(f"\r[{bar:<30}] {share:6.1%}  {events} events  {rate:.2f} sim h/s")
        sys.stderr.flush()

    def done(self) -> None:
        sys.stderr.write("\n")


def _token(args: argparse.Namespace) -> int:
    from phoenix.auth import issue
    from phoenix.protocol import is_text

    config = _load(args)
    if args.decode is not None:
        return _decode(args.decode, config)
    channels = None if args.channels is None else _channel_list(args.channels)
    ttl = _ttl(args.ttl)
    if not args.sub or len(args.sub) > MAX_SUB or not is_text(args.sub):
        raise ConfigError(f"--sub: expected 1 to {MAX_SUB} characters of text, got {len(args.sub)}")
    if not 1 <= args.count <= 100_000:
        raise ConfigError(f"--count: expected 1 to 100000 tokens, got {args.count}")
    now = time.time()
    subs = [args.sub] if args.count == 1 else [f"{args.sub}-{i}" for i in range(1, args.count + 1)]
    if any(len(sub) > MAX_SUB for sub in subs):
        raise ConfigError(f"--sub: with --count, at most {MAX_SUB} characters with the number")
    # One process, one secret: thousands a second (a process per token took 0.4 s each).
    tokens = (
        issue(
            config.auth.jwt_secret,
            sub,
            now,
            ttl,
            role=args.role,
            channels=channels,
            algorithm=config.auth.algorithms[0],
        )
        for sub in subs
    )
    sys.stdout.write("".join(f"{t}\n" for t in tokens))
    return 0


def _decode(token: str, config: Config) -> int:
    """What /ws would make of a token: its claims, or why it is refused (the same
    `verify` the server runs, with the same secret and algorithms)."""
    import jwt

    from phoenix.auth import AuthError, verify

    try:
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.InvalidTokenError:
        unverified = None
    if unverified is not None:
        print(f"claims (as written): {json.dumps(unverified, sort_keys=True, default=str)}")
    now = time.time()
    try:
        claims = verify(token, config.auth.jwt_secret, list(config.auth.algorithms), now)
    except AuthError as exc:
        print(f"refused: UNAUTHORIZED, reason {exc.reason}: {exc.message}")
        return 1
    channels = ", ".join(sorted(claims.channels)) if claims.channels is not None else "all"
    print(
        f"accepted: sub {claims.sub}, role {claims.role}, channels {channels}, expires in "
        f"{claims.exp - now:.0f} s"
    )
    return 0


def _ttl(text: str) -> float:
    """--ttl: a number of seconds from 1 to MAX_TTL. A token the server would refuse
    (expired at once, `exp` not a number) is an error here, not a surprise later."""
    try:
        ttl = float(text)
    except ValueError:
        ttl = math.nan
    if not (math.isfinite(ttl) and 1 <= ttl <= MAX_TTL):
        raise ConfigError(
            f"--ttl {text!r}: expected a number of seconds from 1 to {MAX_TTL} (10 years)"
        )
    return ttl


def _check(args: argparse.Namespace) -> int:
    from simulator.scenario import load_scenario

    config = _load(args)
    print(f"config ok: serving on {config.server.host}:{config.server.port}")
    name = args.scenario or config.simulation.scenario
    sc = load_scenario(name, config.simulation.max_scenario_bytes)
    print(f"scenario ok: {sc.name}")
    return 0


def _config(args: argparse.Namespace) -> int:
    # The commented defaults live in one file, the checkout's config.yaml, beside the
    # templates the server serves from the same place; a test checks they are the
    # defaults that phoenix.config holds.
    path = Path(__file__).resolve().parent.parent / DEFAULT_CONFIG
    try:
        sys.stdout.write(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the default config ({exc.strerror})") from None
    return 0


def _scenarios(args: argparse.Namespace) -> int:
    from simulator.scenario import bundled_scenarios

    items = bundled_scenarios()
    width = max((len(n) for n, _ in items), default=0)
    for name, description in items:
        print(f"{name:<{width}}  {description}")
    return 0
