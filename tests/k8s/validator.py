"""streamrec's own checks of its manifests: what only this project's code can tell.

- Every ``STREAMREC_*`` variable a container gets (env, envFrom ConfigMaps and Secrets) is a field of a
  settings class that ``streamrec config`` lists (core classes plus those the app plugins register).
- Each streamrec container's arguments parse with the real ``streamrec`` argparse parser, its settings load
  from its resolved environment, its servers bind the pod's address on a declared port, and what it writes
  lies on a writable volume (root filesystems are read-only).
- Triton serves the model repository ``streamrec serve prepare`` renders, in the model-control mode prepare
  needs, loading through its own pod; KEDA's queries on Triton count the ensemble that repository serves.
- KEDA's Kafka scalers watch a defined topic with ``maxReplicaCount`` at most its partitions, through the
  listener the bootstrap address names; the settings ConfigMap agrees with the KafkaTopics.
"""

from __future__ import annotations

import contextlib
import difflib
import io
import os
import re
import shlex
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from pydantic_settings import BaseSettings

from tests.k8s.generic import brokers, container_env, expand, selects
from tests.k8s.manifests import Bundle, Doc, PodTemplate

#: Prefixes of app settings; one whose settings class is not registered (app not installed) is accepted.
APP_ENV_PREFIXES = (
    "STREAMREC_STREAMS_",
    "STREAMREC_API_",
    "STREAMREC_SERVING_",
    "STREAMREC_TRAINER_",
    "STREAMREC_CONSUMERS_",
)
WELL_KNOWN_ENV = ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL", "TRITON_URL")
#: Images whose entrypoint is the ``streamrec`` CLI.
STREAMREC_IMAGES = (
    "ghcr.io/streamrec/streamrec:",
    "ghcr.io/streamrec/streamrec-trainer:",
    "ghcr.io/streamrec/streamrec-triton:",
)
#: What each command writes (settings class, field, "dir" or "file"): it must be on a writable volume.
WRITES: dict[tuple[str, ...], list[tuple[str, str, str]]] = {
    ("worker",): [("StreamsSettings", "data_dir", "dir")],
    ("archive",): [("PathsSettings", "archive_root", "dir")],
    ("catalog", "snapshot"): [("PathsSettings", "archive_root", "dir")],
    ("train",): [
        ("PathsSettings", "export_root", "dir"),
        ("TrainerSettings", "cache_dir", "dir"),
        ("TrainerSettings", "checkpoint_dir", "dir"),
    ],
    ("features", "apply"): [
        ("FeastSettings", "registry", "file"),
        ("PathsSettings", "archive_root", "dir"),
    ],
    ("serve", "prepare"): [("TritonSettings", "model_repository", "dir")],
}
#: Commands that serve HTTP (settings class, host field, port field): probes and Services reach the pod.
BINDS: dict[tuple[str, ...], tuple[str, str, str]] = {
    ("api",): ("ApiSettings", "host", "port"),
    ("worker",): ("StreamsSettings", "web_host", "web_port"),
    ("archive",): ("ConsumersSettings", "archiver_metrics_host", "archiver_metrics_port"),
    ("catalog-sync",): ("ConsumersSettings", "catalog_sync_metrics_host", "catalog_sync_metrics_port"),
}
_LOOPBACK = ("127.0.0.1", "localhost", "::1")
_SHELL_SEPARATORS = {";", "&&", "||", "|", "&", "(", ")"}


# ------------------------------------------------------------------------------------------------------------
# Settings and the CLI


@dataclass(frozen=True)
class Cli:
    """streamrec's command line as the images run it: core commands plus every app plugin that imports (one
    that does not import adds no command, so its containers' arguments do not parse)."""

    settings: tuple[type[BaseSettings], ...]
    commands: frozenset[str]
    parser: Any


@cache
def streamrec_cli() -> Cli:
    from streamrec.cli.main import build_parser, core_registry
    from streamrec.cli.plugins import load_plugins

    registry = core_registry()
    load_plugins(registry)
    return Cli(tuple(registry.settings), frozenset(registry.commands), build_parser(registry))


