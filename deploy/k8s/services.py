"""Writes the generated Kubernetes manifests from one table, so they cannot drift apart.

Run `.venv/bin/python deploy/k8s/services.py` after changing the table, a service's consumers
or the contracts registry; the output is committed (tests/deploy checks it is current).

- `base/`: per service a Deployment, Service, PodDisruptionBudget and NetworkPolicy; the
  namespace-wide default-deny and DNS policies; the Ingress; the shared ConfigMap generator.
- `overlays/<env>/generated/scaling.yaml`: a KEDA ScaledObject per consuming service, one
  Kafka trigger per consumer group (read from the services' source, see `consumers.py`).
- `overlays/production/generated/`: Strimzi KafkaTopics (every registry topic and its
  dead-letter topic), a KafkaUser per service with ACLs for its own groups and topics, the
  KEDA TriggerAuthentications and the patch giving each Deployment its Kafka credentials.
- `overlays/local/generated/`: the two API sandboxes, Kafka and MongoDB for a local cluster.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, NamedTuple

import yaml

sys.path.insert(0, str(Path(__file__).parent))

from consumers import Consumer, all_topics, dead_letter_topic, service_consumers

HERE = Path(__file__).parent
PART_OF = {"app.kubernetes.io/part-of": "dealbooks"}
HTTP_PORT = 8000
# The one writable directory of a read-only root filesystem: an emptyDir per pod.
SCRATCH = "/tmp"  # noqa: S108


class Service(NamedTuple):
    name: str
    prefix: str  # its settings' environment prefix
    public: bool  # reached from outside through the Ingress
    kafka: bool  # talks to Kafka (consumes or publishes)
    mongodb: bool  # keeps state in MongoDB
    external_apis: bool  # calls QuickBooks Online and the CRM over HTTPS
    calls: tuple[str, ...]  # services it calls over HTTP inside the cluster
    produces: tuple[str, ...]  # topics it publishes to (architecture.md, "Services")


_TOKENS = ("connector-auth",)  # access tokens come from connector-auth (architecture.md)

SERVICES = [
    Service(
        "connector-auth",
        "CONNECTOR_AUTH_",
        True,
        True,
        True,
        True,
        (),
        (
            "connector.account-connected.v1",
            "connector.account-disconnected.v1",
            "connector.account-reauth-required.v1",
            "connector.portal-installed.v1",
            "connector.portal-uninstalled.v1",
        ),
    ),
    Service(
        "webhook-gateway",
        "WEBHOOK_GATEWAY_",
        True,
        True,
        True,
        False,
        (),
        ("qbo.entity-changed.v1", "crm.object-changed.v1"),
    ),
    Service(
        "invoice-builder",
        "INVOICE_BUILDER_",
        False,
        True,
        True,
        True,
        _TOKENS,
        (
            "crm.invoice-requested.v1",
            "crm.invoice-link-requested.v1",
            "invoice.drafted.v1",
            "invoice.linked.v1",
            "invoice.request-rejected.v1",
        ),
    ),
    Service(
        "status-tracker",
        "STATUS_TRACKER_",
        False,
        True,
        True,
        True,
        _TOKENS,
        ("invoice.status-changed.v1", "invoice.payment-recorded.v1"),
    ),
    Service(
        "reminders",
        "REMINDERS_",
        False,
        True,
        True,
        True,
        _TOKENS,
        ("reminder.task-opened.v1", "reminder.task-closed.v1"),
    ),
    Service(
        "contact-sync",
        "CONTACT_SYNC_",
        False,
        True,
        True,
        True,
        _TOKENS,
        ("contact.synced.v1", "contact.sync-failed.v1"),
    ),
    Service(
        "product-sync",
        "PRODUCT_SYNC_",
        False,
        True,
        True,
        True,
        _TOKENS,
        ("product.synced.v1", "product.sync-failed.v1"),
    ),
    Service(
        "mapping-registry",
        "MAPPING_REGISTRY_",
        False,
        True,
        True,
        True,
        _TOKENS,
        ("mapping.changed.v1",),
    ),
    # The console keeps no state and needs neither Kafka nor MongoDB (console/app.py).
    Service(
        "console",
        "CONSOLE_",
        True,
        False,
        False,
        False,
        (
            "connector-auth",
            "invoice-builder",
            "status-tracker",
            "mapping-registry",
            "contact-sync",
            "product-sync",
            "reminders",
        ),
        (),
    ),
]

# The API sandboxes the local overlay runs in place of Intuit and HubSpot.
SANDBOXES = {"qbo-sandbox": "qbo_sandbox", "crm-sandbox": "crm_sandbox"}

# Non-secret settings every service reads unprefixed; the overlays merge their own values.
INFRA_CONFIG = {
    "KAFKA_BOOTSTRAP": "kafka:9092",
    "MONGODB_URI": "mongodb://mongodb:27017/",
    "KAFKA_IDEMPOTENCE": "true",
    "QBO_BASE_URL": "https://quickbooks.api.intuit.com",
    "CRM_BASE_URL": "https://api.hubapi.com",
    "CONNECTOR_AUTH_URL": "http://connector-auth",
    "INVOICE_BUILDER_URL": "http://invoice-builder",
    "STATUS_TRACKER_URL": "http://status-tracker",
    "MAPPING_REGISTRY_URL": "http://mapping-registry",
    "CONTACT_SYNC_URL": "http://contact-sync",
    "PRODUCT_SYNC_URL": "http://product-sync",
    "REMINDERS_URL": "http://reminders",
    "CRM_APP_ID": "",
}

# Public paths (README "what the ingress exposes"); everything else stays on the cluster network.
INGRESS_PATHS = [
    ("/install", "connector-auth"),
    ("/signin", "connector-auth"),
    ("/signout", "connector-auth"),
    ("/oauth", "connector-auth"),
    ("/v1", "connector-auth"),
    ("/webhooks", "webhook-gateway"),
    ("/", "console"),
]
INGRESS_NAMESPACE = "ingress-nginx"
MONITORING_NAMESPACE = "monitoring"

# Scaling. A service's useful replica count is bounded by its topics' partitions (one
# partition has one consumer per group): TOPIC_PARTITIONS bounds MAX_REPLICAS.
TOPIC_PARTITIONS = 12
DLQ_PARTITIONS = 3
MAX_REPLICAS = 6
LAG_THRESHOLD = 100
KAFKA_CLUSTER = "dealbooks-kafka"  # the Strimzi Kafka resource (production)
KAFKA_CA_SECRET = f"{KAFKA_CLUSTER}-cluster-ca-cert"


def _dump(docs: list[dict[str, Any]], header: str = "") -> str:
    body = "---\n".join(yaml.safe_dump(d, sort_keys=False, width=100) for d in docs)
    return f"# Generated by deploy/k8s/services.py: do not edit.\n{header}{body}"


def _labels(name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": name, **PART_OF}


def _selector(name: str) -> dict[str, Any]:
    return {"matchLabels": {"app.kubernetes.io/name": name}}


def _http_probe(path: str) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": "http"}}


def pod_security() -> dict[str, Any]:
    """The pod-level part of the "restricted" Pod Security Standard."""
    return {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "fsGroup": 10001,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def deployment(
    name: str,
    env: list[dict[str, Any]],
    *,
    ready: str = "/readyz",
    live: str = "/healthz",
    env_from: list[dict[str, Any]] | None = None,
    args: list[str] | None = None,
    replicas: int | None = None,
    volumes: list[dict[str, Any]] | None = None,
    mounts: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A Deployment of one dealbooks image, locked down: non-root, read-only root filesystem
    with a writable /tmp, no capabilities, no service-account token."""
    container: dict[str, Any] = {
        "name": name,
        "image": f"dealbooks/{name}",
        "ports": [{"name": "http", "containerPort": HTTP_PORT}],
    }
    if args:
        container["args"] = args
    container["env"] = [
        {"name": "TMPDIR", "value": SCRATCH},
        {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"},
        *env,
    ]
    if env_from:
        container["envFrom"] = env_from
    container |= {
        "readinessProbe": {**_http_probe(ready), "periodSeconds": 5},
        "livenessProbe": {**_http_probe(live), "periodSeconds": 10, "failureThreshold": 6},
        "resources": {
            "requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"memory": "256Mi"},
        },
        "securityContext": container_security(),
        "volumeMounts": [{"name": "tmp", "mountPath": SCRATCH}, *(mounts or [])],
    }
    spec: dict[str, Any] = {}
    if replicas is not None:
        spec["replicas"] = replicas
    spec |= {
        "selector": _selector(name),
        "template": {
            "metadata": {
                "labels": _labels(name),
                "annotations": {
                    "prometheus.io/scrape": "true",
                    "prometheus.io/port": str(HTTP_PORT),
                    "prometheus.io/path": "/metrics",
                },
            },
            "spec": {
                "automountServiceAccountToken": False,
                "enableServiceLinks": False,
                "securityContext": pod_security(),
                "terminationGracePeriodSeconds": 30,
                "containers": [container],
                "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}, *(volumes or [])],
            },
        },
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": _labels(name)},
        "spec": spec,
    }


def service(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": _labels(name)},
        "spec": {
            "selector": {"app.kubernetes.io/name": name},
            "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
        },
    }


def disruption_budget(name: str) -> dict[str, Any]:
    # maxUnavailable (not minAvailable) never blocks a node drain at one replica.
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": name, "labels": _labels(name)},
        "spec": {
            "maxUnavailable": 1,
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
            "selector": _selector(name),
        },
    }


