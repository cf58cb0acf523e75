"""The per-realm budget the client relies on (dealbooks_http.RateBudget with weights)."""

from __future__ import annotations

from dealbooks_http import RateBudget
from dealbooks_qbo import default_batch_budget, default_budget, request_id


async def test_weight_above_the_burst_size_is_admitted_unit_by_unit():
    budget = RateBudget(rate=2, period=0.01, concurrency=1)
    async with budget.slot("realm-1", weight=30):
        pass


async def test_default_budgets_admit_requests_for_separate_realms():
    budget, batches = default_budget(), default_batch_budget()
    async with batches.slot("a"), budget.slot("a", weight=3), budget.slot("b"):
        pass


def test_request_id_is_stable_per_realm_operation_and_key_and_fits_batch_limit():
    rid = request_id("123", "create:Invoice", "deal-42")
    assert rid == request_id("123", "create:Invoice", "deal-42")
    assert rid != request_id("124", "create:Invoice", "deal-42")
    assert rid != request_id("123", "update:Invoice", "deal-42")
    assert len(rid) == 36
