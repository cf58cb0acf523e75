"""Every string a person reads, in one catalogue per language (`messages/<lang>.json`): the
console's pages and the CRM app card's labels. Keys are dotted; values may hold `{name}`
placeholders. A key missing from a language falls back to English; a test keeps both
catalogues complete."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from console.domain import DEFAULT_LANGUAGE, LANGUAGES

MESSAGES = Path(__file__).with_name("messages")


@cache
def catalogue(lang: str) -> dict[str, str]:
    raw = json.loads((MESSAGES / f"{lang}.json").read_text(encoding="utf-8"))
    flat: dict[str, str] = {}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(f"{prefix}.{key}" if prefix else key, value)
        else:
            flat[prefix] = str(node)

    walk("", raw)
    return flat


class Texts:
    """The strings of one language: `t("wizard.title")`, `t("wizard.line_n", n=3)`."""

    def __init__(self, lang: str) -> None:
        self.lang = lang if lang in LANGUAGES else DEFAULT_LANGUAGE
        self._own = catalogue(self.lang)
        self._fallback = catalogue(DEFAULT_LANGUAGE)

    def __call__(self, key: str, **values: Any) -> str:
        text = self._own.get(key) or self._fallback.get(key)
        if text is None:
            raise KeyError(f"no text '{key}' in the catalogue")
        return text.format(**values) if values else text

    def has(self, key: str) -> bool:
        return key in self._own or key in self._fallback

    def group(self, prefix: str) -> dict[str, str]:
        """Every text under `prefix.` (the app card gets its labels this way)."""
        keys = {k for k in self._fallback if k.startswith(prefix + ".")}
        return {k[len(prefix) + 1 :]: self(k) for k in sorted(keys)}
