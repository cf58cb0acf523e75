"""Backward/forward compatibility of two JSON Schemas of one topic (same major version).

Inside a major version only additive, optional fields are allowed. Anything a consumer built
against the old schema could trip over is reported: a field removed, a type changed (including
nullability, format and a union variant removed), an optional field made required, a new required
field, an enum value removed. ``$ref``/``$defs``, ``anyOf`` nullables, discriminated unions,
nested objects and arrays are followed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = ["Incompatibility", "IncompatibilityKind", "find_incompatibilities", "is_compatible"]

Schema = Mapping[str, Any]

_NULL: Schema = {"type": "null"}
_UNION_KEYS = ("anyOf", "oneOf")


class IncompatibilityKind(StrEnum):
    """The kinds of change that break consumers inside a major version."""

    FIELD_REMOVED = "field_removed"
    TYPE_CHANGED = "type_changed"
    MADE_REQUIRED = "made_required"
    REQUIRED_FIELD_ADDED = "required_field_added"
    ENUM_VALUE_REMOVED = "enum_value_removed"


@dataclass(frozen=True)
class Incompatibility:
    """One breaking difference, located by a dotted path such as ``data.lines[].unit_price``."""

    kind: IncompatibilityKind
    path: str
    detail: str

    def __str__(self) -> str:
        return f"{self.path or '<root>'}: {self.kind}: {self.detail}"


def find_incompatibilities(old: Schema, new: Schema) -> list[Incompatibility]:
    """Every breaking difference from ``old`` to ``new``; empty when ``new`` is compatible."""
    walker = _Walker(old, new)
    walker.compare(old, new, "")
    return walker.found


def is_compatible(old: Schema, new: Schema) -> bool:
    """True when ``new`` only adds optional fields (or enum values, or union variants)."""
    return not find_incompatibilities(old, new)


@dataclass
class _Walker:
    old_root: Schema
    new_root: Schema
    found: list[Incompatibility] = field(default_factory=list)
    _seen_refs: set[tuple[str, str, bool, bool]] = field(default_factory=set)

    def report(self, kind: IncompatibilityKind, path: str, detail: str) -> None:
        self.found.append(Incompatibility(kind, path, detail))

    def compare(self, old: Schema, new: Schema, path: str) -> None:
        old, old_nullable, old_ref = _unwrap(old, self.old_root)
        new, new_nullable, new_ref = _unwrap(new, self.new_root)
        if old_ref is not None and new_ref is not None:
            # Recursive models and shared $defs: compare each pair of definitions once.
            if (old_ref, new_ref, old_nullable, new_nullable) in self._seen_refs:
                return
            self._seen_refs.add((old_ref, new_ref, old_nullable, new_nullable))
        if old_nullable != new_nullable:
            change = "null is no longer allowed" if old_nullable else "null is now possible"
            self.report(IncompatibilityKind.TYPE_CHANGED, path, change)
        old_branches, new_branches = _branches(old), _branches(new)
        if old_branches or new_branches:
            self._compare_unions(old, new, old_branches, new_branches, path)
            return
        if not self._same_type(old, new, path):
            return
        self._compare_enums(old, new, path)
        if _kind(old) == "object":
            self._compare_objects(old, new, path)
        elif _kind(old) == "array":
            self._compare_arrays(old, new, path)

    def _same_type(self, old: Schema, new: Schema, path: str) -> bool:
        old_kind, new_kind = _kind(old), _kind(new)
        if old_kind != new_kind:
            self.report(IncompatibilityKind.TYPE_CHANGED, path, f"{old_kind} -> {new_kind}")
            return False
        if old.get("format") != new.get("format"):
            detail = f"format {old.get('format')} -> {new.get('format')}"
            self.report(IncompatibilityKind.TYPE_CHANGED, path, detail)
            return False
        return True

    def _compare_enums(self, old: Schema, new: Schema, path: str) -> None:
        old_values, new_values = _enum_values(old), _enum_values(new)
        if new_values is None:
            return
        if old_values is None:
            detail = f"now restricted to {sorted(map(repr, new_values))}"
            self.report(IncompatibilityKind.TYPE_CHANGED, path, detail)
            return
        for value in old_values:
            if value not in new_values:
                self.report(IncompatibilityKind.ENUM_VALUE_REMOVED, path, repr(value))

    def _compare_objects(self, old: Schema, new: Schema, path: str) -> None:
        old_props: Mapping[str, Schema] = old.get("properties", {})
        new_props: Mapping[str, Schema] = new.get("properties", {})
        old_required, new_required = set(old.get("required", ())), set(new.get("required", ()))
        for name, old_prop in old_props.items():
            if name not in new_props:
                self.report(IncompatibilityKind.FIELD_REMOVED, _join(path, name), "removed")
            else:
                self.compare(old_prop, new_props[name], _join(path, name))
        for name in sorted(new_required - old_required):
            if name in old_props:
                self.report(IncompatibilityKind.MADE_REQUIRED, _join(path, name), "now required")
            else:
                detail = "new field is required"
                self.report(IncompatibilityKind.REQUIRED_FIELD_ADDED, _join(path, name), detail)
        old_extra, new_extra = old.get("additionalProperties"), new.get("additionalProperties")
        if isinstance(old_extra, Mapping) and isinstance(new_extra, Mapping):
            self.compare(old_extra, new_extra, f"{path}{{}}")

    def _compare_arrays(self, old: Schema, new: Schema, path: str) -> None:
        old_items, new_items = old.get("items"), new.get("items")
        if isinstance(old_items, Mapping) and isinstance(new_items, Mapping):
            self.compare(old_items, new_items, f"{path}[]")
        old_prefix, new_prefix = old.get("prefixItems", ()), new.get("prefixItems", ())
        if len(old_prefix) != len(new_prefix):
            detail = f"tuple of {len(old_prefix)} -> {len(new_prefix)}"
            self.report(IncompatibilityKind.TYPE_CHANGED, path, detail)
            return
        for index, (old_item, new_item) in enumerate(zip(old_prefix, new_prefix, strict=True)):
            self.compare(old_item, new_item, f"{path}[{index}]")

    def _compare_unions(
        self,
        old: Schema,
        new: Schema,
        old_branches: list[Schema],
        new_branches: list[Schema],
        path: str,
    ) -> None:
        # A plain schema is a union of one variant, so narrowing to one variant or widening
        # from one are judged like any other variant change.
        discriminator = _discriminator(old) or _discriminator(new)
        old_labelled = _labelled(old_branches or [old], discriminator, self.old_root)
        new_by_label = dict(_labelled(new_branches or [new], discriminator, self.new_root))
        for label, old_branch in old_labelled:
            if label not in new_by_label:
                self.report(IncompatibilityKind.TYPE_CHANGED, path, f"variant {label} removed")
            elif old_branches and new_branches:
                self.compare(old_branch, new_by_label[label], f"{path}<{label}>")
            else:
                self.compare(_without_union(old_branch), _without_union(new_by_label[label]), path)


def _discriminator(node: Schema) -> str | None:
    value = node.get("discriminator")
    if isinstance(value, Mapping):
        name = value.get("propertyName")
        return str(name) if name is not None else None
    return None


def _without_union(node: Schema) -> Schema:
    return {k: v for k, v in node.items() if k not in {"discriminator", *_UNION_KEYS}}


def _labelled(
    branches: Iterable[Schema], discriminator: str | None, root: Schema
) -> list[tuple[str, Schema]]:
    """Label union variants by discriminator value, else model title, else type, else position."""
    labelled = []
    for index, branch in enumerate(branches):
        resolved, _ = _resolve(branch, root)
        label = None
        if discriminator is not None:
            const = resolved.get("properties", {}).get(discriminator, {}).get("const")
            label = None if const is None else f"{discriminator}={const}"
        labelled.append((label or resolved.get("title") or _kind(resolved) or f"#{index}", branch))
    return labelled


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _lookup(root: Schema, ref: str) -> Schema:
    if not ref.startswith("#"):
        raise ValueError(f"only local $ref is supported, got {ref!r}")
    node: Any = root
    for part in filter(None, ref[1:].split("/")):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    if not isinstance(node, Mapping):
        raise ValueError(f"$ref {ref!r} does not point at a schema")
    return node


def _resolve(node: Schema, root: Schema) -> tuple[Schema, str | None]:
    """Follow ``$ref`` and one-element ``allOf``/``anyOf`` wrappers; sibling keys win."""
    ref_name = None
    for _ in range(64):
        if "$ref" in node:
            ref_name = str(node["$ref"])
            siblings = {k: v for k, v in node.items() if k != "$ref"}
            node = {**_lookup(root, ref_name), **siblings}
        elif wrapper := _single_wrapper(node):
            siblings = {k: v for k, v in node.items() if k != wrapper}
            node = {**node[wrapper][0], **siblings}
        else:
            return node, ref_name
    raise ValueError("$ref chain too deep")


def _single_wrapper(node: Schema) -> str | None:
    for key in ("allOf", *_UNION_KEYS):
        value = node.get(key)
        if isinstance(value, list) and len(value) == 1:
            return key
    return None


def _is_null(node: Schema) -> bool:
    return node.get("type") == "null" or node.get("const", ...) is None


def _unwrap(node: Schema, root: Schema) -> tuple[Schema, bool, str | None]:
    """Resolve references and strip a null alternative: (schema, nullable, last $ref followed)."""
    node, ref = _resolve(node, root)
    node, nullable, inner_ref = _split_null(node, root)
    return node, nullable, inner_ref or ref


def _split_null(node: Schema, root: Schema) -> tuple[Schema, bool, str | None]:
    """Strip a null alternative: ``anyOf[X, null]`` -> (X, True, ref of X)."""
    for key in _UNION_KEYS:
        branches = node.get(key)
        if not isinstance(branches, list):
            continue
        rest = [b for b in branches if not _is_null(_resolve(b, root)[0])]
        if len(rest) == len(branches):
            continue
        siblings = {k: v for k, v in node.items() if k != key}
        if len(rest) == 1:
            inner, ref = _resolve({**rest[0], **_annotations(siblings)}, root)
            return inner, True, ref
        return {**siblings, key: rest}, True, None
    types = node.get("type")
    if isinstance(types, list) and "null" in types:
        remaining = [t for t in types if t != "null"]
        return {**node, "type": remaining[0] if len(remaining) == 1 else remaining}, True, None
    return node, False, None


def _annotations(siblings: Mapping[str, Any]) -> dict[str, Any]:
    # Keep only non-structural keys when collapsing a nullable union onto its single branch.
    return {k: v for k, v in siblings.items() if k in {"title", "description", "default"}}


def _branches(node: Schema) -> list[Schema]:
    for key in _UNION_KEYS:
        branches = node.get(key)
        if isinstance(branches, list) and len(branches) > 1:
            return list(branches)
    return []


def _kind(node: Schema) -> str | None:
    declared = node.get("type")
    if isinstance(declared, list):
        return "|".join(sorted(declared))
    if isinstance(declared, str):
        return declared
    if "properties" in node:
        return "object"
    if "items" in node or "prefixItems" in node:
        return "array"
    values = _enum_values(node)
    if values:
        return "|".join(sorted({_json_type(v) for v in values}))
    return None


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if value is None:
        return "null"
    return "object" if isinstance(value, Mapping) else "array"


def _enum_values(node: Schema) -> list[Any] | None:
    if "enum" in node:
        return list(node["enum"])
    if "const" in node:
        return [node["const"]]
    return None
