"""Pure rules of connector-auth: state, facts, refresh timing, token encryption."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from connector_auth import domain
from connector_auth.crypto import TokenCipher, TokenDecryptError, generate_key_spec
from dealbooks_contracts import AccountConnectedReason, QboEnvironment

NOW = datetime(2026, 10, 1, 12, 0, tzinfo=UTC)
SECRET = b"state-secret"


def signed(portal: str = "p1", issued_at: datetime = NOW) -> str:
    return domain.sign_state(domain.OAuthState(portal, "nonce-1", issued_at), SECRET)


def test_signed_state_reads_back_portal_and_nonce() -> None:
    state = domain.read_state(signed(), SECRET, NOW + timedelta(seconds=5), 600)
    assert (state.portal_id, state.nonce) == ("p1", "nonce-1")


def test_state_signed_with_another_secret_is_rejected() -> None:
    with pytest.raises(domain.InvalidState):
        domain.read_state(signed(), b"other", NOW, 600)


def test_state_with_altered_portal_is_rejected() -> None:
    _, mac = signed().split(".")
    forged = domain.sign_state(domain.OAuthState("p2", "nonce-1", NOW), b"x").split(".")[0]
    with pytest.raises(domain.InvalidState):
        domain.read_state(f"{forged}.{mac}", SECRET, NOW, 600)


def test_expired_state_is_rejected() -> None:
    with pytest.raises(domain.InvalidState, match="expired"):
        domain.read_state(signed(), SECRET, NOW + timedelta(seconds=601), 600)


@pytest.mark.parametrize("raw", ["", "garbage", "a.b.c", "!!.??"])
def test_malformed_state_is_rejected(raw: str) -> None:
    with pytest.raises(domain.InvalidState):
        domain.read_state(raw, SECRET, NOW, 600)


def facts_without_currency(
    country: str, multicurrency: bool | None, custom_numbers: bool | None
) -> domain.CompanyFacts:
    """The facts of a company QuickBooks reported in `country` with no home currency."""
    return domain.company_facts(
        company_name="Larry's Bakery",
        legal_name=None,
        country=country,
        home_currency=None,
        multicurrency_enabled=multicurrency,
        custom_transaction_numbers=custom_numbers,
    )


def test_three_letter_country_and_missing_currency_are_normalised() -> None:
    facts = facts_without_currency("USA", multicurrency=None, custom_numbers=True)
    assert (facts.country, facts.home_currency) == ("US", "USD")
    assert facts.custom_transaction_numbers is True
    assert facts.multicurrency_enabled is False


def test_company_without_a_usable_currency_is_refused() -> None:
    with pytest.raises(domain.ConnectRefused):
        facts_without_currency("ZZ", multicurrency=False, custom_numbers=False)


def test_token_needs_refresh_within_the_margin_only() -> None:
    expires = NOW + timedelta(seconds=600)
    assert not domain.needs_refresh(expires, NOW, 300)
    assert domain.needs_refresh(expires, NOW + timedelta(seconds=301), 300)


def test_first_connection_and_reconnection_are_told_apart() -> None:
    assert domain.connected_reason(None) is AccountConnectedReason.CONNECTED
    assert (
        domain.connected_reason(domain.AccountStatus.REAUTH_REQUIRED)
        is AccountConnectedReason.RECONNECTED
    )


def test_production_installation_refuses_a_sandbox_company_in_words() -> None:
    refused = domain.wrong_environment(QboEnvironment.PRODUCTION)
    assert refused.code == "sandbox_company"
    assert "sandbox" in refused.message


def test_token_round_trips_and_is_bound_to_its_account() -> None:
    cipher = TokenCipher.from_spec(generate_key_spec("k1"))
    sealed = cipher.encrypt("RT1-secret", "p1:123:refresh")
    assert "RT1-secret" not in str(sealed)
    assert cipher.decrypt(sealed, "p1:123:refresh") == "RT1-secret"
    with pytest.raises(TokenDecryptError):
        cipher.decrypt(sealed, "p2:123:refresh")


def test_rotated_key_still_decrypts_old_tokens_and_encrypts_with_the_new_one() -> None:
    old_spec = generate_key_spec("k1")
    sealed = TokenCipher.from_spec(old_spec).encrypt("tok", "ctx")
    rotated = TokenCipher.from_spec(f"{generate_key_spec('k2')},{old_spec}")
    assert rotated.decrypt(sealed, "ctx") == "tok"
    assert not rotated.is_current(sealed)
    assert rotated.encrypt("tok", "ctx")["kid"] == "k2"


def test_token_of_a_removed_key_cannot_be_decrypted() -> None:
    sealed = TokenCipher.from_spec(generate_key_spec("k1")).encrypt("tok", "ctx")
    with pytest.raises(TokenDecryptError):
        TokenCipher.from_spec(generate_key_spec("k2")).decrypt(sealed, "ctx")


def test_a_portal_is_advanced_where_one_of_its_companies_is() -> None:
    editions = [
        ("p1", "QuickBooks Online Plus"),
        ("p2", "QuickBooks Online Advanced"),
        ("p1", None),
        ("p3", " quickbooks online advanced "),
        ("p2", "QuickBooks Online Essentials"),
    ]
    assert domain.advanced_portals(editions) == ["p2", "p3"]
    assert domain.advanced_portals([("p1", "QuickBooks Online Plus")]) == []
