"""Generated bad input at both webhook intakes of a running gateway: whatever arrives, the
answer is a 4xx or a 2xx, never a 5xx; what is refused (unsigned, forged, stale, too large)
publishes nothing."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from dealbooks_crm import signature_v3
from dealbooks_infra.fuzzing import json_of_any_shape, json_scalars
from dealbooks_qbo import sign
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.integration

FUZZ = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,  # the same examples every run: a failure here is a regression, not luck
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

# JSON of any shape, and JSON shaped like what the senders send, with wrong or odd values.
scalars = json_scalars(text_size=40)
any_json = json_of_any_shape(scalars, list_size=4, key_size=12, leaves=20)
entity = st.fixed_dictionaries(
    {},
    optional={
        "name": st.sampled_from(["Invoice", "Payment", "Customer", "Item", "Nope", ""]) | scalars,
        "id": st.text(max_size=12) | scalars,
        "operation": st.sampled_from(["Create", "Update", "Delete", "Void", "Merge", "?"]),
        "lastUpdated": st.text(max_size=30) | scalars,
    },
)
legacy = st.fixed_dictionaries(
    {
        "eventNotifications": st.lists(
            st.fixed_dictionaries(
                {},
                optional={
                    "realmId": st.text(max_size=20) | scalars,
                    "dataChangeEvent": st.fixed_dictionaries(
                        {}, optional={"entities": st.lists(entity, max_size=3) | scalars}
                    )
                    | scalars,
                },
            ),
            max_size=3,
        )
        | scalars
    }
)
cloud_events = st.lists(
    st.fixed_dictionaries(
        {},
        optional={
            "specversion": st.sampled_from(["1.0", "0.3", ""]) | scalars,
            "id": st.text(max_size=20) | scalars,
            "type": st.sampled_from(
                ["qbo.invoice.created.v1", "qbo.companyinfo.updated.v1", "qbo..v1", "x"]
            )
            | scalars,
            "intuitentityid": st.text(max_size=12) | scalars,
            "intuitaccountid": st.text(max_size=20) | scalars,
            "time": st.text(max_size=30) | scalars,
            "data": any_json,
        },
    ),
    max_size=3,
)
crm_events = st.lists(
    st.fixed_dictionaries(
        {},
        optional={
            "eventId": st.integers() | scalars,
            "subscriptionId": st.integers() | scalars,
            "portalId": st.integers() | scalars,
            "occurredAt": st.integers() | scalars,
            "subscriptionType": st.sampled_from(["deal.propertyChange", "deal.creation", "x"])
            | scalars,
            "objectId": st.integers() | scalars,
            "propertyName": st.text(max_size=20) | scalars,
            "propertyValue": st.text(max_size=20) | scalars,
        },
    ),
    max_size=4,
)
raw = st.binary(max_size=300)


def body_of(value: Any) -> bytes:
    return value if isinstance(value, bytes) else json.dumps(value).encode()


async def published(gateway: Any, bootstrap: str) -> int:
    """Records on the gateway's two output topics so far."""
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await reader.start()
    try:
        total = 0
        for name in ("qbo.entity-changed.v1", "crm.object-changed.v1"):
            topic = gateway.topic(name)
            partitions = reader.partitions_for_topic(topic)
            if partitions is None:
                await reader._client.force_metadata_update()  # the topic may not exist yet
                partitions = reader.partitions_for_topic(topic) or set()
            ends = await reader.end_offsets([TopicPartition(topic, p) for p in partitions])
            total += sum(ends.values())
        return total
    finally:
        await reader.stop()


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


@FUZZ
@given(
    body=st.one_of(legacy, cloud_events, any_json, raw),
    # What a header can carry (anything else the HTTP server refuses before the gateway).
    signature=st.from_regex(r"[!-~]{0,60}", fullmatch=True),
)
def test_refused_quickbooks_deliveries_are_401_and_publish_nothing(
    gateway: Any, kafka_bootstrap: str, body: Any, signature: str
) -> None:
    content = body_of(body)

    async def send() -> tuple[int, int, int]:
        before = await published(gateway, kafka_bootstrap)
        async with httpx.AsyncClient(timeout=30.0) as client:
            headers = {"intuit-signature": signature} if signature else {}
            answer = await client.post(gateway.qbo_url, content=content, headers=headers)
        return answer.status_code, before, await published(gateway, kafka_bootstrap)

    status, before, after = run(send())
    assert status == 401
    assert after == before


@FUZZ
@given(body=st.one_of(legacy, cloud_events, any_json, raw))
def test_signed_quickbooks_deliveries_of_any_shape_are_never_a_5xx(
    gateway: Any, gw_tools: Any, body: Any
) -> None:
    content = body_of(body)

    async def send() -> int:
        async with httpx.AsyncClient(timeout=30.0) as client:
            answer = await client.post(
                gateway.qbo_url,
                content=content,
                headers={"intuit-signature": sign(content, gw_tools.verifier_token)},
            )
        return answer.status_code

    status = run(send())
    assert status < 500, status


@FUZZ
@given(
    body=st.one_of(crm_events, any_json, raw),
    age_ms=st.sampled_from([0, 301_000, -301_000]),
    forged=st.booleans(),
)
def test_crm_deliveries_are_refused_when_forged_or_stale_and_never_a_5xx(
    gateway: Any, kafka_bootstrap: str, body: Any, age_ms: int, forged: bool
) -> None:
    content = body_of(body)
    timestamp = str(int(time.time() * 1000) - age_ms)
    secret = "not-the-client-secret" if forged else gateway.crm_secret
    headers = {
        "X-HubSpot-Signature-v3": signature_v3(secret, "POST", gateway.crm_url, content, timestamp),
        "X-HubSpot-Request-Timestamp": timestamp,
        "Content-Type": "application/json",
    }
    refused = forged or age_ms != 0

    async def send() -> tuple[int, int, int]:
        before = await published(gateway, kafka_bootstrap)
        async with httpx.AsyncClient(timeout=30.0) as client:
            answer = await client.post(gateway.crm_url, content=content, headers=headers)
        after = await published(gateway, kafka_bootstrap) if refused else before
        return answer.status_code, before, after

    status, before, after = run(send())
    assert status < 500, status
    if refused:
        assert status == 401
        assert after == before
