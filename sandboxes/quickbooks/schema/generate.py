"""Generate the sandbox's description of QuickBooks Online entities from Intuit's XSDs.

Intuit publishes the v3 API's XML schemas in `intuit/QuickBooks-V3-Java-SDK`, under
`ipp-v3-java-data/src/main/xsd/`. The JSON API is the same model: an element becomes a JSON
property of the same name, an attribute too, the text of a simple-content type is `value`, and
`maxOccurs > 1` makes a JSON array. This script reads the schemas and writes, for every entity the
sandbox emulates and every type nested in them, each property's name, type and whether it
repeats (plus the choice it belongs to and the schema's own "read only" remarks), together with
the enumerations those types use and the source commit.

    python sandboxes/quickbooks/schema/generate.py --git-dir <clone>/.git --commit <sha>
    python sandboxes/quickbooks/schema/generate.py --xsd-dir <xsd directory> --commit <sha>

The output is `src/qbo_sandbox/qbo_schema.json`; the sandbox loads it at start.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

XS = "{http://www.w3.org/2001/XMLSchema}"
SOURCE_REPOSITORY = "intuit/QuickBooks-V3-Java-SDK"
SOURCE_PATH = "ipp-v3-java-data/src/main/xsd/"
FILES = ("IntuitBaseTypes.xsd", "IntuitNamesTypes.xsd", "Finance.xsd", "IntuitRestServiceDef.xsd")
OUTPUT = Path(__file__).resolve().parents[1] / "src" / "qbo_sandbox" / "qbo_schema.json"

# The entities the sandbox emulates (create/read/update or read only).
EMULATED = (
    "Account",
    "Bill",
    "BillPayment",
    "CompanyInfo",
    "Customer",
    "Deposit",
    "Invoice",
    "Item",
    "Payment",
    "Preferences",
    "TaxCode",
    "Term",
    "Vendor",
)
BUILTINS = {
    "string",
    "decimal",
    "boolean",
    "date",
    "dateTime",
    "int",
    "integer",
    "long",
    "positiveInteger",
    "anyURI",
    "base64Binary",
    "time",
}
# What the schema's remarks call a property QuickBooks fills in itself.
# The schema's own remarks that a property is not written by clients; noisy (Payment.TotalAmt
# is "Non QB-writable" yet required), so the sandbox only takes them as a hint.
READ_ONLY_TEXT = re.compile(
    r"read[- ]?only|output only|non qb-writable|cannot be written to quickbooks", re.IGNORECASE
)


@dataclass
class Prop:
    name: str
    type: str
    repeats: bool = False
    attribute: bool = False
    text: bool = False
    choice: str | None = None
    branch: int = 0
    read_only: bool = False

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.type, "repeats": self.repeats}
        if self.attribute:
            out["attribute"] = True
        if self.text:
            out["text"] = True
        if self.choice:
            out["choice"] = self.choice
            out["branch"] = self.branch
        if self.read_only:
            out["read_only_remark"] = True
        return out


@dataclass
class Schema:
    complex: dict[str, ET.Element] = field(default_factory=dict)
    simple: dict[str, ET.Element] = field(default_factory=dict)
    groups: dict[str, ET.Element] = field(default_factory=dict)
    entity_elements: list[str] = field(default_factory=list)

    def add(self, root: ET.Element) -> None:
        for node in root:
            name = node.get("name")
            if name is None:
                continue
            if node.tag == XS + "complexType":
                self.complex[name] = node
            elif node.tag == XS + "simpleType":
                self.simple[name] = node
            elif node.tag == XS + "group":
                self.groups[name] = node
            elif node.tag == XS + "element" and node.get("substitutionGroup") == "IntuitObject":
                self.entity_elements.append(name)


def local(qname: str) -> str:
    return qname.split(":", 1)[-1]


def documentation(node: ET.Element) -> str:
    texts = [d.text or "" for d in node.iter(XS + "documentation")]
    return " ".join(" ".join(texts).split())


def is_read_only(node: ET.Element) -> bool:
    return bool(READ_ONLY_TEXT.search(documentation(node)))


class Describer:
    """Walks complex types into flat property lists (inherited properties first)."""

    def __init__(self, schema: Schema) -> None:
        self.schema = schema
        self.types: dict[str, dict[str, Any]] = {}
        self.enums: dict[str, list[str]] = {}
        self.pending: list[str] = []
        self.anonymous: dict[str, ET.Element] = {}
        self.choices = 0

    def type_name(self, qname: str | None) -> str:
        """A property's type as the description spells it: a builtin, an enum or a complex type."""
        if qname is None:
            return "string"
        name = local(qname)
        if qname.startswith("xs:") or name in BUILTINS:
            return name
        if name in self.schema.simple:
            return self.simple_type(name)
        if name in self.schema.complex:
            self.want(name)
            return name
        raise KeyError(f"unknown type {qname}")

    def simple_type(self, name: str) -> str:
        node = self.schema.simple[name]
        restriction = node.find(XS + "restriction")
        if restriction is None:
            union = node.find(XS + "union")
            if union is not None:
                return "string"
            raise KeyError(f"simple type {name} without restriction")
        values = [e.get("value", "") for e in restriction.findall(XS + "enumeration")]
        if values:
            self.enums[name] = values
            return name
        return self.type_name(restriction.get("base"))

    def want(self, name: str) -> None:
        if name not in self.types and name not in self.pending:
            self.pending.append(name)

    def run(self, roots: tuple[str, ...]) -> None:
        for root in roots:
            self.want(root)
        while self.pending:
            name = self.pending.pop(0)
            node = self.anonymous.get(name) or self.schema.complex[name]
            self.types[name] = self.describe(name, node)

    def describe(self, name: str, node: ET.Element) -> dict[str, Any]:
        self.choices = 0
        out: dict[str, Any] = {}
        props: list[Prop] = []
        content = node.find(XS + "complexContent")
        simple = node.find(XS + "simpleContent")
        if node.get("abstract") == "true":
            out["abstract"] = True
        if content is not None:
            ext = content.find(XS + "extension")
            if ext is None:
                ext = content.find(XS + "restriction")
            assert ext is not None, name
            base = local(ext.get("base", ""))
            out["base"] = base
            props.extend(self.inherited(base))
            props.extend(self.particles(ext, name, False, None))
            props.extend(self.attributes(ext))
        elif simple is not None:
            ext = simple.find(XS + "extension")
            assert ext is not None, name
            props.append(Prop("value", self.type_name(ext.get("base")), text=True))
            props.extend(self.attributes(ext))
        else:
            props.extend(self.particles(node, name, False, None))
            props.extend(self.attributes(node))
        seen: dict[str, int] = {}
        unique: list[Prop] = []
        for prop in props:
            # A derived type may redeclare an inherited element; the last declaration wins.
            if prop.name in seen:
                unique[seen[prop.name]] = prop
            else:
                seen[prop.name] = len(unique)
                unique.append(prop)
        out["properties"] = [p.as_json() for p in unique]
        return out

    def inherited(self, base: str) -> list[Prop]:
        if base not in self.schema.complex:
            return []
        self.want(base)
        node = self.schema.complex[base]
        described = self.describe(base, node)
        return [
            Prop(
                p["name"],
                p["type"],
                p["repeats"],
                p.get("attribute", False),
                p.get("text", False),
                p.get("choice"),
                p.get("branch", 0),
                p.get("read_only_remark", False),
            )
            for p in described["properties"]
        ]

    def particles(
        self, node: ET.Element, owner: str, repeats: bool, choice: tuple[str, int] | None
    ) -> list[Prop]:
        """The elements of a content model; each alternative of a choice is a branch."""
        props: list[Prop] = []
        in_choice = node.tag == XS + "choice"
        for index, child in enumerate(node):
            many = repeats or child.get("maxOccurs", "1") not in {"0", "1"}
            where = (choice[0], index) if in_choice and choice else choice
            if child.tag == XS + "sequence":
                props.extend(self.particles(child, owner, many, where))
            elif child.tag == XS + "choice":
                self.choices += 1
                props.extend(self.particles(child, owner, many, (f"{owner}:{self.choices}", 0)))
            elif child.tag == XS + "group":
                group = self.schema.groups[local(child.get("ref", ""))]
                props.extend(self.particles(group, owner, many, where))
            elif child.tag == XS + "element":
                props.append(self.element(child, owner, many, where))
            elif child.tag == XS + "any":
                props.append(Prop("any", "any", repeats=many))
        return props

    def element(
        self, node: ET.Element, owner: str, repeats: bool, choice: tuple[str, int] | None
    ) -> Prop:
        name = node.get("name") or local(node.get("ref", ""))
        inline = node.find(XS + "complexType")
        inline_simple = node.find(XS + "simpleType")
        if inline is not None:
            type_name = f"{owner}.{name}"
            self.anonymous[type_name] = inline
            self.want(type_name)
        elif inline_simple is not None:
            type_name = f"{owner}.{name}"
            self.schema.simple[type_name] = inline_simple
            type_name = self.simple_type(type_name)
        else:
            type_name = self.type_name(node.get("type"))
        return Prop(
            name,
            type_name,
            repeats,
            choice=choice[0] if choice else None,
            branch=choice[1] if choice else 0,
            read_only=is_read_only(node),
        )

    def attributes(self, node: ET.Element) -> list[Prop]:
        return [
            Prop(
                a.get("name", ""),
                self.type_name(a.get("type")),
                attribute=True,
                read_only=is_read_only(a),
            )
            for a in node.findall(XS + "attribute")
        ]