def _pods(*names: str) -> list[dict[str, Any]]:
    return [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": n}}} for n in names]


def _namespace(name: str) -> dict[str, Any]:
    return {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": name}}}


_HTTP = [{"protocol": "TCP", "port": HTTP_PORT}]
_KAFKA = [{"protocol": "TCP", "port": 9092}, {"protocol": "TCP", "port": 9093}]
_MONGODB = [{"protocol": "TCP", "port": 27017}]
_HTTPS = [{"protocol": "TCP", "port": 443}]
_PRIVATE = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16"]


def callers_of(name: str) -> list[str]:
    return [s.name for s in SERVICES if name in s.calls]


def network_policy(svc: Service) -> dict[str, Any]:
    """What `svc` may receive and send, on top of the namespace's default deny and DNS."""
    ingress = [{"from": [_namespace(MONITORING_NAMESPACE)], "ports": _HTTP}]
    if svc.public:
        ingress.append({"from": [_namespace(INGRESS_NAMESPACE)], "ports": _HTTP})
    if callers_of(svc.name):
        ingress.append({"from": _pods(*callers_of(svc.name)), "ports": _HTTP})
    egress: list[dict[str, Any]] = []
    if svc.calls:
        egress.append({"to": _pods(*svc.calls), "ports": _HTTP})
    if svc.kafka:
        egress.append({"to": _pods("kafka"), "ports": _KAFKA})
    if svc.mongodb:
        egress.append({"to": _pods("mongodb"), "ports": _MONGODB})
    if svc.external_apis:
        # QuickBooks Online and the CRM: public HTTPS only, nothing on private ranges.
        block = {"cidr": "0.0.0.0/0", "except": _PRIVATE}
        egress.append({"to": [{"ipBlock": block}], "ports": _HTTPS})
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": svc.name, "labels": _labels(svc.name)},
        "spec": {
            "podSelector": _selector(svc.name),
            "policyTypes": ["Ingress", "Egress"],
            "ingress": ingress,
            "egress": egress,
        },
    }


def namespace_policies() -> list[dict[str, Any]]:
    """Deny everything to and from dealbooks pods but DNS; each pod's own policy adds its
    allow-list. Other pods in the namespace (a Strimzi cluster, say) are left to their own."""
    everyone = {"matchLabels": PART_OF}
    dns_ports = [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]
    return [
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "default-deny"},
            "spec": {"podSelector": everyone, "policyTypes": ["Ingress", "Egress"]},
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "allow-dns"},
            "spec": {
                "podSelector": everyone,
                "policyTypes": ["Egress"],
                "egress": [
                    {
                        "to": [
                            {
                                **_namespace("kube-system"),
                                "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
                            }
                        ],
                        "ports": dns_ports,
                    }
                ],
            },
        },
    ]


