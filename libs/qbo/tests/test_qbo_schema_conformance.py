"""Every body the client can build is one QBO's reader knows, property by property.

The bodies are checked against the description the sandbox generates from Intuit's XSDs
(`qbo_sandbox.schema`): each model filled in completely, and each request the client's calls
build (create, sparse and full update, delete, inactivate, void, batch), captured on the wire.
"""

from __future__ import annotations

import json
import types
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import httpx
import pytest
from dealbooks_http import RateBudget, StaticTokenProvider
from dealbooks_qbo import BatchOperation, Entity, QboClient, QboModel, _json
from dealbooks_qbo._models import ENTITY_MODELS
from pydantic import BaseModel
from qbo_sandbox import schema

SCHEMA = schema.load()
REALM = "4620816365044851490"


def sample(annotation: Any) -> Any:
    """A value of every field's type, nested models filled in completely."""
    origin = get_origin(annotation)
    args = get_args(annotation)
    if origin is Annotated:
        return sample(args[0])
    if origin in (Union, types.UnionType):
        return sample(next(a for a in args if a is not type(None)))
    if origin is Literal:
        return args[0]
    if origin is list:
        return [sample(args[0])]
    if origin is dict:
        return {}
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return filled(annotation).model_dump(by_alias=True)
    return {
        str: "1",
        Decimal: Decimal("12.50"),
        int: 1,
        bool: True,
        date: date(2026, 3, 2),
        datetime: datetime(2026, 3, 2, 9, 30, tzinfo=UTC),
    }.get(annotation, "1")


def filled(model: type[BaseModel]) -> BaseModel:
    """The model with every field it declares set."""
    return model.model_validate(
        {info.alias or name: sample(info.annotation) for name, info in model.model_fields.items()}
    )


class Wire:
    """A transport that keeps every request and answers as QBO would, echoing the entity."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content, parse_float=Decimal) if request.content else None
        path = request.url.path.rsplit("/", 1)[-1]
        self.sent.append((path, body))
        if path == "batch":
            answers = []
            for item in body["BatchItemRequest"]:
                answer: dict[str, Any] = {"bId": item["bId"]}
                if "Query" in item:
                    answer["QueryResponse"] = {}
                for key, value in item.items():
                    if key in ENTITY_MODELS:
                        answer[key] = self.echo(key, value)
                answers.append(answer)
            return httpx.Response(200, content=_dumps({"BatchItemResponse": answers}))
        entity = entity_of(path)
        echo = self.echo(entity, body)
        if request.url.params.get("operation") == "delete":
            echo["status"] = "Deleted"
        return httpx.Response(200, content=_dumps({entity: echo}))

    @staticmethod
    def echo(entity: str, body: dict[str, Any]) -> dict[str, Any]:
        """A whole entity with the body's values, so the client can read it into its model."""
        whole = json.loads(_dumps(filled(ENTITY_MODELS[entity]).to_qbo()))
        return {**whole, "Id": "7", "SyncToken": "0", **body}


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, default=str).encode()


def entity_of(path: str) -> str:
    return next(name for name in ENTITY_MODELS if name.lower() == path)


def with_enum_values(type_name: str, body: Any) -> Any:
    """Free-text model fields where QBO has an enumeration carry one of its values: the
    caller chooses which (Literal fields are checked separately, value by value)."""
    if not isinstance(body, dict) or not SCHEMA.is_complex(type_name):
        return body
    out = {}
    for key, value in body.items():
        prop = SCHEMA.properties(type_name).get(key)
        if prop is not None and prop.type in SCHEMA.enums and value == "1":
            value = SCHEMA.enums[prop.type][0]
        elif prop is not None and isinstance(value, list):
            value = [with_enum_values(prop.type, item) for item in value]
        elif prop is not None:
            value = with_enum_values(prop.type, value)
        out[key] = value
    return out


def wire_body(name: str, model: QboModel) -> Any:
    """The model as the client puts it on the wire."""
    return with_enum_values(name, _json.loads(_json.dumps(model.to_qbo())))


