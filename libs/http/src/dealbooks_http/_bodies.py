from __future__ import annotations

from typing import Any

import httpx


def json_object(response: httpx.Response) -> dict[str, Any]:
    """The JSON object a response's body holds; empty when the body is not one (an HTML error
    page, a list, nothing), so callers read its optional fields with `.get`."""
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