def env_var_problem(name: str, classes: Iterable[type[BaseSettings]] | None = None) -> str | None:
    """Why a ``STREAMREC_*`` variable is no setting (None when it is one, or is no STREAMREC_ variable)."""
    classes = tuple(streamrec_cli().settings if classes is None else classes)
    prefixes = {str(cls.model_config.get("env_prefix", "")) for cls in classes}
    known = {
        f"{cls.model_config.get('env_prefix', '')}{f}".upper() for cls in classes for f in cls.model_fields
    }
    if not name.startswith("STREAMREC_") or name in known:
        return None
    if any(name.startswith(p) and p not in prefixes for p in APP_ENV_PREFIXES):
        return None  # that app has no settings class yet: accepted by prefix
    close = difflib.get_close_matches(name, sorted(known), n=1)
    return f"{name} is not a field of any streamrec settings class" + (
        f" (did you mean {close[0]}?)" if close else ""
    )


def cli_problem(argv: list[str]) -> str | None:
    """Why ``streamrec ARGV`` does not parse (None when it parses)."""
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            streamrec_cli().parser.parse_args(argv)
    except SystemExit as exc:
        if exc.code not in (0, None):
            message = stderr.getvalue().strip().splitlines()
            return f"`streamrec {' '.join(argv)}` does not parse: {message[-1] if message else exc.code}"
    return None


def streamrec_invocations(c: dict[str, Any], env: dict[str, str] | None = None) -> list[list[str]]:
    """Argument lists a container passes to ``streamrec``: a streamrec image's entrypoint with ``args``,
    ``command: [streamrec, ...]``, or ``streamrec ...`` commands of an ``sh -c`` script; $(VAR) expanded."""
    env = env or {}
    command = [expand(str(x), env) for x in c.get("command") or []]
    args = [expand(str(x), env) for x in c.get("args") or []]
    if not command:
        return [args] if str(c.get("image", "")).startswith(STREAMREC_IMAGES) else []
    if Path(command[0]).name == "streamrec":
        return [command[1:] + args]
    if Path(command[0]).name not in ("sh", "bash") or "-c" not in command[1:]:
        return []
    out = []
    for line in (command + args)[command.index("-c") + 1].splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        with contextlib.suppress(ValueError):
            tokens = list(lexer)
            for i, tok in enumerate(tokens):
                if tok == "streamrec" and (
                    i == 0 or tokens[i - 1] in _SHELL_SEPARATORS | {"exec", "then", "do"}
                ):
                    rest = tokens[i + 1 :]
                    end = next((j for j, t in enumerate(rest) if t in _SHELL_SEPARATORS), len(rest))
                    out.append(rest[:end])
    return out


@contextlib.contextmanager
def _environment(env: dict[str, str]) -> Iterator[None]:
    """os.environ with streamrec's variables replaced by ``env`` (restored afterwards)."""
    saved = dict(os.environ)
    try:
        for key in [k for k in os.environ if k.startswith("STREAMREC_") or k in WELL_KNOWN_ENV]:
            del os.environ[key]
        os.environ.update(env)
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def load_settings(env: dict[str, str]) -> tuple[dict[str, Any], list[str]]:
    """Every settings class built from ``env`` as the container's process would; and the errors."""
    return _load_settings(
        tuple(sorted((k, v) for k, v in env.items() if k.startswith("STREAMREC_") or k in WELL_KNOWN_ENV))
    )


@cache
def _load_settings(env: tuple[tuple[str, str], ...]) -> tuple[dict[str, Any], list[str]]:
    loaded, errors = {}, []
    with _environment(dict(env)):
        for cls in streamrec_cli().settings:
            try:
                loaded[cls.__name__] = cls()
            except Exception as exc:  # pydantic ValidationError, pydantic-settings SettingsError
                errors.append(f"{cls.__name__}: {str(exc).splitlines()[0]}" + _first_error(exc))
    return loaded, errors


