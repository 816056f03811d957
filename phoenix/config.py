"""The server's configuration: its schema, defaults and validation, in one place.

`load_config(path, env)` reads config.yaml, applies the environment (PHOENIX_JWT_SECRET
wins over the file) and returns a frozen `Config`, or raises `ConfigError` whose message
names the field path and says what to fix. Nothing else reads config files.
"""

from __future__ import annotations

import difflib
import ipaddress
import logging
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

DEV_SECRET = "phoenix-dev-secret-for-loopback-only-change-me"
MIN_SECRET_LENGTH = 32
SECRET_ENV = "PHOENIX_JWT_SECRET"
KEY_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}
MAX_SPEED = 10_000.0  # simulated seconds per wall second (a day in under 9 s)
MAX_STEP = 3600.0  # seconds of simulated time one `step` may move


class ConfigError(Exception):
    """What is wrong with a config: one problem, or every one found (`problems`), each
    naming its field path, one a line."""

    def __init__(self, *problems: str) -> None:
        self.problems = list(problems)
        if len(problems) > 1:
            text = f"{len(problems)} problems:\n  " + "\n  ".join(problems)
        else:
            text = problems[0] if problems else "invalid config"
        super().__init__(text)


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    access_log: bool = True
    # Origins of web pages that may use the API and /ws (phoenix.cors). None: any port
    # of localhost and 127.0.0.1, only while bound to loopback.
    cors_origins: tuple[str, ...] | None = None


@dataclass(frozen=True)
class AuthConfig:
    jwt_secret: str = DEV_SECRET
    algorithms: tuple[str, ...] = ("HS256",)
    page_token_ttl: int = 900  # seconds; the page's viewer token (loopback only)


@dataclass(frozen=True)
class LimitsConfig:
    messages_per_second: int = 100
    close_after_rejected: int = 200  # rejected messages within rejected_window -> 4029
    rejected_window: float = 3.0
    channels_per_connection: int = 10
    connections_per_user: int = 100
    max_message_bytes: int = 65536
    outbound_queue: int = 1000  # frames; a client further behind is closed with 1013


@dataclass(frozen=True)
class WebSocketConfig:
    compression: bool = False  # permessage-deflate costs 2.7x the CPU (docs/design.md §5)
    heartbeat: float = 30.0  # protocol-level ping interval; 0 turns it off
    close_timeout: float = 2.0


@dataclass(frozen=True)
class SimulationConfig:
    scenario: str = "demo"
    seed: int | None = None  # None: the scenario's seed
    speed: float = 1.0
    start: str | None = None  # RFC 3339; None: the scenario's start, else now
    lag_warning: float = 2.0  # simulated-time lag (wall seconds) that gets logged
    loop: bool = True  # a finished scenario (or replay) starts over
    # Where POST /api/sim restart may load scenario files from, besides the bundled ones.
    scenario_dirs: tuple[str, ...] = ()
    max_scenario_bytes: int = 1 << 20  # the size cap of any scenario file that is loaded


@dataclass(frozen=True)
class HistoryConfig:
    max_events: int = 10000  # per channel, for resume after reconnect
    max_age: float = 300.0  # seconds


@dataclass(frozen=True)
class BrokerConfig:
    # None: one process, the hub in memory. redis://HOST:PORT/DB: the engine and gateways
    # of one simulation meet there (phoenix.engine, phoenix.gateway; README "Scaling out").
    url: str | None = None
    namespace: str = "phoenix"  # key prefix: several simulations can share one Redis
    connect_timeout: float = 2.0  # seconds; also how long one broker call may take
    request_timeout: float = 5.0  # seconds a gateway waits for the engine to answer
    lease: float = 5.0  # seconds a dead gateway's connections still count per user


@dataclass(frozen=True)
class Config:
    server: ServerConfig = ServerConfig()
    auth: AuthConfig = AuthConfig()
    limits: LimitsConfig = LimitsConfig()
    websocket: WebSocketConfig = WebSocketConfig()
    simulation: SimulationConfig = SimulationConfig()
    history: HistoryConfig = HistoryConfig()
    broker: BrokerConfig = BrokerConfig()


# --- validation ------------------------------------------------------------------

Check = Callable[[str, Any], Any]


