from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["ApiPaths", "PathStyle"]

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

    def owners(self) -> str:
        """The portal's owners (read only; `crm.objects.owners.read`)."""
        if self.style == "v3":
            return "/crm/v3/owners"
        return f"/crm/owners/{self.style}"

    def timeline(self) -> str:
        # The legacy timeline API has no date-versioned form: /integrators/timeline/2026-03
        # is the app events API.
        return "/integrators/timeline/v3"

    def app_events(self) -> str:
        """Where app event occurrences are sent (timeline v4)."""
        if self.style == "v3":
            return "/integrators/timeline/v4/events"
        return f"/integrators/timeline/{self.style}/events"