def _first_error(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    first = errors()[0] if callable(errors) else None
    return f" -> {'.'.join(str(p) for p in first.get('loc', ()))}: {first.get('msg')}" if first else ""


# ------------------------------------------------------------------------------------------------------------
# Checks. Each returns human-readable problems; empty means fine.


@dataclass
class ContainerRun:
    """A container of the streamrec images: its environment, CLI invocations and the settings they load."""

    pod: PodTemplate
    container: dict[str, Any]
    where: str
    env: dict[str, str]
    invocations: list[list[str]]
    settings: dict[str, Any]
    errors: list[str]


def streamrec_runs(bundle: Bundle) -> list[ContainerRun]:
    runs = []
    for pod in bundle.pods():
        for c in pod.containers():
            where = f"{pod.doc.where}: container {c.get('name')!r}"
            env, problems = container_env(c, bundle)
            errors = [f"{where}: {p}" for p in problems]
            errors += [f"{where}: {p}" for name in env if (p := env_var_problem(name))]
            if not str(c.get("image", "")).startswith(STREAMREC_IMAGES) and not any(
                k.startswith("STREAMREC_") for k in env
            ):
                runs.append(ContainerRun(pod, c, where, env, [], {}, errors))
                continue
            invocations = streamrec_invocations(c, env)
            errors += [f"{where}: {p}" for argv in invocations if (p := cli_problem(argv))]
            settings, failures = load_settings(env)
            errors += [f"{where}: settings do not load from its environment: {p}" for p in failures]
            runs.append(ContainerRun(pod, c, where, env, invocations, settings, errors))
    return runs


def _lookup(table: dict[tuple[str, ...], Any], argv: list[str]) -> Any:
    return next((v for k, v in table.items() if tuple(argv[: len(k)]) == k), None)


def _mount_for(path: str, c: dict[str, Any]) -> dict[str, Any] | None:
    """The volumeMount a path falls under (longest mountPath prefix); None: the root filesystem."""
    mounts = [
        m for m in c.get("volumeMounts") or [] if (path + "/").startswith(m["mountPath"].rstrip("/") + "/")
    ]
    return max(mounts, key=lambda m: len(m["mountPath"]), default=None)


def _write_problem(path: str, pod: PodTemplate, c: dict[str, Any]) -> str | None:
    """Why the container cannot write ``path`` (None when it can)."""
    if not path.startswith("/"):
        return "a relative path (the image's working directory is unknown here and not a volume)"
    mount = _mount_for(path, c)
    if mount is None:
        return "on the read-only root filesystem (no volume is mounted there)"
    volume: dict[str, Any] = next(
        (v for v in pod.spec.get("volumes") or [] if v["name"] == mount["name"]), {}
    )
    if mount.get("readOnly") or (volume.get("persistentVolumeClaim") or {}).get("readOnly"):
        return f"on volume {mount['name']!r}, mounted read-only"
    if any(k in volume for k in ("configMap", "secret", "downwardAPI", "projected")):
        return f"on volume {mount['name']!r}, which is read-only by nature"
    return None


def check_streamrec_containers(bundle: Bundle, runs: list[ContainerRun] | None = None) -> list[str]:
    """Variables are settings fields, references resolve, CLI arguments parse, settings load, servers bind the
    pod's address on a declared port, and whatever a command writes lies on a writable volume."""
    errors = []
    for run in streamrec_runs(bundle) if runs is None else runs:
        errors += run.errors
        for argv in run.invocations:
            if (bind := _lookup(BINDS, argv)) and bind[0] in run.settings:
                cls, host_field, port_field = bind
                host, port = getattr(run.settings[cls], host_field), getattr(run.settings[cls], port_field)
                ports = sorted(p["containerPort"] for p in run.container.get("ports") or [])
                if host in _LOOPBACK:
                    errors.append(
                        f"{run.where}: `streamrec {argv[0]}` binds {cls}.{host_field}={host}: unreachable"
                    )
                if port not in ports:
                    errors.append(
                        f"{run.where}: `streamrec {argv[0]}` listens on {cls}.{port_field}={port}, "
                        f"not a containerPort ({ports})"
                    )
            for cls, name, kind in _lookup(WRITES, argv) or []:
                value = getattr(run.settings.get(cls), name, None)
                if value is None:
                    continue
                path = str(value)
                target = str(Path(path).parent) if kind == "file" and path.startswith("/") else path
                if problem := _write_problem(target, run.pod, run.container):
                    errors.append(
                        f"{run.where}: `streamrec {' '.join(argv[:2])}` writes {cls}.{name}={path}, {problem}"
                    )
    for cm in bundle.of("ConfigMap"):
        errors += [f"{cm.where}: {p}" for key in cm.obj.get("data") or {} if (p := env_var_problem(key))]
    return errors


def _flag(args: list[str], name: str) -> str | None:
    for i, a in enumerate(args):
        if a.startswith(f"{name}="):
            return a.split("=", 1)[1]
        if a == name and i + 1 < len(args):
            return args[i + 1]
    return None


def check_triton(bundle: Bundle, runs: list[ContainerRun] | None = None) -> list[str]:
    """Triton serves the repository ``streamrec serve prepare`` renders, from a volume both share; a prepare
    that loads models runs beside Triton (not as an init container), in explicit mode, on its pod's Triton."""
    errors = []
    runs = streamrec_runs(bundle) if runs is None else runs
    for pod in bundle.pods():
        for t in pod.containers(init=False):
            command = [str(x) for x in (t.get("command") or []) + (t.get("args") or [])]
            if not command or Path(command[0]).name != "tritonserver":
                continue
            where = f"{pod.doc.where}: container {t.get('name')!r}"
            repo, mode = (
                _flag(command, "--model-repository"),
                _flag(command, "--model-control-mode") or "none",
            )
            triton_mount = _mount_for(repo or "", t)
            if not repo or triton_mount is None:
                errors.append(f"{where}: --model-repository {repo} is on no volume")
                continue
            preparers = [
                (r, a)
                for r in runs
                if r.pod.doc is pod.doc
                for a in r.invocations
                if a[:2] == ["serve", "prepare"]
            ]
            if not preparers:
                errors.append(
                    f"{where}: nothing in the pod renders the model repository (`streamrec serve prepare`)"
                )
            for r, argv in preparers:
                triton_settings = r.settings.get("TritonSettings")
                rendered = _flag(argv, "--repository") or str(
                    getattr(triton_settings, "model_repository", None)
                )
                if rendered != repo:
                    errors.append(
                        f"{r.where}: renders the model repository at {rendered}, Triton serves {repo}"
                    )
                elif (_mount_for(repo, r.container) or {}).get("name") != triton_mount["name"]:
                    errors.append(f"{r.where}: renders {repo} on another volume than {where} reads it from")
                if "--no-load" in argv:
                    continue
                if r.container in (pod.spec.get("initContainers") or []) and not r.container.get(
                    "restartPolicy"
                ):
                    errors.append(
                        f"{r.where}: an init container cannot load models (Triton is not up yet): --no-load"
                    )
                if mode != "explicit":
                    errors.append(
                        f"{where}: --model-control-mode={mode}, but {r.where} loads models through the "
                        "model-control API, which Triton only accepts in explicit mode"
                    )
                url = str(getattr(triton_settings, "http_url", ""))
                if re.sub(r"^\w+://", "", url).split(":")[0].split("/")[0] not in _LOOPBACK:
                    errors.append(
                        f"{r.where}: loads models on {url}, not on its own pod's Triton: "
                        "other replicas never reload"
                    )
    return errors


def check_triton_metrics(bundle: Bundle, runs: list[ContainerRun] | None = None) -> list[str]:
    """KEDA's Prometheus queries on a Triton Deployment name the ensemble its repository serves
    (``TritonSettings.ensemble_model`` of the pod's ``serve prepare``) and a Service that selects its pods."""
    errors = []
    runs = streamrec_runs(bundle) if runs is None else runs
    for so in bundle.of("ScaledObject"):
        target = so.obj["spec"]["scaleTargetRef"].get("name")
        served = {
            str(r.settings["TritonSettings"].ensemble_model)
            for r in runs
            if r.pod.doc.kind == "Deployment" and r.pod.doc.name == target and "TritonSettings" in r.settings
            for argv in r.invocations
            if argv[:2] == ["serve", "prepare"]
        }
        if not served:
            continue  # not a Triton Deployment
        pod = next((p for p in bundle.pods() if p.doc.kind == "Deployment" and p.doc.name == target), None)
        for t in so.obj["spec"].get("triggers") or []:
            query = str((t.get("metadata") or {}).get("query", "")) if t.get("type") == "prometheus" else ""
            for model in sorted(set(re.findall(r'\bmodel="([^"]*)"', query)) - served):
                errors.append(
                    f"{so.where}: query counts model {model!r}; the repository serves {sorted(served)}"
                )
            for service in sorted(set(re.findall(r'\bservice="([^"]*)"', query))):
                svc = bundle.get("Service", service)
                if pod is None or svc is None or not selects(svc.obj["spec"].get("selector"), pod.labels):
                    errors.append(
                        f"{so.where}: query reads service {service!r}, which selects no {target} pod"
                    )
    return errors


def topics(bundle: Bundle) -> dict[str, Doc]:
    """Kafka topic name (spec.topicName, else metadata.name) -> KafkaTopic."""
    return {d.obj["spec"].get("topicName") or d.name: d for d in bundle.of("KafkaTopic")}


def _bootstrap_listener(bundle: Bundle, servers: str) -> dict[str, Any] | str:
    """The Strimzi listener a bootstrap address points at, or why it points at none."""
    host, _, port = servers.split(",")[0].strip().rpartition(":")
    for kafka in bundle.of("Kafka"):
        if host.split(".")[0] == f"{kafka.name}-kafka-bootstrap":
            listeners = kafka.obj["spec"]["kafka"].get("listeners") or []
            found = next((lst for lst in listeners if str(lst.get("port")) == port), None)
            return found or f"port {port} is no listener of Kafka {kafka.name!r}"
    return f"{host!r} is not the bootstrap service of a Kafka in the manifests"


def check_scaled_objects(bundle: Bundle) -> list[str]:
    """Kafka scalers: the topic is a KafkaTopic, maxReplicaCount <= its partitions (more consumers than
    partitions sit idle), the bootstrap address names a listener with the TLS setting the scaler uses, and on
    a SCRAM listener the scaler logs in as a SCRAM KafkaUser."""
    errors = []
    for so in bundle.of("ScaledObject"):
        spec = so.obj["spec"]
        high = spec.get("maxReplicaCount", 100)
        for trigger in (t for t in spec.get("triggers") or [] if t.get("type") == "kafka"):
            meta = trigger.get("metadata") or {}
            topic = topics(bundle).get(meta.get("topic", ""))
            partitions = topic.obj["spec"].get("partitions") if topic else None
            if topic is None:
                errors.append(f"{so.where}: topic {meta.get('topic')!r} is not defined by a KafkaTopic")
            elif not isinstance(partitions, int) or high > partitions:
                errors.append(
                    f"{so.where}: maxReplicaCount {high} exceeds the {partitions} partitions of "
                    f"{meta['topic']!r} (extra consumers would sit idle)"
                )
            listener = _bootstrap_listener(bundle, str(meta.get("bootstrapServers", "")))
            if isinstance(listener, str):
                errors.append(f"{so.where}: bootstrapServers: {listener}")
            elif (tls := bool(listener.get("tls"))) != (meta.get("tls") == "enable"):
                errors.append(
                    f"{so.where}: tls={meta.get('tls')!r} but listener {listener.get('name')!r} tls={tls}"
                )
            elif (listener.get("authentication") or {}).get("type") == "scram-sha-512":
                auth = (trigger.get("authenticationRef") or {}).get("name", "")
                errors += [f"{so.where}: {p}" for p in _keda_scram_problems(bundle, meta, auth)]
    return errors


def _keda_scram_problems(bundle: Bundle, meta: dict[str, Any], auth: str) -> list[str]:
    """A SCRAM listener: the trigger asks for scram_sha512 and its TriggerAuthentication supplies the user
    name of a KafkaUser (from a ConfigMap) and its password (from the Secret the User Operator generates)."""
    if meta.get("sasl") != "scram_sha512":
        return [
            f"sasl={meta.get('sasl')!r}, but the listener authenticates with SCRAM-SHA-512 (scram_sha512)"
        ]
    ta = bundle.get("TriggerAuthentication", auth)
    if ta is None:
        return ["no TriggerAuthentication supplies the SCRAM user name and password"]
    params = {
        r["parameter"]: (kind, r["name"], r["key"])
        for kind, key in (("Secret", "secretTargetRef"), ("ConfigMap", "configMapTargetRef"))
        for r in ta.obj["spec"].get(key) or []
    }
    kind, name, key = params.get("username", ("", "", ""))
    cm = bundle.get("ConfigMap", name) if kind == "ConfigMap" else None
    user = str(((cm.obj.get("data") if cm else None) or {}).get(key, ""))
    if bundle.get("KafkaUser", user) is None:
        return [f"{ta.where}: the user name ({kind or 'none'} {name!r}: {user!r}) is no KafkaUser"]
    if params.get("password") != ("Secret", user, "password"):
        return [f"{ta.where}: the password is not key 'password' of the Secret {user!r} of its KafkaUser"]
    return []


def check_settings_consistency(bundle: Bundle, configmap: str = "streamrec-config") -> list[str]:
    """The settings ConfigMap agrees with the KafkaTopics and the brokers, and names services that exist."""
    cm = bundle.get("ConfigMap", configmap)
    if cm is None:
        return [f"ConfigMap {configmap!r} is missing"]
    data, errors, by_name = cm.obj.get("data") or {}, [], topics(bundle)
    for role in ("INTERACTIONS", "RECOMMENDATIONS", "DLQ"):
        name, parts = (
            data.get(f"STREAMREC_KAFKA_{role}_TOPIC"),
            data.get(f"STREAMREC_KAFKA_{role}_PARTITIONS"),
        )
        actual = by_name[name].obj["spec"].get("partitions") if name in by_name else None
        if name not in by_name:
            errors.append(f"{cm.where}: STREAMREC_KAFKA_{role}_TOPIC={name!r} has no KafkaTopic")
        elif parts is not None and str(actual) != str(parts):
            errors.append(
                f"{cm.where}: STREAMREC_KAFKA_{role}_PARTITIONS={parts} but KafkaTopic {name!r} has {actual}"
            )
    rf, kafkas = data.get("STREAMREC_KAFKA_REPLICATION_FACTOR"), bundle.of("Kafka")
    if rf is not None and kafkas and int(rf) > brokers(bundle, kafkas[0].name):
        errors.append(f"{cm.where}: STREAMREC_KAFKA_REPLICATION_FACTOR={rf} exceeds the brokers")
    for client in bundle.of("ConfigMap"):
        errors += [
            f"{client.where}: {p}" for p in _kafka_client_problems(bundle, client.obj.get("data") or {})
        ]
    if "TRITON_URL" in data:
        host = re.sub(r"^\w+://", "", data["TRITON_URL"]).split(":")[0].split("/")[0]
        if bundle.get("Service", host.split(".")[0]) is None:
            errors.append(f"{cm.where}: TRITON_URL host {host!r} is no Service")
    return errors


def _kafka_client_problems(bundle: Bundle, data: dict[str, str]) -> list[str]:
    """Client settings (a ConfigMap with KAFKA_BOOTSTRAP_SERVERS) that fit the listener they point at: TLS
    with the cluster CA on a TLS listener, SASL with the listener's SCRAM mechanism."""
    if "KAFKA_BOOTSTRAP_SERVERS" not in data:
        return []
    listener = _bootstrap_listener(bundle, data["KAFKA_BOOTSTRAP_SERVERS"])
    if isinstance(listener, str):
        return [f"KAFKA_BOOTSTRAP_SERVERS: {listener}"]
    protocol = data.get("STREAMREC_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT").upper()
    name, problems = listener.get("name"), []
    if listener.get("tls") and protocol not in ("SSL", "SASL_SSL"):
        problems.append(f"KAFKA_BOOTSTRAP_SERVERS points at TLS listener {name!r} but clients use {protocol}")
    if listener.get("tls") and not data.get("STREAMREC_KAFKA_SSL_CA_LOCATION"):
        problems.append(
            f"listener {name!r} is TLS with the cluster CA, but STREAMREC_KAFKA_SSL_CA_LOCATION is unset"
        )
    if (listener.get("authentication") or {}).get("type") == "scram-sha-512" and (
        not protocol.startswith("SASL_") or data.get("STREAMREC_KAFKA_SASL_MECHANISM") != "SCRAM-SHA-512"
    ):
        problems.append(
            f"listener {name!r} authenticates with SCRAM-SHA-512, but clients use {protocol} with mechanism "
            f"{data.get('STREAMREC_KAFKA_SASL_MECHANISM')!r}"
        )
    return problems


def check_project(bundle: Bundle) -> list[str]:
    """All of streamrec's own checks."""
    runs = streamrec_runs(bundle)
    return (
        check_streamrec_containers(bundle, runs)
        + check_triton(bundle, runs)
        + check_triton_metrics(bundle, runs)
        + check_scaled_objects(bundle)
        + (check_settings_consistency(bundle) if bundle.get("ConfigMap", "streamrec-config") else [])
    )
