"""A separate single-node Kafka KRaft broker with a SASL_SSL (SCRAM-SHA-512) client listener.

It is the local stack's :class:`~streamrec.stack.kafka.KafkaComponent` (same jars, JVM command line, process
management and health check) with a TLS listener, SCRAM users written into the storage at format time, its own
ports and its own run directory.
"""

from __future__ import annotations

import base64
import subprocess
import uuid
from collections.abc import Mapping
from pathlib import Path

from streamrec.errors import StackError
from streamrec.settings import KafkaSettings, StackSettings
from streamrec.stack.kafka import STORAGE_TOOL, KafkaComponent, _resource_text

ADMIN_USER = "broker-admin"


class SaslSslKafka(KafkaComponent):
    name = "kafka-sasl-ssl"

    def __init__(
        self,
        run_dir: Path,
        stack: StackSettings,
        client: KafkaSettings,
        keystore: Path,
        truststore: Path,
        users: Mapping[str, str],
    ) -> None:
        # ``client`` connects to the SASL_SSL listener (it is what the health check's admin client uses).
        super().__init__(run_dir, stack, client)
        self.keystore, self.truststore = keystore, truststore
        self.users = dict(users)
        self.admin_password = uuid.uuid4().hex

    def _properties(self) -> str:
        jaas = (
            "org.apache.kafka.common.security.scram.ScramLoginModule required "
            f'username="{ADMIN_USER}" password="{self.admin_password}";'
        )
        lines = super()._properties().replace("PLAINTEXT://", "SASL_SSL://").splitlines()
        lines = [
            line
            for line in lines
            if not line.startswith(("listener.security.protocol.map=", "inter.broker.listener.name="))
        ]
        lines += [
            "listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name=SASL_SSL",
            "sasl.enabled.mechanisms=SCRAM-SHA-512",
            "sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512",
            f"listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config={jaas}",
            "ssl.keystore.type=PEM",
            f"ssl.keystore.location={self.keystore.resolve()}",
            "ssl.truststore.type=PEM",
            f"ssl.truststore.location={self.truststore.resolve()}",
            "ssl.client.auth=none",
            "",
        ]
        return "\n".join(lines)

    def prepare(self) -> None:
        self.config_path.write_text(self._properties())
        (self.dir / "log4j2.properties").write_text(_resource_text("kafka-log4j2.properties"))
        if (self.data_dir / "meta.properties").is_file():
            return
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        scram = [ADMIN_USER, *self.users]
        passwords = {ADMIN_USER: self.admin_password, **self.users}
        args = ["format", f"--cluster-id={cid}", "-c", str(self.config_path.resolve())]  # an id may start with "-"
        for user in scram:
            args += ["--add-scram", f"SCRAM-SHA-512=[name={user},password={passwords[user]}]"]
        log = self.dir / "format.log"
        with open(log, "wb") as out:
            result = subprocess.run(self._java(STORAGE_TOOL, *args), stdout=out, stderr=subprocess.STDOUT, check=False)
        if result.returncode != 0:
            raise StackError(self.name, "formatting KRaft storage with SCRAM users failed", str(log))
