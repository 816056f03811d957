"""A pytest plugin, registered as `phoenix` (the pytest11 entry point): the `phoenix_sim`
fixture, a simulator served for one test (`phoenix.testing.serve`).

    @pytest.mark.phoenix(scenario="demo", seed=7, speed=60)
    def test_my_client(phoenix_sim):
        ...  # phoenix_sim.ws_url, .token(), .inject(), .step(), .events_sent()

The marker's keywords are `serve`'s; `--phoenix-scenario` and `--phoenix-speed` set a
default for the tests that do not say.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from phoenix.testing import Simulator, serve


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("phoenix", "the Phoenix simulator (phoenix_sim fixture)")
    group.addoption("--phoenix-scenario", default=None, help="scenario of phoenix_sim")
    group.addoption("--phoenix-speed", type=float, default=None, help="speed of phoenix_sim")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "phoenix(scenario, seed, speed, start, config): how the phoenix_sim fixture serves",
    )


@pytest.fixture
def phoenix_sim(request: pytest.FixtureRequest) -> Iterator[Simulator]:
    marker = request.node.get_closest_marker("phoenix")
    kwargs: dict[str, Any] = dict(marker.kwargs) if marker is not None else {}
    for option, key in (("--phoenix-scenario", "scenario"), ("--phoenix-speed", "speed")):
        value = request.config.getoption(option)
        if value is not None:
            kwargs.setdefault(key, value)
    with serve(**kwargs) as sim:
        yield sim
