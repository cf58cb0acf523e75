"""The one catalogue: both languages hold the same keys and placeholders, and every text a
template or the code asks for exists."""

from __future__ import annotations

import re
import string
from pathlib import Path

import pytest
from console.catalogue import Texts, catalogue
from console.domain import LANGUAGES, STAGES

SOURCE = Path(__file__).parents[1] / "src" / "console"


def _placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def test_every_language_has_every_key_with_the_same_placeholders() -> None:
    english = catalogue("en")
    for lang in LANGUAGES:
        other = catalogue(lang)
        assert set(other) == set(english), lang
        for key, text in english.items():
            assert _placeholders(other[key]) == _placeholders(text), (lang, key)
            assert other[key].strip(), (lang, key)


def test_every_literal_key_the_pages_and_code_use_exists() -> None:
    used: set[str] = set()
    for path in [*SOURCE.glob("templates/*.html"), *SOURCE.glob("*.py")]:
        text = path.read_text()
        # Literal keys only; `t("stages." ~ stage)` builds its key from data.
        used |= set(re.findall(r"""\bt\(\s*["']([a-z_]+\.[a-zA-Z0-9_.]+)["'](?!\s*~)""", text))
        used |= set(re.findall(r"""key=["']([a-z_]+\.[a-z_.]+)["']""", text))
        used |= set(re.findall(r"""Refused\(\d+, ["']([a-z_]+\.[a-z_.]+)["']""", text))
    assert used, "the scan found no keys"
    missing = sorted(k for k in used if k not in catalogue("en"))
    assert not missing


def test_every_stage_has_a_label_and_the_card_gets_its_group() -> None:
    for lang in LANGUAGES:
        t = Texts(lang)
        assert set(t.group("stages")) == set(STAGES)
        assert {"title", "empty", "create", "add_existing", "retry", "error"} <= set(
            t.group("card")
        )


def test_an_unknown_key_is_an_error_and_an_unknown_language_reads_english() -> None:
    with pytest.raises(KeyError):
        Texts("en")("no.such.key")
    assert Texts("fr").lang == "en"
    assert Texts("nl")("outcome.drafted_detail", number="1001", amount="€ 5,00").startswith(
        "Conceptfactuur 1001"
    )