def ingress() -> dict[str, Any]:
    paths = [
        {
            "path": path,
            "pathType": "Prefix",
            "backend": {"service": {"name": target, "port": {"name": "http"}}},
        }
        for path, target in INGRESS_PATHS
    ]
    host = "dealbooks.example.com"  # each overlay sets its own host
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {
            "name": "dealbooks",
            "annotations": {
                "cert-manager.io/cluster-issuer": "letsencrypt",
                "nginx.ingress.kubernetes.io/ssl-redirect": "true",
                "nginx.ingress.kubernetes.io/proxy-body-size": "1m",
            },
        },
        "spec": {
            "ingressClassName": "nginx",
            "tls": [{"hosts": [host], "secretName": "dealbooks-tls"}],
            "rules": [{"host": host, "http": {"paths": paths}}],
        },
    }


def service_env(svc: Service) -> list[dict[str, Any]]:
    return [
        {"name": f"{svc.prefix}SERVICE_NAME", "value": svc.name},
        {"name": f"{svc.prefix}HTTP_HOST", "value": "0.0.0.0"},
        {"name": f"{svc.prefix}HTTP_PORT", "value": str(HTTP_PORT)},
    ]


def write_base(base: Path) -> None:
    """Write the base: workloads, policies, Ingress and kustomization into `base`."""
    resources = ["namespace-policies.yaml", "ingress.yaml"]
    (base / "namespace-policies.yaml").write_text(_dump(namespace_policies()))
    (base / "ingress.yaml").write_text(_dump([ingress()]))
    for svc in SERVICES:
        env_from = [
            {"configMapRef": {"name": "dealbooks-infra"}},
            {"secretRef": {"name": f"dealbooks-{svc.name}", "optional": True}},
        ]
        # Consumers are scaled by KEDA (minReplicaCount); only the console sets replicas.
        replicas = None if service_consumers(svc.name) else 2
        docs = [
            deployment(svc.name, service_env(svc), env_from=env_from, replicas=replicas),
            service(svc.name),
            disruption_budget(svc.name),
            network_policy(svc),
        ]
        (base / f"{svc.name}.yaml").write_text(_dump(docs))
        resources.append(f"{svc.name}.yaml")
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "labels": [{"pairs": PART_OF}],
        "resources": resources,
        # Generated, so its name carries a hash of its content: a change rolls every pod.
        "configMapGenerator": [
            {"name": "dealbooks-infra", "literals": [f"{k}={v}" for k, v in INFRA_CONFIG.items()]}
        ],
    }
    (base / "kustomization.yaml").write_text(
        _dump(
            [kustomization],
            "# Secrets never go into this ConfigMap: see deploy/k8s/README.md.\n",
        )
    )


