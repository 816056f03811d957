"""The open connections, counted per user (`sub`) for the connections-per-user limit."""

from __future__ import annotations

from collections import Counter

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

    def all(self) -> list[Connection]:
        """A copy: callers may close connections while they walk it."""
        return list(self._conns)
