"""The compatibility checker catches every breaking change and accepts additive optional fields."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from dealbooks_contracts import (
    Incompatibility,
    IncompatibilityKind,
    InvoiceDrafted,
    InvoiceRequested,
    find_incompatibilities,
    spec_for_model,
)
from dealbooks_contracts.compat import is_compatible
from dealbooks_contracts.schemas import schema_for

Schema = dict[str, Any]
Kind = IncompatibilityKind


def _schema(model: type[InvoiceDrafted] | type[InvoiceRequested]) -> Schema:
    return schema_for(spec_for_model(model))


def _mutated(schema: Schema, change: Callable[[Schema], None]) -> Schema:
    new = copy.deepcopy(schema)
    change(new)
    return new


def _kinds(problems: list[Incompatibility]) -> set[tuple[Kind, str]]:
    return {(p.kind, p.path) for p in problems}


def test_identical_schemas_are_compatible() -> None:
    schema = _schema(InvoiceRequested)
    assert find_incompatibilities(schema, copy.deepcopy(schema)) == []


def test_removing_a_field_is_caught() -> None:
    old = _schema(InvoiceDrafted)
    new = _mutated(old, lambda s: s["$defs"]["InvoiceDrafted"]["properties"].pop("doc_number"))
    assert _kinds(find_incompatibilities(old, new)) == {(Kind.FIELD_REMOVED, "data.doc_number")}


def test_removing_a_required_field_is_caught() -> None:
    def drop_deal_id(s: Schema) -> None:
        drafted = s["$defs"]["InvoiceDrafted"]
        drafted["properties"].pop("deal_id")
        drafted["required"].remove("deal_id")

    old = _schema(InvoiceDrafted)
    problems = find_incompatibilities(old, _mutated(old, drop_deal_id))
    assert _kinds(problems) == {(Kind.FIELD_REMOVED, "data.deal_id")}


def test_changing_a_type_is_caught() -> None:
    old = _schema(InvoiceDrafted)
    new = _mutated(old, lambda s: s["$defs"]["Money"]["properties"]["amount"].update(type="number"))
    assert _kinds(find_incompatibilities(old, new)) == {(Kind.TYPE_CHANGED, "data.total.amount")}


def test_changing_a_format_is_caught() -> None:
    old = _schema(InvoiceDrafted)
    new = _mutated(
        old,
        lambda s: s["$defs"]["InvoiceDrafted"]["properties"]["invoice_date"].update(
            format="date-time"
        ),
    )
    assert _kinds(find_incompatibilities(old, new)) == {(Kind.TYPE_CHANGED, "data.invoice_date")}


def test_making_a_nullable_field_non_nullable_is_caught() -> None:
    def not_null(s: Schema) -> None:
        s["$defs"]["InvoiceDrafted"]["properties"]["doc_number"] = {"type": "string"}

    old = _schema(InvoiceDrafted)
    problems = find_incompatibilities(old, _mutated(old, not_null))
    assert _kinds(problems) == {(Kind.TYPE_CHANGED, "data.doc_number")}
    assert "null is no longer allowed" in str(problems[0])


def test_making_an_optional_field_required_is_caught() -> None:
    old = _schema(InvoiceDrafted)
    new = _mutated(old, lambda s: s["$defs"]["InvoiceDrafted"]["required"].append("due_date"))
    assert _kinds(find_incompatibilities(old, new)) == {(Kind.MADE_REQUIRED, "data.due_date")}


def test_a_new_required_field_is_caught() -> None:
    def add_required(s: Schema) -> None:
        drafted = s["$defs"]["InvoiceDrafted"]
        drafted["properties"]["sales_rep"] = {"type": "string"}
        drafted["required"].append("sales_rep")

    old = _schema(InvoiceDrafted)
    problems = find_incompatibilities(old, _mutated(old, add_required))
    assert _kinds(problems) == {(Kind.REQUIRED_FIELD_ADDED, "data.sales_rep")}


def test_removing_an_enum_value_is_caught() -> None:
    old = _schema(InvoiceRequested)
    new = _mutated(
        old, lambda s: s["$defs"]["InvoiceRequestOrigin"]["enum"].remove("auto_draft_rule")
    )
    problems = find_incompatibilities(old, new)
    assert _kinds(problems) == {(Kind.ENUM_VALUE_REMOVED, "data.origin")}
    assert "'auto_draft_rule'" in str(problems[0])


def test_changing_a_const_is_caught() -> None:
    old = _schema(InvoiceDrafted)
    new = _mutated(old, lambda s: s["properties"]["type"].update(const="invoice.created"))
    assert _kinds(find_incompatibilities(old, new)) == {(Kind.ENUM_VALUE_REMOVED, "type")}


def test_breaking_changes_inside_arrays_of_nested_objects_are_caught() -> None:
    old = _schema(InvoiceRequested)
    new = _mutated(old, lambda s: s["$defs"]["InvoiceLineRequest"]["properties"].pop("tax_code_id"))
    assert _kinds(find_incompatibilities(old, new)) == {
        (Kind.FIELD_REMOVED, "data.lines[].tax_code_id")
    }


def test_breaking_changes_inside_nullable_refs_are_caught() -> None:
    old = _schema(InvoiceRequested)
    new = _mutated(old, lambda s: s["$defs"]["Address"]["properties"].pop("postal_code"))
    assert _kinds(find_incompatibilities(old, new)) == {
        (Kind.FIELD_REMOVED, "data.customer<kind=new>.billing_address.postal_code")
    }


def test_removing_a_union_variant_is_caught() -> None:
    def drop_existing(s: Schema) -> None:
        customer = s["$defs"]["InvoiceRequested"]["properties"]["customer"]
        customer["oneOf"] = [b for b in customer["oneOf"] if "Existing" not in b["$ref"]]
        customer["discriminator"]["mapping"].pop("existing")

    old = _schema(InvoiceRequested)
    problems = find_incompatibilities(old, _mutated(old, drop_existing))
    assert _kinds(problems) == {(Kind.TYPE_CHANGED, "data.customer")}
    assert "kind=existing" in str(problems[0])


def test_an_additive_optional_field_is_compatible() -> None:
    def add_optional(s: Schema) -> None:
        s["$defs"]["InvoiceDrafted"]["properties"]["sales_rep"] = {
            "anyOf": [{"type": "string"}, {"type": "null"}],
            "default": None,
        }

    old = _schema(InvoiceDrafted)
    assert is_compatible(old, _mutated(old, add_optional))


def test_an_additive_enum_value_is_compatible() -> None:
    old = _schema(InvoiceRequested)
    new = _mutated(old, lambda s: s["$defs"]["InvoiceRequestOrigin"]["enum"].append("api"))
    assert is_compatible(old, new)


def test_a_required_field_made_optional_is_compatible() -> None:
    old = _schema(InvoiceDrafted)
    new = _mutated(old, lambda s: s["$defs"]["InvoiceDrafted"]["required"].remove("deal_id"))
    assert is_compatible(old, new)


def test_restricting_a_free_string_to_an_enum_is_caught() -> None:
    old = _schema(InvoiceDrafted)
    new = _mutated(
        old, lambda s: s["$defs"]["InvoiceDrafted"]["properties"]["deal_id"].update(enum=["a"])
    )
    assert _kinds(find_incompatibilities(old, new)) == {(Kind.TYPE_CHANGED, "data.deal_id")}


def test_inline_and_ref_forms_of_the_same_schema_are_equivalent() -> None:
    old = _schema(InvoiceDrafted)

    def inline_money(s: Schema) -> None:
        money = s["$defs"]["Money"]
        s["$defs"]["InvoiceDrafted"]["properties"]["total"] = {"allOf": [money]}

    assert is_compatible(old, _mutated(old, inline_money))


def test_recursive_schemas_terminate() -> None:
    tree: Schema = {
        "$defs": {
            "Node": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}},
                },
                "required": ["name"],
            }
        },
        "$ref": "#/$defs/Node",
    }
    assert is_compatible(tree, copy.deepcopy(tree))
    broken = copy.deepcopy(tree)
    broken["$defs"]["Node"]["properties"]["name"]["type"] = "integer"
    assert _kinds(find_incompatibilities(tree, broken)) == {(Kind.TYPE_CHANGED, "name")}


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ({"type": ["string", "null"]}, {"type": "string"}),
        ({"anyOf": [{"type": "string"}, {"type": "null"}]}, {"type": ["string", "null"]}),
    ],
)
def test_nullable_spellings(old: Schema, new: Schema) -> None:
    wrapped_old = {"type": "object", "properties": {"x": old}}
    wrapped_new = {"type": "object", "properties": {"x": new}}
    nullable_kept = old.get("anyOf") is not None
    assert is_compatible(wrapped_old, wrapped_new) is nullable_kept


def test_widening_a_single_type_to_a_union_is_compatible() -> None:
    old: Schema = {"type": "object", "properties": {"x": {"type": "string"}}}
    new: Schema = {
        "type": "object",
        "properties": {"x": {"anyOf": [{"type": "string"}, {"type": "integer"}]}},
    }
    assert is_compatible(old, new)
    assert _kinds(find_incompatibilities(new, old)) == {(Kind.TYPE_CHANGED, "x")}