# --- scaling ---------------------------------------------------------------------------


def trigger(consumer: Consumer, *, sasl: bool) -> dict[str, Any]:
    """One KEDA Kafka trigger for one literal consumer group and its topic."""
    metadata = {
        "bootstrapServersFromEnv": "KAFKA_BOOTSTRAP",
        "consumerGroup": consumer.group,
        "topic": consumer.topic,
        "lagThreshold": str(LAG_THRESHOLD),
        "activationLagThreshold": "0",
        "offsetResetPolicy": "earliest",
        # Never more replicas than partitions that have lag, and never for lag that does not
        # move: a tenant whose records wait (paused, retrying) holds its partition's lag
        # still between polls, and adding pods would not drain it.
        "allowIdleConsumers": "false",
        "limitToPartitionsWithLag": "true",
        "excludePersistentLag": "true",
    }
    if sasl:
        metadata |= {"sasl": "scram_sha512", "tls": "enable"}
    out: dict[str, Any] = {"type": "kafka", "name": consumer.name, "metadata": metadata}
    if sasl:
        out["authenticationRef"] = {"name": f"kafka-{consumer.service}"}
    return out


def scaled_object(
    name: str, consumers: tuple[Consumer, ...], *, sasl: bool, min_replicas: int
) -> dict:
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": name, "labels": _labels(name)},
        "spec": {
            "scaleTargetRef": {"name": name},
            "minReplicaCount": min_replicas,
            "maxReplicaCount": MAX_REPLICAS,
            "pollingInterval": 15,
            "cooldownPeriod": 300,
            "advanced": {
                "horizontalPodAutoscalerConfig": {
                    "behavior": {
                        # Lag comes in bursts (a backfill, a webhook storm): add quickly,
                        # remove one pod at a time after ten quiet minutes, so partitions
                        # are not reassigned back and forth.
                        "scaleUp": {
                            "stabilizationWindowSeconds": 0,
                            "policies": [{"type": "Pods", "value": 2, "periodSeconds": 60}],
                        },
                        "scaleDown": {
                            "stabilizationWindowSeconds": 600,
                            "policies": [{"type": "Pods", "value": 1, "periodSeconds": 120}],
                        },
                    }
                }
            },
            "triggers": [trigger(c, sasl=sasl) for c in consumers],
        },
    }


