"""The package root re-exports every payload model of `dealbooks_contracts.events`."""

from __future__ import annotations

import dealbooks_contracts
from dealbooks_contracts import events


def test_every_event_name_is_importable_from_the_package_root() -> None:
    for name in events.__all__:
        assert getattr(dealbooks_contracts, name) is getattr(events, name), name


def test_the_package_root_lists_every_event_name_once_and_each_name_resolves() -> None:
    public = dealbooks_contracts.__all__
    assert set(events.__all__) <= set(public)
    assert len(public) == len(set(public))
    for name in public:
        assert hasattr(dealbooks_contracts, name), name
