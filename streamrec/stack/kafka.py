"""Apache Kafka 4.x, single-node KRaft (broker + controller in one JVM), jars resolved by Maven."""

from __future__ import annotations

import base64
import shutil
import socket
import subprocess
import uuid
from collections.abc import Callable, Mapping, Sequence
from importlib import resources
from pathlib import Path

from streamrec.client.admin import admin_client, project_topics
from streamrec.errors import StackError
from streamrec.settings import KafkaSettings, StackSettings
from streamrec.stack.base import Component, Health

MAIN_CLASS = "kafka.Kafka"
STORAGE_TOOL = "kafka.tools.StorageTool"


def _resource_text(name: str) -> str:
    return resources.files("streamrec.stack").joinpath(name).read_text()


class KafkaComponent(Component):
    name = "kafka"

    def __init__(self, run_dir: Path, stack: StackSettings, kafka: KafkaSettings) -> None:
        super().__init__(run_dir)
        self.stack = stack
        self.kafka = kafka
        self.home = stack.cache_dir / f"kafka-{stack.kafka_version}"
        self.libs = self.home / "libs"
        self.data_dir = self.dir / "data"
        self.config_path = self.dir / "server.properties"

    @property
    def external(self) -> bool:
        return self.kafka.external

    def install(self, progress: Callable[[str], None]) -> None:
        marker = self.home / ".complete"
        if marker.is_file():
            return
        mvn = shutil.which("mvn")
        if mvn is None:
            raise StackError(self.name, "Maven (mvn) not found on PATH; it resolves the Kafka jars")
        if shutil.which("java") is None:
            raise StackError(self.name, "java not found on PATH; Kafka 4 needs Java 17+")
        progress(f"resolving Kafka {self.stack.kafka_version} jars from Maven Central into {self.libs}")
        self.home.mkdir(parents=True, exist_ok=True)
        pom = self.home / "pom.xml"
        pom.write_text(_resource_text("kafka-pom.xml").replace("@KAFKA_VERSION@", self.stack.kafka_version))
        log = self.home / "mvn.log"
        with open(log, "wb") as out:
            result = subprocess.run(
                [
                    mvn,
                    "-B",
                    "-q",
                    "-f",
                    str(pom),
                    "dependency:copy-dependencies",
                    f"-DoutputDirectory={self.libs}",
                    "-DincludeScope=runtime",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                check=False,
            )
        if result.returncode != 0:
            raise StackError(self.name, "mvn could not resolve the Kafka jars", str(log))
        marker.write_text(self.stack.kafka_version)

    def _properties(self) -> str:
        k = self.kafka
        return "\n".join(
            [
                "process.roles=broker,controller",
                "node.id=1",
                f"controller.quorum.voters=1@127.0.0.1:{k.local_controller_port}",
                f"listeners=PLAINTEXT://127.0.0.1:{k.local_port},CONTROLLER://127.0.0.1:{k.local_controller_port}",
                f"advertised.listeners=PLAINTEXT://127.0.0.1:{k.local_port}",
                "controller.listener.names=CONTROLLER",
                "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                "inter.broker.listener.name=PLAINTEXT",
                f"log.dirs={self.data_dir.resolve()}",
                "num.partitions=1",
                "offsets.topic.replication.factor=1",
                "offsets.topic.num.partitions=6",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "share.coordinator.state.topic.replication.factor=1",
                "share.coordinator.state.topic.min.isr=1",
                "group.initial.rebalance.delay.ms=0",
                "auto.create.topics.enable=true",
                "log.retention.hours=168",
                "log.segment.bytes=268435456",
                "",
            ]
        )

    def _java(self, main: str, *args: str) -> list[str]:
        return [
            "java",
            f"-Xmx{self.stack.kafka_heap}",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.dir.resolve() / 'log4j2.properties'}",
            "-cp",
            f"{self.libs.resolve()}/*",
            main,
            *args,
        ]

    def prepare(self) -> None:
        self.config_path.write_text(self._properties())
        (self.dir / "log4j2.properties").write_text(_resource_text("kafka-log4j2.properties"))
        if (self.data_dir / "meta.properties").is_file():
            return
        # KRaft cluster ids are 16 random bytes, URL-safe base64 without padding.
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        fmt_log = self.dir / "format.log"
        with open(fmt_log, "wb") as out:
            result = subprocess.run(
                # "--cluster-id=" form: an id starting with "-" (1 in 64) is otherwise read as an option.
                self._java(STORAGE_TOOL, "format", f"--cluster-id={cid}", "-c", str(self.config_path.resolve())),
                stdout=out,
                stderr=subprocess.STDOUT,
                check=False,
            )
        if result.returncode != 0:
            raise StackError(self.name, "formatting KRaft storage failed", str(fmt_log))

    def ports(self) -> list[int]:
        return [self.kafka.local_port, self.kafka.local_controller_port]

    def command(self) -> tuple[Sequence[str], Mapping[str, str]]:
        return self._java(MAIN_CLASS, str(self.config_path.resolve())), {}

    def health(self) -> Health:
        host, _, port = self.kafka.bootstrap.split(",")[0].rpartition(":")
        try:
            socket.create_connection((host or "127.0.0.1", int(port)), timeout=1).close()
        except (OSError, ValueError) as exc:
            return Health(False, f"unreachable: {exc}")
        try:
            meta = admin_client(self.kafka).list_topics(timeout=3)
        except Exception as exc:
            return Health(False, f"unreachable: {exc}")
        brokers = len(meta.brokers)
        if brokers == 0:
            return Health(False, "no brokers in metadata")
        wanted = [t.name for t in project_topics(self.kafka)]
        have = [t for t in wanted if t in meta.topics]
        return Health(True, f"{brokers} broker(s) at {self.kafka.bootstrap}; topics {len(have)}/{len(wanted)}")