def scaling(*, sasl: bool, min_replicas: int) -> list[dict[str, Any]]:
    return [
        scaled_object(s.name, consumers, sasl=sasl, min_replicas=min_replicas)
        for s in SERVICES
        if (consumers := service_consumers(s.name))
    ]


# --- production: Strimzi topics, users, client credentials ----------------------------------


def kafka_topics() -> list[dict[str, Any]]:
    docs = []
    for topic, dlq in all_topics():
        for name, partitions, retention_days in (
            (topic, TOPIC_PARTITIONS, 7),
            (dlq, DLQ_PARTITIONS, 30),
        ):
            docs.append(
                {
                    "apiVersion": "kafka.strimzi.io/v1beta2",
                    "kind": "KafkaTopic",
                    "metadata": {"name": name, "labels": {"strimzi.io/cluster": KAFKA_CLUSTER}},
                    "spec": {
                        "topicName": name,
                        "partitions": partitions,
                        "replicas": 3,
                        "config": {
                            "min.insync.replicas": "2",
                            "retention.ms": str(retention_days * 24 * 3600 * 1000),
                        },
                    },
                }
            )
    return docs


def _acl(kind: str, name: str, operations: list[str]) -> dict[str, Any]:
    return {
        "resource": {"type": kind, "name": name, "patternType": "literal"},
        "operations": operations,
    }


def kafka_user(svc: Service) -> dict[str, Any]:
    """The service's Kafka identity: read its consumers' topics under its own groups, write
    the topics it publishes and the dead-letter topics of what it reads."""
    consumers = service_consumers(svc.name)
    reads = sorted({c.topic for c in consumers})
    writes = sorted(set(svc.produces) | {dead_letter_topic(t) for t in reads})
    acls = [_acl("topic", t, ["Read", "Describe"]) for t in reads]
    acls += [_acl("topic", t, ["Write", "Describe"]) for t in writes]
    acls += [_acl("group", c.group, ["Read", "Describe"]) for c in consumers]
    return {
        "apiVersion": "kafka.strimzi.io/v1beta2",
        "kind": "KafkaUser",
        "metadata": {"name": svc.name, "labels": {"strimzi.io/cluster": KAFKA_CLUSTER}},
        "spec": {
            "authentication": {"type": "scram-sha-512"},
            "authorization": {"type": "simple", "acls": acls},
        },
    }


