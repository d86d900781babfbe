"""A NATS cluster as the broker: its nodes' URLs, and the copies the stream keeps."""

from __future__ import annotations

import pytest

from infra.relay import RelayConfig
from infra.settings import SettingsError, load_settings


def test_a_cluster_is_its_nodes_urls_separated_by_commas() -> None:
    settings = load_settings({"CLOUDEVENT_BROKER_URL": "nats://a:4222, nats://b:4222/",
                              "CLOUDEVENT_STREAM_REPLICAS": "3"})
    config = RelayConfig.from_settings(settings)
    assert config.broker_url.split(",") == ["nats://a:4222", "nats://b:4222"]
    assert config.replicas == 3
    assert RelayConfig.from_settings(load_settings(
        {"CLOUDEVENT_BROKER_URL": "nats://a:4222"})).replicas == 1


@pytest.mark.parametrize(("name", "value"), [
    ("CLOUDEVENT_BROKER_URL", "nats://a:4222,not a url"),
    ("CLOUDEVENT_STREAM_REPLICAS", "0"), ("CLOUDEVENT_STREAM_REPLICAS", "6"),
])
def test_bad_broker_settings_are_refused_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        load_settings({name: value})
