from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal
from typing import Any


def loads(raw: bytes | str) -> Any:
    """Parse a QBO body keeping every JSON number with a fraction as an exact Decimal."""
    return json.loads(raw, parse_float=Decimal)


def _encode(obj: Any, out: list[str]) -> None:
    if isinstance(obj, dict):
        out.append("{")
        for i, (key, value) in enumerate(obj.items()):
            if i:
                out.append(",")
            out.append(json.dumps(str(key)))
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
        # QBO wants money as JSON numbers, never strings, and never through float.
        out.append(format(obj, "f"))
    elif isinstance(obj, datetime | date):
        out.append(json.dumps(obj.isoformat()))
    else:
        out.append(json.dumps(obj, ensure_ascii=False))


def dumps(obj: Any) -> bytes:
    """Serialise a request body with Decimals as exact JSON numbers."""
    out: list[str] = []
    _encode(obj, out)
    return "".join(out).encode()