def read_sources(args: argparse.Namespace) -> dict[str, bytes]:
    if args.xsd_dir:
        return {name: (Path(args.xsd_dir) / name).read_bytes() for name in FILES}
    return {
        name: subprocess.run(
            ["git", "--git-dir", args.git_dir, "show", f"{args.commit}:{SOURCE_PATH}{name}"],
            check=True,
            capture_output=True,
        ).stdout
        for name in FILES
    }


def build(sources: dict[str, bytes], commit: str) -> dict[str, Any]:
    schema = Schema()
    for name in FILES:
        schema.add(ET.fromstring(sources[name]))  # noqa: S314 (pinned Intuit schema, not user input)
    describer = Describer(schema)
    describer.run(EMULATED)
    return {
        "source": {
            "repository": SOURCE_REPOSITORY,
            "path": SOURCE_PATH,
            "commit": commit,
            "files": list(FILES),
            "generator": "sandboxes/quickbooks/schema/generate.py",
        },
        "entities": list(EMULATED),
        "all_entities": sorted(schema.entity_elements),
        "types": dict(sorted(describer.types.items())),
        "enums": dict(sorted(describer.enums.items())),
    }


def render(description: dict[str, Any]) -> str:
    """JSON with one property or enumeration per line, so a regeneration diffs readably."""
    compact = {"separators": (", ", ": ")}
    out = ["{"]
    out.append(f'"source": {json.dumps(description["source"], **compact)},')
    out.append(f'"entities": {json.dumps(description["entities"])},')
    out.append(f'"all_entities": {json.dumps(description["all_entities"])},')
    out.append('"types": {')
    types = list(description["types"].items())
    for index, (name, spec) in enumerate(types):
        head = {k: v for k, v in spec.items() if k != "properties"}
        out.append(f" {json.dumps(name)}: {{")
        for key, value in head.items():
            out.append(f"  {json.dumps(key)}: {json.dumps(value)},")
        out.append('  "properties": [')
        props = spec["properties"]
        for i, prop in enumerate(props):
            comma = "," if i < len(props) - 1 else ""
            out.append(f"   {json.dumps(prop, **compact)}{comma}")
        out.append("  ]")
        out.append(" }," if index < len(types) - 1 else " }")
    out.append("},")
    out.append('"enums": {')
    enums = list(description["enums"].items())
    for index, (name, values) in enumerate(enums):
        comma = "," if index < len(enums) - 1 else ""
        out.append(f" {json.dumps(name)}: {json.dumps(values)}{comma}")
    out.append("}")
    out.append("}")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--git-dir", help="a clone of intuit/QuickBooks-V3-Java-SDK (git dir)")
    where.add_argument("--xsd-dir", help="a directory holding the .xsd files")
    parser.add_argument("--commit", default="HEAD", help="the commit to read (with --git-dir)")
    parser.add_argument("--output", default=str(OUTPUT))
    args = parser.parse_args(argv)
    if args.xsd_dir and args.commit == "HEAD":
        parser.error("--xsd-dir needs --commit: the SDK commit the files were taken from")
    commit = args.commit
    if args.git_dir:
        commit = subprocess.run(
            ["git", "--git-dir", args.git_dir, "rev-parse", args.commit],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    description = build(read_sources(args), commit)
    Path(args.output).write_text(render(description))
    print(f"{args.output}: {len(description['types'])} types", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
