"""Secrets never reach a log line, whichever way they are logged."""

from __future__ import annotations

import json
import logging

import pytest
from dealbooks_kit import configure_logging, get_logger, redact


def test_secret_keys_are_redacted_at_any_depth() -> None:
    cleaned = redact(
        {
            "access_token": "eyJ.abc",
            "nested": {"refresh_token": "RT1-xyz", "client_secret": "s3cr3t", "realm": "123"},
            "headers": [{"Authorization": "Bearer abc.def"}],
        }
    )
    assert cleaned == {
        "access_token": "[REDACTED]",
        "nested": {"refresh_token": "[REDACTED]", "client_secret": "[REDACTED]", "realm": "123"},
        "headers": [{"Authorization": "[REDACTED]"}],
    }


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            "sent Authorization: Bearer eyJhbGciOi.payload.sig",
            "sent Authorization: Bearer [REDACTED]",
        ),
        (
            "token request body grant_type=refresh_token&refresh_token=AB11x&x=1",
            "token request body grant_type=refresh_token&refresh_token=[REDACTED]&x=1",
        ),
        (
            '{"access_token": "eyJ.zzz", "expires_in": 3600}',
            '{"access_token": "[REDACTED]", "expires_in": 3600}',
        ),
        (
            "callback ?code=AB123&state=xyz&realmId=9",
            "callback ?code=[REDACTED]&state=xyz&realmId=9",
        ),
        ("retry with PASSWORD=hunter2 now", "retry with PASSWORD=[REDACTED] now"),
        ("proxy said BASIC dXNlcjpwYXNz", "proxy said BASIC [REDACTED]"),
    ],
)
def test_secret_shaped_values_are_redacted_inside_strings(raw: str, expected: str) -> None:
    assert redact(raw) == expected


def test_ordinary_values_pass_untouched() -> None:
    assert redact({"invoice_id": "130", "amount": "10.00", "message": "Thanks"}) == {
        "invoice_id": "130",
        "amount": "10.00",
        "message": "Thanks",
    }


def test_structlog_and_stdlib_lines_are_json_and_redacted(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("kit-test", "INFO", json=True)
    get_logger("kit").info("token refreshed", realm_id="123", refresh_token="RT1-secret-value")
    logging.getLogger("thirdparty").warning("header Authorization: Bearer leaked.token.value")

    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert lines[0]["event"] == "token refreshed"
    assert lines[0]["refresh_token"] == "[REDACTED]"
    assert lines[0]["service"] == "kit-test"
    assert lines[1]["event"] == "header Authorization: Bearer [REDACTED]"
    assert "secret-value" not in json.dumps(lines) and "leaked.token" not in json.dumps(lines)
