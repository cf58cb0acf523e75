"""What dealbooks sends to a portal and what the app project declares agree."""

from __future__ import annotations

import json
from pathlib import Path

from dealbooks_contracts import crm_app

APP_EVENTS = Path(__file__).resolve().parents[3] / "hubspot-app/src/app/app-events"


def test_the_payment_event_type_declares_every_property_a_payment_sends() -> None:
    definition = json.loads((APP_EVENTS / "invoice-payment-hsmeta.json").read_text())

    assert definition["uid"] == crm_app.PAYMENT_EVENT_TYPE
    assert definition["type"] == "app-event"
    config = definition["config"]
    assert config["objectType"] == "DEAL"
    declared = {p["name"]: p for p in config["properties"]}
    assert set(declared) == set(crm_app.PAYMENT_EVENT_PROPERTIES)
    changes = {o["value"] for o in declared["change"]["options"]}
    assert changes == {"applied", "updated", "removed"}
    templates = config["headerTemplate"] + config["detailTemplate"]
    assert all("{{" + name + "}}" in templates for name in declared)
