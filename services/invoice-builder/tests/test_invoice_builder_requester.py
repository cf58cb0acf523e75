"""Who a request or a link is asked by: a person only ever in their own name."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from dealbooks_kit import Access, Caller
from invoice_builder.api.common import requester


def called_by(caller: Caller | None) -> Any:
    return SimpleNamespace(state=SimpleNamespace(caller=caller))


@pytest.mark.parametrize(
    ("caller", "said", "asker"),
    [
        # A person's grant names the person, whatever the body says.
        (Caller(Access.PORTAL, frozenset({"62515"}), user_id="u-rep"), "u-boss", "u-rep"),
        (Caller(Access.PORTAL, frozenset({"62515"}), user_id="u-rep"), None, "u-rep"),
        (Caller(Access.CRM_SIGNED, frozenset({"62515"}), user_id="2001"), "u-boss", "2001"),
        # A service speaks for whoever it says asked; or nobody.
        (Caller(Access.SERVICE), "u-boss", "u-boss"),
        (Caller(Access.SERVICE), None, None),
        (Caller(Access.SERVICE), "", None),
        (None, "u-boss", "u-boss"),
    ],
)
def test_a_person_asks_in_their_own_name_only(
    caller: Caller | None, said: str | None, asker: str | None
) -> None:
    assert requester(called_by(caller), said) == asker
