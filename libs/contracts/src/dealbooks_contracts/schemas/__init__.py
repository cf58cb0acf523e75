"""JSON Schema snapshots of every topic, committed next to this module.

Each ``<topic>.json`` is the schema of the envelope carrying that topic's payload. The snapshots
are the published contract: ``write`` regenerates them from the models (refusing a change that
breaks compatibility inside a major version unless told otherwise), ``check`` fails when they
differ from the models.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._catalog import REGISTRY
from .._envelope import Envelope
from .._registry import EventSpec, TopicRegistry
from ..compat import Incompatibility, find_incompatibilities

__all__ = [
    "SNAPSHOT_DIR",
    "BreakingChangeError",
    "SnapshotDrift",
    "check_snapshots",
    "load_snapshot",
    "render",
    "schema_for",
    "snapshot_path",
    "write_snapshots",
]

SNAPSHOT_DIR = Path(__file__).parent
"""Where the committed snapshots live."""


def schema_for(spec: EventSpec) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the envelope carrying ``spec``'s payload."""
    envelope: type[Envelope[Any]] = Envelope[spec.model]  # type: ignore[name-defined]
    schema = envelope.model_json_schema(mode="validation")
    # The envelope's type and version are fixed per topic; say so in the contract.
    schema["properties"]["type"] = {"const": spec.type, "title": "Type", "type": "string"}
    schema["properties"]["version"] = {"const": spec.version, "title": "Version", "type": "integer"}
    schema["title"] = spec.topic
    schema["description"] = (spec.model.__doc__ or "").strip()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def render(schema: dict[str, Any]) -> str:
    """The canonical text of a snapshot: sorted keys, two-space indent, final newline."""
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def snapshot_path(topic: str, directory: Path = SNAPSHOT_DIR) -> Path:
    """The file holding ``topic``'s snapshot."""
    return directory / f"{topic}.json"


def load_snapshot(topic: str, directory: Path = SNAPSHOT_DIR) -> dict[str, Any]:
    """The committed snapshot of ``topic``."""
    loaded: dict[str, Any] = json.loads(snapshot_path(topic, directory).read_text("utf-8"))
    return loaded


@dataclass(frozen=True)
class SnapshotDrift:
    """A topic whose committed snapshot does not match its model."""

    topic: str
    reason: str
    breaking: tuple[Incompatibility, ...] = ()

    def __str__(self) -> str:
        lines = [f"{self.topic}: {self.reason}"]
        lines += [f"  breaking: {problem}" for problem in self.breaking]
        return "\n".join(lines)


def check_snapshots(
    directory: Path = SNAPSHOT_DIR, registry: TopicRegistry = REGISTRY
) -> list[SnapshotDrift]:
    """Every difference between the committed snapshots and the models; empty when in sync."""
    drifts: list[SnapshotDrift] = []
    for spec in registry.specs():
        path = snapshot_path(spec.topic, directory)
        current = schema_for(spec)
        if not path.exists():
            drifts.append(SnapshotDrift(spec.topic, "no snapshot committed"))
            continue
        committed = load_snapshot(spec.topic, directory)
        if path.read_text("utf-8") != render(current):
            breaking = tuple(find_incompatibilities(committed, current))
            reason = "incompatible change" if breaking else "snapshot out of date (compatible)"
            drifts.append(SnapshotDrift(spec.topic, reason, breaking))
    for orphan in sorted(_orphans(directory, registry)):
        drifts.append(SnapshotDrift(orphan, "snapshot of a topic no longer registered"))
    return drifts


def write_snapshots(
    directory: Path = SNAPSHOT_DIR,
    registry: TopicRegistry = REGISTRY,
    *,
    allow_breaking: bool = False,
) -> list[SnapshotDrift]:
    """Regenerate the snapshots; returns what changed.

    Refuses (raises :class:`BreakingChangeError`, writing nothing) when a change breaks a topic
    or drops one, unless ``allow_breaking``: a breaking change belongs in a new major version.
    """
    drifts = check_snapshots(directory, registry)
    breaking = [d for d in drifts if d.breaking or d.topic not in registry.topics()]
    if breaking and not allow_breaking:
        raise BreakingChangeError(breaking)
    directory.mkdir(parents=True, exist_ok=True)
    for spec in registry.specs():
        path = snapshot_path(spec.topic, directory)
        text = render(schema_for(spec))
        if not path.exists() or path.read_text("utf-8") != text:
            path.write_text(text, "utf-8")
    for orphan in _orphans(directory, registry):
        snapshot_path(orphan, directory).unlink()
    return drifts


class BreakingChangeError(Exception):
    """A snapshot rewrite would break consumers inside a major version."""

    def __init__(self, drifts: list[SnapshotDrift]) -> None:
        self.drifts = drifts
        super().__init__("\n".join(str(d) for d in drifts))


def _orphans(directory: Path, registry: TopicRegistry) -> set[str]:
    known = set(registry.topics())
    on_disk = {p.name.removesuffix(".json") for p in directory.glob("*.json")}
    return on_disk - known
