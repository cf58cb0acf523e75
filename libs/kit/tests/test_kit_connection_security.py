"""Kafka and MongoDB connection security from the settings: what each client is given, which
combinations refuse to start, and that the SASL password shows nowhere."""

from __future__ import annotations

import datetime
import logging
import ssl
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from dealbooks_kit import KitSettings, make_broker
from dealbooks_kit.kafka import kafka_client_options, kafka_security, kafka_ssl_context
from dealbooks_kit.logging import configure_logging, get_logger
from dealbooks_kit.mongo import make_mongo_client, mongo_client
from faststream.security import SASLPlaintext, SASLScram256, SASLScram512
from pydantic import ValidationError

PASSWORD = "pw-7f3a9c-never-shown"
CA_NAME = "dealbooks test CA"


def _pem_files(directory: Path) -> dict[str, Path]:
    """A CA certificate, and a client certificate it signed with its key: as PEM files."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_NAME)])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "status-tracker")]))
        .issuer_name(ca_name)
        .public_key(client_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(ca_key, hashes.SHA256())
    )
    key_pem = client_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    cert_pem = client.public_bytes(serialization.Encoding.PEM)
    files = {
        "ca": directory / "ca.pem",
        "cert": directory / "client.pem",
        "key": directory / "client.key",
        "combined": directory / "client-with-key.pem",
    }
    files["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files["cert"].write_bytes(cert_pem)
    files["key"].write_bytes(key_pem)
    files["combined"].write_bytes(cert_pem + key_pem)
    return files


@pytest.fixture
def pem(tmp_path: Path) -> dict[str, Path]:
    return _pem_files(tmp_path)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in (
        "KAFKA_SECURITY_PROTOCOL",
        "KAFKA_SASL_MECHANISM",
        "KAFKA_SASL_USERNAME",
        "KAFKA_SASL_PASSWORD",
        "KAFKA_SSL_CAFILE",
        "KAFKA_SSL_CERTFILE",
        "KAFKA_SSL_KEYFILE",
        "MONGODB_TLS_CAFILE",
        "MONGODB_TLS_CERTFILE",
    ):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def _ca_subjects(context: ssl.SSLContext) -> list[object]:
    return [cert["subject"] for cert in context.get_ca_certs()]


def test_plaintext_by_default_gives_clients_no_security(clean_env: pytest.MonkeyPatch) -> None:
    settings = KitSettings()

    assert kafka_security(settings) is None
    assert kafka_ssl_context(settings) is None
    options = kafka_client_options(settings)
    assert options["security_protocol"] == "PLAINTEXT"
    assert "sasl_mechanism" not in options
    assert "ssl_context" not in options


def test_sasl_ssl_from_the_environment_gives_scram_512_over_tls_with_the_ca(
    clean_env: pytest.MonkeyPatch, pem: dict[str, Path]
) -> None:
    clean_env.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    clean_env.setenv("KAFKA_SASL_USERNAME", "status-tracker")
    clean_env.setenv("KAFKA_SASL_PASSWORD", PASSWORD)
    clean_env.setenv("KAFKA_SSL_CAFILE", str(pem["ca"]))
    settings = KitSettings()

    security = kafka_security(settings)
    assert isinstance(security, SASLScram512)
    assert security.use_ssl
    assert security.username == "status-tracker"
    assert security.password == PASSWORD
    options = kafka_client_options(settings)
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_username"] == "status-tracker"
    assert options["sasl_plain_password"] == PASSWORD
    context = options["ssl_context"]
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname
    assert ((("commonName", CA_NAME),),) in _ca_subjects(context)


def sasl_ssl(pem: dict[str, Path], **more: Any) -> KitSettings:
    """Settings of a service that reaches Kafka over SASL_SSL as status-tracker."""
    return KitSettings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_username="status-tracker",
        kafka_sasl_password=PASSWORD,
        kafka_ssl_cafile=str(pem["ca"]),
        **more,
    )


def test_the_broker_gives_its_clients_the_configured_security(
    clean_env: pytest.MonkeyPatch, pem: dict[str, Path]
) -> None:
    settings = sasl_ssl(pem)
    broker = make_broker(settings)

    (config,) = broker.config.configs  # type: ignore[attr-defined]
    client = config.builder.keywords
    assert client["security_protocol"] == "SASL_SSL"
    assert client["sasl_mechanism"] == "SCRAM-SHA-512"
    assert client["sasl_plain_username"] == "status-tracker"
    assert client["sasl_plain_password"] == PASSWORD
    assert ((("commonName", CA_NAME),),) in _ca_subjects(client["ssl_context"])


@pytest.mark.parametrize(
    ("mechanism", "security_type"),
    [("SCRAM-SHA-256", SASLScram256), ("PLAIN", SASLPlaintext), ("SCRAM-SHA-512", SASLScram512)],
)
def test_sasl_mechanism_is_the_one_configured(
    clean_env: pytest.MonkeyPatch, mechanism: str, security_type: type[object]
) -> None:
    settings = KitSettings(
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism=mechanism,
        kafka_sasl_username="u",
        kafka_sasl_password=PASSWORD,
    )

    security = kafka_security(settings)
    assert type(security) is security_type
    assert not security.use_ssl  # type: ignore[union-attr]
    options = kafka_client_options(settings)
    assert options["sasl_mechanism"] == mechanism
    assert "ssl_context" not in options
    # What aiokafka does with it: encode it (SCRAM) or join it with the user names (PLAIN).
    assert options["sasl_plain_password"].encode() == PASSWORD.encode()
    assert "\0".join(["u", "u", options["sasl_plain_password"]]) == f"u\0u\0{PASSWORD}"


def test_ssl_with_a_client_certificate_loads_it(
    clean_env: pytest.MonkeyPatch, pem: dict[str, Path]
) -> None:
    settings = KitSettings(
        kafka_security_protocol="SSL",
        kafka_ssl_cafile=str(pem["ca"]),
        kafka_ssl_certfile=str(pem["cert"]),
        kafka_ssl_keyfile=str(pem["key"]),
    )

    security = kafka_security(settings)
    assert security is not None and security.use_ssl
    options = kafka_client_options(settings)
    assert options["security_protocol"] == "SSL"
    assert "sasl_mechanism" not in options
    assert ((("commonName", CA_NAME),),) in _ca_subjects(options["ssl_context"])


def test_a_client_key_that_is_not_the_certificates_is_refused(
    clean_env: pytest.MonkeyPatch, pem: dict[str, Path], tmp_path: Path
) -> None:
    (tmp_path / "other").mkdir()
    other = _pem_files(tmp_path / "other")
    settings = KitSettings(
        kafka_security_protocol="SSL",
        kafka_ssl_certfile=str(pem["cert"]),
        kafka_ssl_keyfile=str(other["key"]),
    )

    with pytest.raises(ssl.SSLError):
        kafka_ssl_context(settings)


def test_sasl_without_a_username_refuses_to_start(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    clean_env.setenv("KAFKA_SASL_PASSWORD", PASSWORD)

    with pytest.raises(ValidationError) as refused:
        KitSettings()

    message = str(refused.value)
    assert "KAFKA_SECURITY_PROTOCOL=SASL_SSL needs KAFKA_SASL_USERNAME" in message
    assert PASSWORD not in message


def test_sasl_without_a_password_refuses_to_start(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    clean_env.setenv("KAFKA_SASL_USERNAME", "status-tracker")

    with pytest.raises(ValidationError, match="KAFKA_SASL_PASSWORD"):
        KitSettings()


def test_tls_files_without_a_tls_protocol_refuse_to_start(
    clean_env: pytest.MonkeyPatch, pem: dict[str, Path]
) -> None:
    # Meant to be encrypted, would have gone in the clear.
    clean_env.setenv("KAFKA_SSL_CAFILE", str(pem["ca"]))

    with pytest.raises(ValidationError, match="does not use TLS"):
        KitSettings()


def test_an_unknown_protocol_is_refused_without_echoing_values(
    clean_env: pytest.MonkeyPatch,
) -> None:
    clean_env.setenv("KAFKA_SASL_MECHANISM", "SCRAM-SHA-1")
    clean_env.setenv("KAFKA_SASL_PASSWORD", PASSWORD)

    with pytest.raises(ValidationError, match="KAFKA_SASL_MECHANISM") as refused:
        KitSettings()
    assert PASSWORD not in str(refused.value)


def test_the_password_is_in_no_repr_and_no_log_line(
    clean_env: pytest.MonkeyPatch, pem: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    settings = sasl_ssl(
        pem, mongodb_uri="mongodb://tracker:mongo-pw-52e1@db.example:27017/?tls=true"
    )
    broker = make_broker(settings)
    options = kafka_client_options(settings)

    shown = [
        repr(settings),
        str(settings),
        settings.model_dump_json(),
        repr(broker.config),  # type: ignore[attr-defined]
        repr(options),
        str(options),
        f"{options['sasl_plain_password']}",
    ]
    for text in shown:
        assert PASSWORD not in text
    # The MongoDB URI may carry credentials too.
    assert "mongo-pw-52e1" not in repr(settings)

    configure_logging("kit-test", "DEBUG", json=True)
    try:
        get_logger("test").info(
            "connecting", settings=settings.model_dump(), options=options, security=options
        )
        logging.getLogger("aiokafka").warning("client options %s %r", options, options)
    finally:
        logging.getLogger().handlers.clear()
    logged = capsys.readouterr().err
    assert "connecting" in logged and "client options" in logged
    assert PASSWORD not in logged


def test_mongodb_tls_files_are_given_to_the_client(
    clean_env: pytest.MonkeyPatch, pem: dict[str, Path]
) -> None:
    clean_env.setenv("MONGODB_TLS_CAFILE", str(pem["ca"]))
    clean_env.setenv("MONGODB_TLS_CERTFILE", str(pem["combined"]))
    settings = KitSettings(
        service_name="status-tracker", mongodb_uri="mongodb://tracker:pw@db.example:27017/"
    )

    client = mongo_client(settings)

    pool = client.options.pool_options
    context = pool._ssl_context
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert ((("commonName", CA_NAME),),) in _ca_subjects(context)
    assert pool.metadata["application"]["name"] == "status-tracker"


def test_mongodb_without_tls_files_takes_tls_from_the_uri_only(
    clean_env: pytest.MonkeyPatch,
) -> None:
    plain = make_mongo_client("mongodb://127.0.0.1:27017/", "kit-test")
    from_uri = make_mongo_client("mongodb://127.0.0.1:27017/?tls=true", "kit-test")

    assert plain.options.pool_options._ssl_context is None
    assert isinstance(from_uri.options.pool_options._ssl_context, ssl.SSLContext)
