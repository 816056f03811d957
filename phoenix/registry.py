"""The open connections, counted per user (`sub`) for the connections-per-user limit;
and that limit's seam: counted here in one process, over all gateways with a broker
(phoenix.gateway.Leases)."""

from __future__ import annotations

from collections import Counter
from typing import Protocol

from phoenix.connection import Connection


class Registry:
    def __init__(self) -> None:
        self._conns: set[Connection] = set()
        self._per_user: Counter[str] = Counter()
        self._serial = 0

    def add(self, conn: Connection) -> None:
        self._serial += 1
        conn.serial = self._serial  # connection order, for seeded fault choices
        self._conns.add(conn)
        self._per_user[conn.claims.sub] += 1

    def remove(self, conn: Connection) -> None:
        if conn in self._conns:
            self._conns.remove(conn)
            self._per_user[conn.claims.sub] -= 1
            if not self._per_user[conn.claims.sub]:
                del self._per_user[conn.claims.sub]

    def count(self, sub: str | None = None) -> int:
        return len(self._conns) if sub is None else self._per_user[sub]

    def users(self) -> list[str]:
        """Every user with a connection open."""
        return list(self._per_user)

    def all(self) -> list[Connection]:
        """A copy: callers may close connections while they walk it."""
        return list(self._conns)


class Leases(Protocol):
    async def acquire(self, sub: str, limit: int) -> bool:
        """Take one of the user's `limit` connection slots; False if none is free."""
        ...

    async def release(self, sub: str) -> None: ...


class LocalLeases:
    """One process: the registry's count is the count."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    async def acquire(self, sub: str, limit: int) -> bool:
        return self.registry.count(sub) < limit

    async def release(self, sub: str) -> None:
        pass
