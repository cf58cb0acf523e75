from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

PathStyle = Literal["v3", "2026-03"]


@dataclass(frozen=True)
class ApiPaths:
    """The one switch between the numeric (v3/v4) and the date-versioned path prefixes;
    request and response bodies are the same for both."""

    style: PathStyle = "v3"

    def objects(self, object_type: str) -> str:
        if self.style == "v3":
            return f"/crm/v3/objects/{object_type}"
        return f"/crm/objects/{self.style}/{object_type}"

    def properties(self, object_type: str) -> str:
        if self.style == "v3":
            return f"/crm/v3/properties/{object_type}"
        return f"/crm/properties/{self.style}/{object_type}"

    def object_associations(self, from_type: str, from_id: str) -> str:
        if self.style == "v3":
            return f"/crm/v4/objects/{from_type}/{from_id}/associations"
        return f"/crm/objects/{self.style}/{from_type}/{from_id}/associations"

    def association_batch(self, from_type: str, to_type: str) -> str:
        if self.style == "v3":
            return f"/crm/v4/associations/{from_type}/{to_type}"
        return f"/crm/associations/{self.style}/{from_type}/{to_type}"

    def timeline(self) -> str:
        if self.style == "v3":
            return "/integrators/timeline/v3"
        return f"/integrators/timeline/{self.style}"