def literal_fields(
    model: type[BaseModel], type_name: str
) -> list[tuple[str, str, tuple[Any, ...]]]:
    """(schema type, property, the model's allowed values) for every Literal field, nested."""
    found = []
    for name, info in model.model_fields.items():
        prop = SCHEMA.properties(type_name).get(info.alias or name)
        if prop is None:
            continue
        annotation = info.annotation
        for arg in (annotation, *get_args(annotation)):
            if get_origin(arg) is Literal:
                found.append((type_name, prop.name, get_args(arg)))
            inner = get_args(arg)[0] if get_origin(arg) is list else arg
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                found += literal_fields(inner, prop.type)
    return found


@pytest.mark.parametrize("name", sorted(ENTITY_MODELS))
def test_every_field_of_each_model_is_a_property_qbo_knows(name: str):
    assert SCHEMA.problems(name, wire_body(name, filled(ENTITY_MODELS[name]))) == []


@pytest.mark.parametrize("name", sorted(ENTITY_MODELS))
def test_every_value_a_model_allows_is_one_qbo_allows(name: str):
    for type_name, prop, values in literal_fields(ENTITY_MODELS[name], name):
        enum = SCHEMA.properties(type_name)[prop].type
        assert set(values) <= set(SCHEMA.enums.get(enum, values)), f"{type_name}.{prop}"


async def test_every_request_the_client_builds_conforms_to_the_schema():
    wire = Wire()
    http = httpx.AsyncClient(transport=httpx.MockTransport(wire))
    tokens = StaticTokenProvider({REALM: "t"})
    unlimited = RateBudget(rate=10_000, period=1.0, concurrency=10)
    async with QboClient("https://qbo.test", tokens, http=http, budget=unlimited) as qbo:
        acme = qbo.company(REALM)
        for name, model in ENTITY_MODELS.items():
            entity: Entity = filled(model)  # type: ignore[assignment]
            await acme.create(model, entity)
            await acme.update(model, entity)
            await acme.update(model, entity, sparse=False)
            await acme.update(model, {"Id": "7", "SyncToken": "1"})
            await acme.delete(model, "7", "1")
            if "Active" in SCHEMA.properties(name):  # name lists are inactivated, not deleted
                await acme.inactivate(model, "7", "1")
        await acme.void_invoice("7", "1")
        await acme.void_payment("7", "1")
        await acme.batch(
            [BatchOperation("create", name, filled(model)) for name, model in ENTITY_MODELS.items()]
            + [
                BatchOperation("update", "Invoice", {"Id": "7", "SyncToken": "1"}),
                BatchOperation("delete", "Invoice", {"Id": "7", "SyncToken": "1"}),
                BatchOperation("void", "Payment", {"Id": "7", "SyncToken": "1"}),
                BatchOperation("query", query="SELECT * FROM Invoice"),
            ]
        )
    await http.aclose()
    bodies: list[tuple[str, Any]] = []
    for path, body in wire.sent:
        if path == "batch":
            for item in body["BatchItemRequest"]:
                bodies += [(k, v) for k, v in item.items() if k in ENTITY_MODELS]
        elif path in {n.lower() for n in ENTITY_MODELS}:
            bodies.append((entity_of(path), body))
    assert len(bodies) > 6 * len(ENTITY_MODELS)
    problems = [
        (name, p)
        for name, body in bodies
        for p in SCHEMA.problems(name, with_enum_values(name, body))
    ]
    assert problems == [], "\n".join(f"{n}: {p}" for n, p in problems)


def test_a_property_qbo_does_not_know_is_caught():
    # The check above would fail on a model field QBO has never heard of.
    class Drifted(QboModel):
        DisplayName: str = "x"
        FavouriteColour: str = "teal"

    assert SCHEMA.problems("Customer", Drifted().to_qbo()) == [
        "Customer.FavouriteColour: not a property of Customer"
    ]
