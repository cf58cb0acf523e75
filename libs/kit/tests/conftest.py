"""Settings for kit tests on the session's real servers, isolated by the test's namespace."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from dealbooks_kit import KitSettings

MakeSettings = Callable[..., KitSettings]


@pytest.fixture
def kit_settings(
    kafka_bootstrap: str, mongo_uri: str, namespace: str, kafka_supports_idempotence: bool
) -> MakeSettings:
    """KitSettings for this test's database and topic prefix; keywords override."""

    def make(**overrides: Any) -> KitSettings:
        fields: dict[str, Any] = {
            "service_name": "kit-test",
            "kafka_bootstrap": kafka_bootstrap,
            "mongodb_uri": mongo_uri,
            "mongodb_database": namespace,
            "topic_prefix": f"{namespace}.",
            "kafka_idempotence": kafka_supports_idempotence,
        }
        return KitSettings(**{**fields, **overrides})

    return make
