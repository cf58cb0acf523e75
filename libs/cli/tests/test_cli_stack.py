"""Where `dealbooks` finds the stack, and how it fails when the stack is not there."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from dealbooks_cli.main import app
from dealbooks_cli.stack import Stack
from typer.testing import CliRunner


def _local(root: Path, endpoints: dict[str, str], operator: str | None = None) -> None:
    local = root / ".local"
    local.mkdir()
    (local / "endpoints.env").write_text("".join(f"{k}={v}\n" for k, v in endpoints.items()))
    if operator is not None:
        (local / "secrets.json").write_text(json.dumps({"operator_credential": operator}))


def test_the_environment_wins_over_what_make_up_recorded(tmp_path: Path) -> None:
    _local(tmp_path, {"KAFKA_BOOTSTRAP": "recorded:9092", "MONGODB_URI": "mongodb://recorded/"})
    stack = Stack.load({"DEALBOOKS_ROOT": str(tmp_path), "KAFKA_BOOTSTRAP": "env:9092"})
    assert stack.kafka_bootstrap == "env:9092"
    assert stack.mongodb_uri == "mongodb://recorded/"


def test_the_operator_credential_is_the_first_listed_else_the_local_stacks(
    tmp_path: Path,
) -> None:
    _local(tmp_path, {}, operator="from-make-up")
    root = {"DEALBOOKS_ROOT": str(tmp_path)}
    assert Stack.load(root).operator_credential() == "from-make-up"
    listed = {**root, "DEALBOOKS_OPERATOR_CREDENTIALS": "first, second"}
    assert Stack.load(listed).operator_credential() == "first"


def test_a_services_database_is_named_as_the_service_names_it(tmp_path: Path) -> None:
    root = {"DEALBOOKS_ROOT": str(tmp_path)}
    assert Stack.load(root).database("connector-auth") == "connector_auth"
    prefixed = Stack.load({**root, "MONGODB_DATABASE_PREFIX": "s1_"})
    assert prefixed.database("dealbooks-operator") == "s1_dealbooks_operator"
    own = Stack.load({**root, "CONNECTOR_AUTH_MONGODB_DATABASE": "auth"})
    assert own.database("connector-auth") == "auth"


def test_an_unreachable_stack_is_one_line_and_a_non_zero_exit(tmp_path: Path) -> None:
    env = {
        "DEALBOOKS_ROOT": str(tmp_path),
        "KAFKA_BOOTSTRAP": "127.0.0.1:1",
        "MONGODB_URI": "mongodb://127.0.0.1:1/",
    }
    result = CliRunner().invoke(app, ["dlq", "list", "--json"], env=env)
    assert result.exit_code == 1
    assert result.stdout == ""
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("dealbooks: cannot reach Kafka at 127.0.0.1:1")
    assert "AddressFamily" not in line  # the addresses tried, as Python prints them


def test_without_a_stack_it_says_how_to_get_one(tmp_path: Path) -> None:
    env = {"DEALBOOKS_ROOT": str(tmp_path), "KAFKA_BOOTSTRAP": None, "MONGODB_URI": None}
    result = CliRunner().invoke(app, ["accounts", "list"], env=env)
    assert result.exit_code == 1
    assert "make up" in result.stderr


@pytest.mark.integration
def test_a_refused_mongodb_credential_is_not_called_unreachable(
    mongo_uri: str, tmp_path: Path
) -> None:
    address = mongo_uri.split("//", 1)[1]
    env = {"DEALBOOKS_ROOT": str(tmp_path), "MONGODB_URI": f"mongodb://bob:s3cret@{address}"}
    result = CliRunner().invoke(app, ["accounts", "list", "--json"], env=env)
    assert (result.exit_code, result.stdout) == (1, "")
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"dealbooks: MongoDB at mongodb://{address} refused the credentials")
    assert "s3cret" not in line
