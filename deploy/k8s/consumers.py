"""Which Kafka consumer groups each service runs, read from the services' own source.

A consumer is registered with `runtime.consume("<name>", <PayloadModel>, ...)`; the kit names its
group `<service>.<name>` (`dealbooks_kit.consumer.EventConsumer.subscribe`) and reads the topic
the contracts registry gives the payload model. A library function that registers consumers for
a service may take the consumer name as a parameter; the service's call of that function then
supplies it as a keyword literal.

Reading the source (rather than building each app) needs no settings, secrets or servers, and
the deployment generator and its tests stay independent of how each app is wired.
"""

from __future__ import annotations

import ast
import functools
from dataclasses import dataclass
from pathlib import Path

from dealbooks_contracts import REGISTRY

ROOT = Path(__file__).resolve().parents[2]
_MODELS = {spec.model.__name__: spec for spec in REGISTRY}


@dataclass(frozen=True, order=True)
class Consumer:
    """One consumer of one service: its Kafka consumer group and the topic it reads."""

    service: str
    name: str
    topic: str

    @property
    def group(self) -> str:
        return f"{self.service}.{self.name}"


@dataclass(frozen=True)
class _Registration:
    name: str | None  # a literal consumer name
    parameter: str | None  # or the parameter of the enclosing function that carries it
    model: str


def _registrations(tree: ast.AST) -> dict[str | None, list[_Registration]]:
    """`.consume(name, Model, ...)` calls, grouped by the top-level function holding them."""
    found: dict[str | None, list[_Registration]] = {}
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        params = {a.arg for a in node.args.args + node.args.kwonlyargs}
        for call in ast.walk(node):
            if not (
                isinstance(call, ast.Call)
                and isinstance(call.func, ast.Attribute)
                and call.func.attr == "consume"
                and len(call.args) >= 2
                and isinstance(call.args[1], ast.Name)
                and call.args[1].id in _MODELS
            ):
                continue
            first = call.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                reg = _Registration(first.value, None, call.args[1].id)
            elif isinstance(first, ast.Name) and first.id in params:
                reg = _Registration(None, first.id, call.args[1].id)
            else:
                raise ValueError(f"consumer name not literal: {ast.unparse(call)}")
            found.setdefault(node.name, []).append(reg)
    return found


@functools.cache
def _library_registrations() -> dict[str, list[_Registration]]:
    """Functions of libs/ (but the kit, which defines `consume`) that register consumers."""
    out: dict[str, list[_Registration]] = {}
    for path in sorted((ROOT / "libs").glob("*/src/**/*.py")):
        if "dealbooks_kit" in path.parts or path.name in {"testing.py", "pytest_plugin.py"}:
            continue
        for function, regs in _registrations(ast.parse(path.read_text())).items():
            if function:
                out[function] = regs
    return out


@functools.cache
def service_consumers(service: str) -> tuple[Consumer, ...]:
    """Every consumer `service` registers, from services/<service>/src."""
    library = _library_registrations()
    consumers: set[Consumer] = set()
    for path in sorted((ROOT / "services" / service / "src").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for regs in _registrations(tree).values():
            for reg in regs:
                if reg.name is not None:
                    consumers.add(Consumer(service, reg.name, _MODELS[reg.model].topic))
        for call in ast.walk(tree):
            if not isinstance(call, ast.Call):
                continue
            func = call.func
            called = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            if called not in library:
                continue
            keywords = {
                k.arg: k.value.value
                for k in call.keywords
                if isinstance(k.value, ast.Constant) and isinstance(k.value.value, str)
            }
            for reg in library[called]:
                name = reg.name if reg.name is not None else keywords[reg.parameter]
                consumers.add(Consumer(service, name, _MODELS[reg.model].topic))
    return tuple(sorted(consumers))


def dead_letter_topic(topic: str) -> str:
    """The dead-letter topic of `topic` (architecture: `<topic>.dlq`)."""
    return REGISTRY.by_topic(topic).dlq_topic


def all_topics() -> list[tuple[str, str]]:
    """Every (topic, dead-letter topic) of the contracts registry."""
    return sorted((spec.topic, spec.dlq_topic) for spec in REGISTRY)
