"""JWT tokens: issue them (CLI, the page's viewer token) and verify them (WebSocket, HTTP).

Verification returns `Claims` or raises `AuthError` with a `reason` that goes on the wire
as `details.reason`: missing, malformed, invalid_signature, expired, invalid_claims,
algorithm_not_allowed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jwt

from phoenix.protocol import is_text
from simulator.events import CHANNELS

ROLES = ("viewer", "admin")
MAX_SUB_LENGTH = 256
# 9999-12-31T23:59:59Z: the last time that can be written down; a later `exp` (or NaN,
# Infinity, a 400-digit number) is not a time.
MAX_EXP = 253402300799


@dataclass(frozen=True, slots=True)
class Claims:
    sub: str
    exp: float
    role: str = "viewer"
    iat: float | None = None
    channels: frozenset[str] | None = None  # None: every channel

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def may_subscribe(self, channel: str) -> bool:
        return self.channels is None or channel in self.channels


class AuthError(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def issue(
    secret: str,
    sub: str,
    now: float,
    ttl: float,
    role: str | None = None,
    channels: list[str] | None = None,
    algorithm: str = "HS256",
) -> str:
    payload: dict[str, object] = {"sub": sub, "iat": int(now), "exp": int(now + ttl)}
    if role is not None:
        payload["role"] = role
    if channels is not None:
        payload["channels"] = list(channels)
    return jwt.encode(payload, secret, algorithm=algorithm)


def verify(token: str | None, secret: str, algorithms: list[str], now: float) -> Claims:
    """Check a token at wall time `now`; `none` is never an accepted algorithm."""
    if not token:
        raise AuthError("missing", "A token is required: connect with ?token=<jwt>")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError:  # not only DecodeError: a bad `kid` or `crit` too
        raise AuthError("malformed", "The token is not a well-formed JWT") from None
    alg = header.get("alg")
    if not isinstance(alg, str) or alg.lower() == "none" or alg not in algorithms:
        raise AuthError(
            "algorithm_not_allowed",
            f"Token algorithm {alg!r} is not accepted (accepted: {', '.join(algorithms)})",
        )
    try:
        payload = jwt.decode(
            token,
            secret,
            algorithms=algorithms,
            options={"require": ["sub", "exp"], "verify_exp": False},
        )
    except jwt.MissingRequiredClaimError as exc:
        raise AuthError("invalid_claims", f"The token lacks the '{exc.claim}' claim") from None
    except jwt.InvalidSignatureError:
        raise AuthError("invalid_signature", "The token's signature does not verify") from None
    except jwt.DecodeError:
        raise AuthError("malformed", "The token is not a well-formed JWT") from None
    except jwt.InvalidTokenError as exc:
        raise AuthError("invalid_claims", f"The token's claims are invalid: {exc}") from None
    return _claims(payload, now)


def _claims(payload: dict[str, object], now: float) -> Claims:
    sub, exp = payload.get("sub"), payload.get("exp")
    if not isinstance(sub, str) or not sub or len(sub) > MAX_SUB_LENGTH or not is_text(sub):
        raise AuthError(
            "invalid_claims",
            f"The token's 'sub' must be a non-empty string of at most {MAX_SUB_LENGTH} characters",
        )
    # Compared as given (an int is never turned into a float that could overflow).
    if (
        isinstance(exp, bool)
        or not isinstance(exp, int | float)
        or not (isinstance(exp, int) or math.isfinite(exp))
        or not 0 < exp <= MAX_EXP
    ):
        raise AuthError(
            "invalid_claims", "The token's 'exp' must be a number of seconds up to year 9999"
        )
    # Expiry is checked here, against the caller's clock, so that tests and the
    # expiring-token fault use the same rule as real expiry.
    if exp <= now:
        raise AuthError("expired", "The token has expired")
    role = payload.get("role", "viewer")
    if role not in ROLES:
        raise AuthError("invalid_claims", f"The token's 'role' must be one of {list(ROLES)}")
    channels = payload.get("channels")
    allowed: frozenset[str] | None = None
    if channels is not None:
        if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
            raise AuthError("invalid_claims", "The token's 'channels' must be a list of names")
        unknown = [c for c in channels if c not in CHANNELS]
        if unknown:
            raise AuthError("invalid_claims", f"The token names unknown channels {unknown}")
        allowed = frozenset(channels)
    iat = payload.get("iat")  # PyJWT has checked it is an integer not in the future
    issued = None
    if iat is not None:
        if isinstance(iat, bool) or not isinstance(iat, int) or not 0 <= iat <= MAX_EXP:
            raise AuthError("invalid_claims", "The token's 'iat' must be a time after 1970")
        issued = float(iat)
    return Claims(sub=sub, exp=float(exp), role=str(role), iat=issued, channels=allowed)