MAX_WHOLE = 1_000_000_000  # no count or size in the config is anywhere near this


def _positive_int(path: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not 0 < v <= MAX_WHOLE:
        raise ConfigError(
            f"{path}: expected a whole number from 1 to {MAX_WHOLE:,}, got {_excerpt(v)}"
        )
    return v


def _port(path: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 65535:
        raise ConfigError(f"{path}: expected a port number 0-65535, got {v!r}")
    return v


def _number(minimum: float, *, strict: bool = False, maximum: float | None = None) -> Check:
    def check(path: str, v: Any) -> float:
        top = maximum if maximum is not None else MAX_WHOLE
        # An int is compared as it is: a 400-digit one does not fit a float.
        ok = isinstance(v, int | float) and not isinstance(v, bool)
        ok = ok and (isinstance(v, int) or math.isfinite(v))
        if not ok or v < minimum or (strict and v == minimum) or v > top:
            rel = ">" if strict else ">="
            raise ConfigError(
                f"{path}: expected a number {rel} {minimum:g} and at most {top:g}, "
                f"got {_excerpt(v)}"
            )
        return float(v)

    return check


def _directories(path: str, v: Any) -> tuple[str, ...]:
    if not isinstance(v, list | tuple):
        raise ConfigError(f"{path}: expected a list of directories, e.g. [./scenarios]")
    out = []
    for i, item in enumerate(v):
        if not isinstance(item, str) or not item:
            raise ConfigError(f"{path}[{i}]: expected a directory path, got {item!r}")
        if not Path(item).is_dir():
            raise ConfigError(f"{path}[{i}]: {item!r} is not a directory")
        out.append(str(Path(item).resolve()))
    return tuple(out)


_ORIGIN = re.compile(r"\*|https?://[A-Za-z0-9.\-\[\]:]+?(?::(?:[0-9]{1,5}|\*))?")


def _origins(path: str, v: Any) -> tuple[str, ...]:
    if not isinstance(v, list | tuple):
        raise ConfigError(f"{path}: expected a list of origins, e.g. [http://localhost:*]")
    for i, item in enumerate(v):
        if not isinstance(item, str) or not _ORIGIN.fullmatch(item):
            raise ConfigError(
                f"{path}[{i}]: expected an origin such as https://app.example.com, "
                f"http://localhost:5173 or http://localhost:* (any port), or *; got {item!r}"
            )
    return tuple(v)


def _byte_size(path: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not 1024 <= v <= 64 << 20:
        raise ConfigError(f"{path}: expected a number of bytes from 1024 to 67108864, got {v!r}")
    return v


def _bool(path: str, v: Any) -> bool:
    if not isinstance(v, bool):
        raise ConfigError(f"{path}: expected true or false, got {v!r}")
    return v


def _string(path: str, v: Any) -> str:
    if not isinstance(v, str) or not v:
        # Not the value itself: it may be a secret (auth.jwt_secret).
        raise ConfigError(f"{path}: expected a non-empty string, got {_kind(v)}")
    return v


def _kind(v: Any) -> str:
    return "an empty string" if v == "" else f"a {type(v).__name__}"


def _optional(check: Check) -> Check:
    return lambda path, v: None if v is None else check(path, v)


def _count(path: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= MAX_WHOLE:
        raise ConfigError(
            f"{path}: expected a whole number from 0 to {MAX_WHOLE:,}, got {_excerpt(v)}"
        )
    return v


def _excerpt(v: Any) -> str:
    from simulator.scenario import excerpt

    return excerpt(repr(v))


def _algorithms(path: str, v: Any) -> tuple[str, ...]:
    allowed = tuple(KEY_BYTES)
    if not isinstance(v, list) or not v:
        raise ConfigError(f"{path}: expected a non-empty list such as [HS256]")
    for i, alg in enumerate(v):
        if alg not in allowed:
            raise ConfigError(
                f"{path}[{i}]: {alg!r} is not accepted; use one of {', '.join(allowed)}"
            )
    return tuple(v)


_BROKER_URL = re.compile(r"rediss?://[^\s/?#]+(?:/[0-9]{1,2})?", re.ASCII)
# No ":" (the separator of the keys under it): "a" and "a:users" must not overlap.
_NAMESPACE = re.compile(r"[A-Za-z0-9_.-]{1,64}", re.ASCII)


def _broker_url(path: str, v: Any) -> str:
    if not isinstance(v, str) or not _BROKER_URL.fullmatch(v):
        raise ConfigError(
            f"{path}: expected a Redis URL such as redis://127.0.0.1:6379/0, got {_excerpt(v)}"
        )
    return v


def _namespace(path: str, v: Any) -> str:
    if not isinstance(v, str) or not _NAMESPACE.fullmatch(v):
        raise ConfigError(
            f"{path}: expected 1 to 64 letters, digits or _ . - (a Redis key prefix), "
            f"got {_excerpt(v)}"
        )
    return v


def _start(path: str, v: Any) -> str:
    from simulator.clock import parse_start

    # YAML hands an unquoted timestamp over as a datetime; anything else must be text.
    text = v.isoformat() if hasattr(v, "isoformat") else v
    if not isinstance(text, str):
        text = None
    if text == "now":
        return text  # the wall clock's time when the run starts (phoenix.sources)
    try:
        parse_start(text if text is not None else "")
    except ValueError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return str(text)


SCHEMA: dict[str, dict[str, Check]] = {
    "server": {
        "host": _string,
        "port": _port,
        "access_log": _bool,
        "cors_origins": _optional(_origins),
    },
    "auth": {
        "jwt_secret": _optional(_string),
        "algorithms": _algorithms,
        "page_token_ttl": _positive_int,
    },
    "limits": {
        "messages_per_second": _positive_int,
        "close_after_rejected": _positive_int,
        "rejected_window": _number(0, strict=True),
        "channels_per_connection": _positive_int,
        "connections_per_user": _positive_int,
        "max_message_bytes": _positive_int,
        "outbound_queue": _positive_int,
    },
    "websocket": {
        "compression": _bool,
        "heartbeat": _number(0),
        "close_timeout": _number(0, strict=True),
    },
    "simulation": {
        "scenario": _string,
        "seed": _optional(_count),
        "speed": _number(0, strict=True, maximum=MAX_SPEED),
        "start": _optional(_start),
        "lag_warning": _number(0, strict=True),
        "loop": _bool,
        "scenario_dirs": _directories,
        "max_scenario_bytes": _byte_size,
    },
    "history": {"max_events": _count, "max_age": _number(0)},
    "broker": {
        "url": _optional(_broker_url),
        "namespace": _namespace,
        "connect_timeout": _number(0, strict=True, maximum=60),
        "request_timeout": _number(0, strict=True, maximum=600),
        "lease": _number(1, maximum=3600),
    },
}


ENV_PREFIX = "PHOENIX_"
# Keys whose environment value is taken as text, not read as YAML (a secret of digits
# stays a string; a `#` in it is not a comment).
RAW_TEXT_KEYS = frozenset(
    {
        ("auth", "jwt_secret"),
        ("server", "host"),
        ("simulation", "scenario"),
        ("broker", "url"),
        ("broker", "namespace"),
    }
)
log = logging.getLogger("phoenix.config")


def parse_config(raw: Any, env: Mapping[str, str] | None = None) -> Config:
    """Validate a decoded config mapping (None or {} gives the defaults), with the
    environment's overrides (`env_overrides`) on top."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError("the config must be a mapping of sections (server, auth, limits, ...)")
    # Every problem is found in one pass (`phoenix check` lists them all), not the first.
    problems: list[str] = []
    raw = env_overrides(raw, env or {}, problems)
    config = Config()
    for section, values in raw.items():
        if section not in SCHEMA:
            problems.append(f"{section}: unknown section; expected one of {', '.join(SCHEMA)}")
            continue
        if values is None:
            continue
        if not isinstance(values, dict):
            problems.append(f"{section}: expected a mapping of settings")
            continue
        checked = {}
        for key, value in values.items():
            if key not in SCHEMA[section]:
                known = ", ".join(SCHEMA[section])
                problems.append(f"{section}.{key}: unknown setting; expected one of {known}")
                continue
            try:
                checked[key] = SCHEMA[section][key](f"{section}.{key}", value)
            except ConfigError as exc:
                problems.extend(exc.problems)
        config = replace(config, **{section: replace(getattr(config, section), **checked)})
    if problems:
        raise ConfigError(*problems)
    return _apply_env(config, env or {})


def env_overrides(
    raw: dict[str, Any], env: Mapping[str, str], problems: list[str]
) -> dict[str, Any]:
    """`PHOENIX_<SECTION>__<KEY>=value` sets `<section>.<key>` over the file, the value
    read as YAML (`9000`, `true`, `[HS256]`) and checked as the file's would be.
    PHOENIX_JWT_SECRET stays as it was. Any other PHOENIX_ variable is an error: a typo
    such as PHOENIX_PORT must not be silently ignored. Problems go to `problems`."""
    merged = {k: dict(v) if isinstance(v, dict) else v for k, v in raw.items()}
    names = [f"{ENV_PREFIX}{s.upper()}__{k.upper()}" for s in SCHEMA for k in SCHEMA[s]]
    for name, text in env.items():
        if not name.startswith(ENV_PREFIX) or name == SECRET_ENV:
            continue
        section, sep, key = name[len(ENV_PREFIX) :].lower().partition("__")
        close = difflib.get_close_matches(name, names, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        usage = (
            f"config keys are set as {ENV_PREFIX}<SECTION>__<KEY>, e.g. {ENV_PREFIX}SERVER__PORT"
        )
        if not sep:
            # Not our form at all: maybe another tool's (Arize Phoenix has PHOENIX_PORT).
            # Said, but no reason to refuse to start.
            log.warning("%s is not a setting of this server%s; %s", name, hint, usage)
            continue
        if section not in SCHEMA or key not in SCHEMA[section]:
            problems.append(f"{name}: not a setting{hint}; {usage}")
            continue
        if (section, key) in RAW_TEXT_KEYS:
            value: Any = text  # a secret or a name is text as it is, never YAML
        else:
            try:
                value = yaml.safe_load(text)
            except (yaml.YAMLError, ValueError):  # ValueError: a 5,000-digit number
                value = text
        try:
            SCHEMA[section][key](name, value)  # the error names the variable
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        target = merged.get(section)
        if target is not None and not isinstance(target, dict):
            continue  # the file's section is wrong: that is reported, not replaced
        merged[section] = {**(target or {}), key: value}
    return merged


def _apply_env(config: Config, env: Mapping[str, str]) -> Config:
    secret = env.get(SECRET_ENV) or config.auth.jwt_secret
    source = SECRET_ENV if env.get(SECRET_ENV) else "auth.jwt_secret"
    if not secret:
        raise ConfigError(
            f"auth.jwt_secret: no JWT secret; set {SECRET_ENV} or auth.jwt_secret "
            f"(at least {MIN_SECRET_LENGTH} characters)"
        )
    # RFC 7518 §3.2: a key at least as long as the hash (PyJWT warns below that).
    need = max([MIN_SECRET_LENGTH, *(KEY_BYTES[a] for a in config.auth.algorithms)])
    if len(secret.encode()) < need:
        raise ConfigError(
            f"{source}: the JWT secret is {len(secret)} characters; with "
            f"{', '.join(config.auth.algorithms)} use at least {need} "
            f"(e.g. `python -c 'import secrets; print(secrets.token_hex({need // 2}))'`)"
        )
    config = replace(config, auth=replace(config.auth, jwt_secret=secret))
    if secret == DEV_SECRET and not is_loopback(config.server.host):
        raise ConfigError(
            f"auth.jwt_secret: the built-in development secret is only allowed on loopback, "
            f"but server.host is {config.server.host!r}; set {SECRET_ENV} to a secret of your own"
        )
    return config


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_config(path: str | Path | None, env: Mapping[str, str] | None = None) -> Config:
    """Read and validate a config file; `None` means the defaults."""
    if path is None:
        return parse_config({}, env)
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read the config file ({exc.strerror})") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from None
    try:
        return parse_config(raw, env)
    except ConfigError as exc:
        # The file's problems name the file; the environment's name their variable.
        raise ConfigError(
            *(x if x.startswith(ENV_PREFIX) else f"{p}: {x}" for x in exc.problems)
        ) from None
