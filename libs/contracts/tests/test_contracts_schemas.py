"""The committed JSON Schema snapshots match the models, and the CLI guards them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from dealbooks_contracts import all_specs, find_incompatibilities
from dealbooks_contracts.schemas import (
    SNAPSHOT_DIR,
    BreakingChangeError,
    check_snapshots,
    load_snapshot,
    render,
    schema_for,
    snapshot_path,
    write_snapshots,
)
from dealbooks_contracts.schemas.__main__ import main


@pytest.mark.parametrize("spec", all_specs(), ids=lambda spec: spec.topic)
def test_committed_snapshot_is_compatible_with_and_equal_to_the_model(spec: object) -> None:
    from dealbooks_contracts import EventSpec

    assert isinstance(spec, EventSpec)
    committed = load_snapshot(spec.topic)
    current = schema_for(spec)
    breaking = find_incompatibilities(committed, current)
    assert not breaking, "\n".join(map(str, breaking))
    assert snapshot_path(spec.topic).read_text("utf-8") == render(current), (
        f"{spec.topic}: snapshot out of date, run `make schemas`"
    )


def test_no_snapshot_without_a_registered_topic() -> None:
    assert check_snapshots() == []


def test_snapshots_pin_type_and_version() -> None:
    for spec in all_specs():
        properties = schema_for(spec)["properties"]
        assert properties["type"]["const"] == spec.type
        assert properties["version"]["const"] == spec.version


@pytest.fixture
def snapshots(tmp_path: Path) -> Path:
    directory = tmp_path / "schemas"
    directory.mkdir()
    for path in SNAPSHOT_DIR.glob("*.json"):
        shutil.copy(path, directory)
    return directory


def _edit(directory: Path, topic: str, edit: object) -> None:
    path = directory / f"{topic}.json"
    schema = json.loads(path.read_text("utf-8"))
    assert callable(edit)
    edit(schema)
    path.write_text(render(schema), "utf-8")


def test_check_passes_on_the_committed_snapshots(snapshots: Path) -> None:
    assert main(["check", "--dir", str(snapshots)]) == 0


def test_check_fails_when_a_snapshot_is_missing(snapshots: Path) -> None:
    (snapshots / "invoice.drafted.v1.json").unlink()
    assert main(["check", "--dir", str(snapshots)]) == 1
    assert main(["write", "--dir", str(snapshots)]) == 0
    assert main(["check", "--dir", str(snapshots)]) == 0


def test_check_reports_a_model_that_broke_its_snapshot(
    snapshots: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The committed snapshot knows a field the model no longer has: as if it had been removed.
    _edit(
        snapshots,
        "invoice.drafted.v1",
        lambda s: s["$defs"]["InvoiceDrafted"]["properties"].update(legacy={"type": "string"}),
    )
    assert main(["check", "--dir", str(snapshots)]) == 1
    err = capsys.readouterr().err
    assert "invoice.drafted.v1: incompatible change" in err
    assert "data.legacy: field_removed" in err


def test_write_refuses_a_breaking_change_unless_allowed(snapshots: Path) -> None:
    _edit(
        snapshots,
        "invoice.drafted.v1",
        lambda s: s["$defs"]["InvoiceDrafted"]["properties"].update(legacy={"type": "string"}),
    )
    before = (snapshots / "invoice.drafted.v1.json").read_text("utf-8")
    with pytest.raises(BreakingChangeError, match="legacy"):
        write_snapshots(snapshots)
    assert (snapshots / "invoice.drafted.v1.json").read_text("utf-8") == before
    assert main(["write", "--dir", str(snapshots)]) == 2
    assert main(["write", "--dir", str(snapshots), "--allow-breaking"]) == 0
    assert check_snapshots(snapshots) == []


def test_write_accepts_a_compatible_update(snapshots: Path) -> None:
    # The model gained an optional field since the snapshot: compatible, so write updates it.
    _edit(
        snapshots,
        "invoice.drafted.v1",
        lambda s: s["$defs"]["InvoiceDrafted"]["properties"].pop("quote_id"),
    )
    drifts = check_snapshots(snapshots)
    assert [(d.topic, d.breaking) for d in drifts] == [("invoice.drafted.v1", ())]
    write_snapshots(snapshots)
    assert check_snapshots(snapshots) == []


def test_orphan_snapshots_are_reported(snapshots: Path) -> None:
    shutil.copy(snapshots / "invoice.drafted.v1.json", snapshots / "invoice.teleported.v1.json")
    assert [d.topic for d in check_snapshots(snapshots)] == ["invoice.teleported.v1"]
    with pytest.raises(BreakingChangeError):
        write_snapshots(snapshots)
