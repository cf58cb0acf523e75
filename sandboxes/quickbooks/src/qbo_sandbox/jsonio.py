"""JSON in and out with exact decimals: QBO prints money as numbers such as 100.00."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any


def loads(raw: bytes | str) -> Any:
    return json.loads(raw, parse_float=Decimal)


def _encode(obj: Any, out: list[str]) -> None:
    if isinstance(obj, dict):
        out.append("{")
        first = True
        for key, value in obj.items():
            if key.startswith("_"):
                continue  # private bookkeeping never leaves the sandbox
            if not first:
                out.append(",")
            first = False
            out.append(json.dumps(key))
            out.append(":")
            _encode(value, out)
        out.append("}")
    elif isinstance(obj, list | tuple):
        out.append("[")
        for i, value in enumerate(obj):
            if i:
                out.append(",")
            _encode(value, out)
        out.append("]")
    elif isinstance(obj, Decimal):
        out.append(format(obj, "f"))
    else:
        out.append(json.dumps(obj, ensure_ascii=False))


def dumps(obj: Any) -> bytes:
    out: list[str] = []
    _encode(obj, out)
    return "".join(out).encode()