def trigger_authentication(name: str) -> dict[str, Any]:
    # The KafkaUser's Secret (made by Strimzi's user operator) has the password; the name is
    # the user's own, which the Deployment carries as KAFKA_SASL_USERNAME.
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "TriggerAuthentication",
        "metadata": {"name": f"kafka-{name}", "labels": _labels(name)},
        "spec": {
            "env": [{"parameter": "username", "name": "KAFKA_SASL_USERNAME"}],
            "secretTargetRef": [
                {"parameter": "password", "name": name, "key": "password"},
                {"parameter": "ca", "name": KAFKA_CA_SECRET, "key": "ca.crt"},
            ],
        },
    }


def kafka_client_patch(name: str) -> dict[str, Any]:
    """Gives a Deployment its Kafka credentials: the settings the kit reads."""
    env = [
        {"name": "KAFKA_SECURITY_PROTOCOL", "value": "SASL_SSL"},
        {"name": "KAFKA_SASL_MECHANISM", "value": "SCRAM-SHA-512"},
        {"name": "KAFKA_SASL_USERNAME", "value": name},
        {
            "name": "KAFKA_SASL_PASSWORD",
            "valueFrom": {"secretKeyRef": {"name": name, "key": "password"}},
        },
        {"name": "KAFKA_SSL_CAFILE", "value": "/etc/dealbooks/kafka-ca/ca.crt"},
    ]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": name,
                            "env": env,
                            "volumeMounts": [
                                {
                                    "name": "kafka-ca",
                                    "mountPath": "/etc/dealbooks/kafka-ca",
                                    "readOnly": True,
                                }
                            ],
                        }
                    ],
                    "volumes": [{"name": "kafka-ca", "secret": {"secretName": KAFKA_CA_SECRET}}],
                }
            }
        },
    }


def write_production(out: Path) -> None:
    kafka = [s for s in SERVICES if s.kafka]
    (out / "scaling.yaml").write_text(_dump(scaling(sasl=True, min_replicas=2)))
    (out / "kafka-topics.yaml").write_text(_dump(kafka_topics()))
    (out / "kafka-users.yaml").write_text(_dump([kafka_user(s) for s in kafka]))
    triggers = [trigger_authentication(s.name) for s in kafka if service_consumers(s.name)]
    (out / "trigger-authentications.yaml").write_text(_dump(triggers))
    (out / "kafka-client-patch.yaml").write_text(_dump([kafka_client_patch(s.name) for s in kafka]))


# --- local: sandboxes, Kafka and MongoDB in the cluster ------------------------------------


def _infra_pod(name: str, image: str, user: int, port: int, **container: Any) -> dict[str, Any]:
    """Kafka or MongoDB for a local cluster: one replica on scratch storage, restricted
    Pod Security (their images write under their own directories, so the root filesystem
    stays writable)."""
    security = container_security() | {"readOnlyRootFilesystem": False}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/name": name}},
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": _selector(name),
            "template": {
                "metadata": {"labels": {"app.kubernetes.io/name": name}},
                "spec": {
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": pod_security()
                    | {"runAsUser": user, "runAsGroup": user, "fsGroup": user},
                    "containers": [
                        {
                            "name": name,
                            "image": image,
                            "ports": [{"name": "tcp", "containerPort": port}],
                            **container,
                            "securityContext": security,
                        }
                    ],
                    "volumes": [{"name": "data", "emptyDir": {}}],
                },
            },
        },
    }


def _infra_service(name: str, port: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/name": name}},
        "spec": {
            "selector": {"app.kubernetes.io/name": name},
            "ports": [{"name": "tcp", "port": port, "targetPort": "tcp"}],
        },
    }


