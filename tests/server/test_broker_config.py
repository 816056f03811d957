"""The broker section of the config: what it takes and what it refuses, with the field."""

from __future__ import annotations

import pytest

from phoenix.config import ConfigError, parse_config


def test_the_defaults_are_one_process_with_no_broker() -> None:
    broker = parse_config({}).broker
    assert broker.url is None and broker.namespace == "phoenix"


@pytest.mark.parametrize(
    "url", ["redis://127.0.0.1:6379/0", "rediss://user:secret@redis.example.com:6380/2"]
)
def test_a_redis_url_is_taken(url: str) -> None:
    assert parse_config({"broker": {"url": url}}).broker.url == url


@pytest.mark.parametrize(
    ("section", "problem"),
    [
        ({"url": "http://127.0.0.1:6379"}, "broker.url: expected a Redis URL"),
        ({"url": "redis://host:6379/0 extra"}, "broker.url: expected a Redis URL"),
        ({"namespace": "a:users"}, "broker.namespace: expected 1 to 64 letters"),
        ({"namespace": "x" * 65}, "broker.namespace: expected 1 to 64 letters"),
        ({"lease": 0.5}, "broker.lease: expected a number >= 1"),
        ({"connect_timeout": 0}, "broker.connect_timeout: expected a number > 0"),
        ({"request_timeout": 601}, "broker.request_timeout: expected a number > 0 and at most 600"),
    ],
)
def test_a_wrong_broker_setting_names_the_field(section: dict, problem: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({"broker": section})
    assert problem in str(err.value), str(err.value)


def test_the_environment_sets_the_broker() -> None:
    config = parse_config({}, {"PHOENIX_BROKER__URL": "redis://10.0.0.1:6379/0"})
    assert config.broker.url == "redis://10.0.0.1:6379/0"
