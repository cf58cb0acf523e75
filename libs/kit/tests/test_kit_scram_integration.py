"""A kit runtime signs in to Kafka with SASL/SCRAM (the local broker's SCRAM listener): topics
are created, events published and consumed through it, and a wrong password is refused without
the password showing in any log line."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from dealbooks_contracts import Envelope, QboEntityChanged
from dealbooks_infra import testing
from dealbooks_infra.servers import ScramListener
from dealbooks_kit import KitSettings, ServiceRuntime
from dealbooks_kit.kafka import kafka_client_options

pytestmark = pytest.mark.integration

WRONG_PASSWORD = "wrong-3b9d1e-never-logged"


def _scram_settings(kit_settings: Any, scram: ScramListener, password: str) -> KitSettings:
    settings: KitSettings = kit_settings(
        kafka_bootstrap=scram.address,
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism=scram.mechanism,
        kafka_sasl_username=scram.username,
        kafka_sasl_password=password,
    )
    return settings


async def test_a_runtime_publishes_and_consumes_through_scram(
    kit_settings: Any, kafka_scram: ScramListener, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = _scram_settings(kit_settings, kafka_scram, kafka_scram.password)
    runtime = ServiceRuntime(settings)
    handled: list[str] = []

    async def handle(event: Envelope[QboEntityChanged]) -> None:
        handled.append(event.data.entity_id)

    runtime.consume("scram-check", QboEntityChanged, handle)
    async with runtime.running():
        await runtime.publisher.publish(testing.invoice_changed("realm-1", "inv-scram"))
        await testing.until_true(lambda: handled == ["inv-scram"])

    assert kafka_scram.password not in caplog.text


async def test_a_wrong_scram_password_is_refused_and_never_logged(
    kit_settings: Any, kafka_scram: ScramListener, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = _scram_settings(kit_settings, kafka_scram, WRONG_PASSWORD)
    admin = AIOKafkaAdminClient(**kafka_client_options(settings), request_timeout_ms=5000)

    with pytest.raises(KafkaError):
        try:
            await admin.start()
        finally:
            await admin.close()

    assert caplog.text  # aiokafka said why
    assert WRONG_PASSWORD not in caplog.text