def local_infra() -> list[dict[str, Any]]:
    kafka_env = {
        "KAFKA_NODE_ID": "1",
        "KAFKA_PROCESS_ROLES": "broker,controller",
        "KAFKA_LISTENERS": "PLAINTEXT://:9092,CONTROLLER://:9093",
        "KAFKA_ADVERTISED_LISTENERS": "PLAINTEXT://kafka:9092",
        "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@localhost:9093",
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
        "KAFKA_NUM_PARTITIONS": "3",
        "KAFKA_LOG_DIRS": "/var/lib/kafka/data",
    }
    kafka = _infra_pod(
        "kafka",
        "apache/kafka:4.1.1",
        1000,
        9092,
        env=[{"name": k, "value": v} for k, v in kafka_env.items()],
        volumeMounts=[{"name": "data", "mountPath": "/var/lib/kafka/data"}],
        readinessProbe={"tcpSocket": {"port": 9092}, "periodSeconds": 5},
    )
    mongodb = _infra_pod(
        "mongodb",
        "mongo:7",
        999,
        27017,
        args=["mongod", "--bind_ip_all", "--dbpath", "/data/db"],
        volumeMounts=[{"name": "data", "mountPath": "/data/db"}],
        readinessProbe={"tcpSocket": {"port": 27017}, "periodSeconds": 5},
    )
    return [kafka, _infra_service("kafka", 9092), mongodb, _infra_service("mongodb", 27017)]


def local_sandboxes() -> list[dict[str, Any]]:
    """The QuickBooks and CRM sandboxes as in-cluster stand-ins for Intuit and HubSpot,
    seeded, with their webhooks pointed at the gateway."""
    qbo = deployment(
        "qbo-sandbox",
        [],
        ready="/_sandbox/health",
        live="/_sandbox/health",
        args=[
            "python",
            "-m",
            "qbo_sandbox",
            "--host",
            "0.0.0.0",
            "--port",
            "8000",
            "--seed",
            "demo",
        ],
        replicas=1,
    )
    crm = deployment(
        "crm-sandbox",
        [
            # Its loopback guard: this pod is reached over the cluster network on purpose.
            {"name": "CRM_SANDBOX_ALLOW_PUBLIC", "value": "1"},
            {"name": "CRM_SANDBOX_HOST", "value": "0.0.0.0"},
            {"name": "CRM_SANDBOX_PORT", "value": str(HTTP_PORT)},
            {"name": "CRM_SANDBOX_SEED", "value": "/etc/crm-sandbox/seed.json"},
            {"name": "CRM_SANDBOX_APP_EVENTS", "value": "none"},
        ],
        ready="/_sandbox/health",
        live="/_sandbox/health",
        args=["python", "-m", "crm_sandbox"],
        replicas=1,
        volumes=[{"name": "seed", "configMap": {"name": "crm-sandbox-seed"}}],
        mounts=[{"name": "seed", "mountPath": "/etc/crm-sandbox", "readOnly": True}],
    )
    callers = [s.name for s in SERVICES if s.external_apis]
    docs: list[dict[str, Any]] = []
    for name, pod in (("qbo-sandbox", qbo), ("crm-sandbox", crm)):
        pod["spec"]["template"]["metadata"].pop("annotations")
        policy = {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": name, "labels": _labels(name)},
            "spec": {
                "podSelector": _selector(name),
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [
                    {"from": _pods(*callers, "qbo-webhooks"), "ports": _HTTP},
                    # People's browsers reach the sandboxes' OAuth pages (port-forward).
                    {"from": [_namespace(INGRESS_NAMESPACE)], "ports": _HTTP},
                ],
                "egress": [{"to": _pods("webhook-gateway"), "ports": _HTTP}],
            },
        }
        docs += [pod, service(name), policy]
    return docs + qbo_webhooks_job()


def qbo_webhooks_job() -> list[dict[str, Any]]:
    """Registers the gateway as the QuickBooks sandbox's webhook endpoint, signed with the
    gateway's verifier token (the sandbox keeps it in memory: re-run after it restarts)."""
    script = (
        "import json, os, time, urllib.request\n"
        "body = json.dumps({'url': 'http://webhook-gateway/webhooks/quickbooks',\n"
        "    'verifier_token': os.environ['WEBHOOK_GATEWAY_QBO_VERIFIER_TOKEN'],\n"
        "    'format': 'legacy'}).encode()\n"
        "for attempt in range(60):\n"
        "    try:\n"
        "        request = urllib.request.Request('http://qbo-sandbox/_sandbox/webhooks', body,\n"
        "            {'Content-Type': 'application/json'})\n"
        "        urllib.request.urlopen(request, timeout=5)\n"
        "        break\n"
        "    except OSError:\n"
        "        time.sleep(5)\n"
        "else:\n"
        "    raise SystemExit('qbo-sandbox did not answer')\n"
    )
    pod = deployment(
        "qbo-webhooks",
        [
            {
                "name": "WEBHOOK_GATEWAY_QBO_VERIFIER_TOKEN",
                "valueFrom": {
                    "secretKeyRef": {
                        "name": "dealbooks-webhook-gateway",
                        "key": "WEBHOOK_GATEWAY_QBO_VERIFIER_TOKEN",
                    }
                },
            }
        ],
        args=["python", "-c", script],
    )["spec"]["template"]
    container = pod["spec"]["containers"][0]
    container["image"] = "dealbooks/qbo-sandbox"
    for key in ("ports", "readinessProbe", "livenessProbe"):
        container.pop(key)
    pod["spec"]["restartPolicy"] = "OnFailure"
    pod["metadata"].pop("annotations")
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "qbo-webhooks", "labels": _labels("qbo-webhooks")},
        "spec": {"backoffLimit": 3, "ttlSecondsAfterFinished": 3600, "template": pod},
    }
    policy = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "qbo-webhooks", "labels": _labels("qbo-webhooks")},
        "spec": {
            "podSelector": _selector("qbo-webhooks"),
            "policyTypes": ["Ingress", "Egress"],
            "egress": [{"to": _pods("qbo-sandbox"), "ports": _HTTP}],
        },
    }
    return [job, policy]


def local_policies() -> list[dict[str, Any]]:
    """In a local cluster the services' "external" APIs are the in-cluster sandboxes, and the
    gateway's webhooks come from them."""
    callers = [s.name for s in SERVICES if s.external_apis]
    to_sandboxes = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "local-sandbox-clients"},
        "spec": {
            "podSelector": {
                "matchExpressions": [
                    {"key": "app.kubernetes.io/name", "operator": "In", "values": callers}
                ]
            },
            "policyTypes": ["Egress"],
            "egress": [{"to": _pods(*SANDBOXES), "ports": _HTTP}],
        },
    }
    webhooks = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "local-sandbox-webhooks"},
        "spec": {
            "podSelector": _selector("webhook-gateway"),
            "policyTypes": ["Ingress"],
            "ingress": [{"from": _pods(*SANDBOXES), "ports": _HTTP}],
        },
    }
    return [to_sandboxes, webhooks]


def write_local(out: Path) -> None:
    (out / "scaling.yaml").write_text(_dump(scaling(sasl=False, min_replicas=1)))
    (out / "infra.yaml").write_text(_dump(local_infra()))
    (out / "sandboxes.yaml").write_text(_dump(local_sandboxes() + local_policies()))


def write_all(root: Path = HERE) -> None:
    """Write every generated file under `root` (deploy/k8s, or a copy of it)."""
    for sub in ("base", "overlays/local/generated", "overlays/production/generated"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    write_base(root / "base")
    write_local(root / "overlays/local/generated")
    write_production(root / "overlays/production/generated")


if __name__ == "__main__":
    write_all()
