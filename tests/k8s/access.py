"""Who may talk to whom, and with which Kafka rights: streamrec's network and Kafka access checks.

- Network: a default deny for the namespace; every pod (the rendered workloads and the pods Strimzi runs) has
  policies of its own; each server is reachable exactly from its clients, derived from the manifests: Triton's
  inference ports from the pods that run a Triton-calling command, its metrics from Prometheus; Redis from the
  pods whose ``REDIS_URL`` names it; the Kafka listener from the pods that run a Kafka command (and KEDA's
  operator). What each component uses stays reachable (DNS included), and nothing else leaves the namespace.
- Kafka: the listener is TLS with SCRAM-SHA-512 and the simple authorizer; every Kafka client logs in as
  its own SCRAM KafkaUser with the Secret the User Operator generates, verifies the brokers with the cluster
  CA, and that user's ACLs are exactly what the command's settings make it read, write, create and join.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from tests.k8s.generic import selects
from tests.k8s.manifests import Bundle
from tests.k8s.netpol import Network, Peer, allowed, matches
from tests.k8s.validator import ContainerRun, _mount_for, streamrec_runs

#: Commands that use Kafka, and those that call Triton (the worker pushes recommendations it asks Triton for).
KAFKA_COMMANDS = (("api",), ("worker",), ("archive",), ("catalog", "snapshot"), ("catalog-sync",))
TRITON_COMMANDS = (("api",), ("worker",))
#: Group id prefix of ``streamrec.client.catalog.read_catalog`` (assigned partitions, a fresh id per read).
CATALOG_READ_GROUP_PREFIX = "streamrec-catalog-read-"
KEDA_OPERATOR = "keda-operator"


def _runs_command(run: ContainerRun, commands: Iterable[tuple[str, ...]]) -> list[str] | None:
    return next((argv for argv in run.invocations for c in commands if tuple(argv[: len(c)]) == c), None)


# ------------------------------------------------------------------------------------------------------------
# Network


def _reach_problem(net: Network, what: str, server: Peer, port: int, expected: set[str]) -> list[str]:
    """Both with every side's policies and by the server's ingress alone (the allow list must hold even for a
    pod whose egress is open), exactly ``expected`` reaches the server."""
    problems = []
    for egress, how in ((True, "reachable"), (False, "admitted by its ingress policies")):
        actual = net.who_reaches(server, port, egress=egress)
        if actual == expected:
            continue
        extra, missing = sorted(actual - expected), sorted(expected - actual)
        problems.append(
            f"{what} ({server.name}:{port}) is {how} from {sorted(actual)}; "
            f"expected exactly {sorted(expected)}"
            + (f" (not allowed: {extra})" if extra else "")
            + (f" (missing: {missing})" if missing else "")
        )
    return problems


def _redis_servers(bundle: Bundle, net: Network, runs: list[ContainerRun]) -> dict[str, set[str]]:
    """Redis pod name -> the pods whose REDIS_URL names a Service selecting it."""
    users: dict[str, set[str]] = {}
    for run in runs:
        host = urlparse(run.env.get("REDIS_URL", "")).hostname
        service = bundle.get("Service", (host or "").split(".")[0])
        for pod in net.pods if service else []:
            if selects(service.obj["spec"].get("selector"), dict(pod.labels)):  # type: ignore[union-attr]
                users.setdefault(pod.name, set()).add(run.pod.doc.name)
    return users


def _monitored(bundle: Bundle, net: Network) -> list[tuple[str, Peer, int]]:
    """(monitor, pod, port number) Prometheus scrapes, from the PodMonitors and ServiceMonitors."""
    out = []
    for pm in bundle.of("PodMonitor"):
        for pod in (p for p in net.pods if matches(pm.obj["spec"].get("selector"), p.labels)):
            out += [(pm.where, pod, pod.ports[e["port"]]) for e in pm.obj["spec"]["podMetricsEndpoints"]]
    for sm in bundle.of("ServiceMonitor"):
        for svc in bundle.of("Service"):
            if not matches(sm.obj["spec"].get("selector"), svc.obj["metadata"].get("labels") or {}):
                continue
            target = {p["name"]: p.get("targetPort", p["port"]) for p in svc.obj["spec"].get("ports") or []}
            for pod in (p for p in net.pods if selects(svc.obj["spec"].get("selector"), dict(p.labels))):
                for e in sm.obj["spec"]["endpoints"]:
                    port = target[e["port"]]
                    out.append((sm.where, pod, pod.ports[port] if isinstance(port, str) else int(port)))
    return out


def check_network_policies(
    bundle: Bundle, namespace: str = "streamrec", runs: list[ContainerRun] | None = None
) -> list[str]:
    runs = streamrec_runs(bundle) if runs is None else runs
    net, errors = Network.of(bundle, namespace), []
    if not any(
        p.spec.get("podSelector") == {} and p.types == {"Ingress", "Egress"}
        and not p.spec.get("ingress") and not p.spec.get("egress")
        for p in net.policies
    ):  # fmt: skip
        errors.append(
            "no default-deny NetworkPolicy (podSelector {}, policyTypes Ingress and Egress, no rules)"
        )
    internet = net.peer("internet")
    for pod in net.pods:
        if not any(
            p.spec.get("podSelector") and matches(p.spec["podSelector"], pod.labels) for p in net.policies
        ):
            errors.append(
                f"pod {pod.name}: no NetworkPolicy of its own selects it (only namespace-wide ones)"
            )
        errors += [
            f"pod {pod.name} cannot resolve names (DNS {proto} 53 to kube-dns)"
            for proto in ("UDP", "TCP")
            if not allowed(net.policies, pod, net.peer("coredns"), 53, proto)
        ]
        opened = [port for port in (80, 443, 6443, 9093) if allowed(net.policies, pod, internet, port)]
        if opened and not pod.labels.get("strimzi.io/cluster"):
            errors.append(f"pod {pod.name} may connect outside the cluster on ports {opened}")

    by_name = {p.name: p for p in net.pods}
    kafka_clients = {r.pod.doc.name for r in runs if _runs_command(r, KAFKA_COMMANDS)}
    triton_clients = {r.pod.doc.name for r in runs if _runs_command(r, TRITON_COMMANDS)}
    tritons = {
        r.pod.doc.name
        for r in runs
        for c in r.pod.containers(init=False)
        if str((c.get("command") or [""])[0]).endswith("tritonserver")
    }
    for name in sorted(tritons):
        server = by_name[name]
        for port_name in ("http", "grpc"):
            errors += _reach_problem(
                net, f"Triton {port_name}", server, server.ports[port_name], triton_clients
            )
        errors += _reach_problem(net, "Triton metrics", server, server.ports["metrics"], {"prometheus"})
    for name, users in sorted(_redis_servers(bundle, net, runs).items()):
        errors += _reach_problem(net, "Redis", by_name[name], 6379, users)
    for kafka in bundle.of("Kafka"):
        brokers = [p for p in net.pods if p.labels.get("strimzi.io/name") == f"{kafka.name}-kafka"]
        for lst in kafka.obj["spec"]["kafka"].get("listeners") or []:
            for broker in brokers:
                expected = kafka_clients | {KEDA_OPERATOR}
                errors += _reach_problem(
                    net, f"Kafka listener {lst['name']}", broker, int(lst["port"]), expected
                )
        for broker in brokers:  # the nodes reach each other; the entity operator reaches replication
            for peer, port in [(b, port) for b in brokers for port in (9090, 9091)] + [
                (p, 9091) for p in net.pods if p.name == f"{kafka.name}-entity-operator"
            ]:
                if peer is not broker and not allowed(net.policies, peer, broker, port):
                    errors.append(f"{peer.name} cannot reach Kafka node {broker.name}:{port}")
        errors += [
            f"{p.name} cannot reach the Kubernetes API (443/6443)"
            for p in net.pods
            if p.labels.get("strimzi.io/cluster") == kafka.name
            and not allowed(net.policies, p, internet, 443)
        ]
    for monitor, pod, port in _monitored(bundle, net):
        if not allowed(net.policies, net.peer("prometheus"), pod, port):
            errors.append(f"{monitor}: Prometheus cannot scrape {pod.name}:{port}")
    return errors


# ------------------------------------------------------------------------------------------------------------
# Kafka: listener, users, ACLs, client wiring


@dataclass(frozen=True, order=True)
class Acl:
    kind: str  # topic, group, cluster, transactionalId
    name: str
    pattern: str  # literal, prefix
    operation: str


def _acls(resource: tuple[str, str, str], *operations: str) -> set[Acl]:
    return {Acl(*resource, op) for op in operations}


def expected_acls(argv: list[str], settings: dict[str, Any]) -> set[Acl]:
    """What a Kafka command's settings make it do: read/write topics, create internal topics, join groups."""
    kafka, catalog = settings["KafkaSettings"], settings["CatalogSettings"]

    def topic(name: str, *ops: str, pattern: str = "literal") -> set[Acl]:
        return _acls(("topic", name, pattern), *ops)

    def group(name: str, pattern: str = "literal") -> set[Acl]:
        return _acls(("group", name, pattern), "Read")

    if argv[:1] == ["api"]:
        live = settings["UiSettings"].stream_group_prefix + "-"  # <prefix>-<host>-<pid>-<n>
        return (
            topic(kafka.interactions_topic, "Write")
            | topic(catalog.items_topic, "Write")
            | topic(catalog.users_topic, "Write")
            | topic(kafka.recommendations_topic, "Read")
            | group(live, "prefix")
        )
    if argv[:1] == ["worker"]:
        s = settings["StreamsSettings"]
        internal = f"{s.app_id}-"  # changelogs, the by-item topic, Faust's assignor topic
        out = (
            topic(s.interactions(kafka), "Read")
            | topic(s.recommendations(kafka), "Write")
            | topic(s.dlq(kafka), "Write")
            | topic(internal, "Read", "Write", "Create", pattern="prefix")
            | group(s.app_id)
        )
        return out if s.by_item.startswith(internal) else out | topic(s.by_item, "Read", "Write", "Create")
    if argv[:1] == ["archive"]:
        c = settings["ConsumersSettings"]
        return topic(c.archiver_topic or kafka.interactions_topic, "Read") | group(c.archiver_group)
    catalog_readers = topic(catalog.items_topic, "Read") | topic(catalog.users_topic, "Read")
    if argv[:2] == ["catalog", "snapshot"]:
        return (
            catalog_readers | topic(catalog.dlq_topic, "Write") | group(CATALOG_READ_GROUP_PREFIX, "prefix")
        )
    if argv[:1] == ["catalog-sync"]:
        from consumers.catalog_io import COMPONENT  # its throwaway group ids: <COMPONENT>-..., never joined

        # It reads its dead letters back at start, so that a reject is written once.
        return catalog_readers | topic(catalog.dlq_topic, "Read", "Write") | group(f"{COMPONENT}-", "prefix")
    raise ValueError(f"no Kafka access known for `streamrec {' '.join(argv)}`")


def user_acls(user: dict[str, Any]) -> set[Acl]:
    out = set()
    for acl in (user["spec"].get("authorization") or {}).get("acls") or []:
        if acl.get("type", "allow") != "allow":
            continue
        r = acl["resource"]
        out |= _acls((r["type"], r.get("name", ""), r.get("patternType", "literal")), *acl["operations"])
    return out


def _fmt_acls(acls: set[Acl]) -> str:
    return ", ".join(
        f"{a.operation} {a.kind} {a.name}{'*' if a.pattern == 'prefix' else ''}" for a in sorted(acls)
    )


def _acl_problems(where: str, actual: set[Acl], expected: set[Acl]) -> list[str]:
    if actual == expected:
        return []
    extra, missing = actual - expected, expected - actual
    return [
        f"{where}: ACLs differ from what the component uses"
        + (f"; not used: {_fmt_acls(extra)}" if extra else "")
        + (f"; missing: {_fmt_acls(missing)}" if missing else "")
    ]


def _client_problems(bundle: Bundle, run: ContainerRun) -> tuple[str | None, list[str]]:
    """The KafkaUser a Kafka client logs in as, and what is wrong with its credentials and CA."""
    kafka, errors = run.settings.get("KafkaSettings"), []
    if kafka is None:
        return None, []  # the settings check reports why they do not load
    username = next(
        (
            e.get("value")
            for e in run.container.get("env") or []
            if e["name"] == "STREAMREC_KAFKA_SASL_USERNAME"
        ),
        None,
    )
    user = bundle.get("KafkaUser", str(username))
    if kafka.security_protocol != "SASL_SSL" or kafka.sasl_mechanism != "SCRAM-SHA-512":
        errors.append(
            f"uses {kafka.security_protocol} {kafka.sasl_mechanism}, not SASL_SSL with SCRAM-SHA-512"
        )
    if user is None:
        errors.append(f"logs in as {username!r}, which is no KafkaUser")
    password: dict[str, Any] = next(
        (e for e in run.container.get("env") or [] if e["name"] == "STREAMREC_KAFKA_SASL_PASSWORD"), {}
    )
    ref = (password.get("valueFrom") or {}).get("secretKeyRef") or {}
    if user is not None and (ref.get("name"), ref.get("key")) != (user.name, "password"):
        errors.append(
            f"STREAMREC_KAFKA_SASL_PASSWORD is not key 'password' of the Secret {user.name!r} "
            "that Strimzi generates"
        )
    ca = str(kafka.ssl_ca_location or "")
    mount = _mount_for(ca, run.container) if ca.startswith("/") else None
    volume: dict[str, Any] = next(
        (v for v in run.pod.spec.get("volumes") or [] if mount and v["name"] == mount["name"]), {}
    )
    secret = volume.get("secret") or {}
    relative = ca[len(mount["mountPath"].rstrip("/")) + 1 :] if mount else ""
    items = {i["path"]: i["key"] for i in secret.get("items") or []} or {relative: relative}
    clusters = {f"{k.name}-cluster-ca-cert" for k in bundle.of("Kafka")}
    if secret.get("secretName") not in clusters or items.get(relative) != "ca.crt":
        errors.append(
            f"STREAMREC_KAFKA_SSL_CA_LOCATION={ca or None} is not the cluster CA "
            f"(ca.crt of {sorted(clusters)})"
        )
    return (user.name if user else None), errors


def check_kafka_access(bundle: Bundle, runs: list[ContainerRun] | None = None) -> list[str]:
    runs = streamrec_runs(bundle) if runs is None else runs
    errors = []
    for kafka in bundle.of("Kafka"):
        spec = kafka.obj["spec"]["kafka"]
        for lst in spec.get("listeners") or []:
            if not lst.get("tls") or (lst.get("authentication") or {}).get("type") != "scram-sha-512":
                errors.append(
                    f"{kafka.where}: listener {lst['name']!r} is not TLS with SCRAM-SHA-512 authentication"
                )
        if (spec.get("authorization") or {}).get("type") != "simple" or (spec.get("authorization") or {}).get(
            "superUsers"
        ):
            errors.append(f"{kafka.where}: authorization must be 'simple' with no super users")
    expected: dict[str, set[Acl]] = {}
    for run in runs:
        argv = _runs_command(run, KAFKA_COMMANDS)
        if argv is None:
            continue
        login, problems = _client_problems(bundle, run)
        errors += [f"{run.where}: {p}" for p in problems]
        if login and "KafkaSettings" in run.settings:
            expected.setdefault(login, set()).update(expected_acls(argv, run.settings))
    lag_readers = _keda_lag_acls(bundle)
    for user in bundle.of("KafkaUser"):
        cluster = (user.obj["metadata"].get("labels") or {}).get("strimzi.io/cluster")
        if bundle.get("Kafka", str(cluster)) is None and bundle.of("Kafka"):
            errors.append(f"{user.where}: label strimzi.io/cluster={cluster!r} names no Kafka")
        if (user.obj["spec"].get("authentication") or {}).get("type") != "scram-sha-512":
            errors.append(f"{user.where}: authentication is not scram-sha-512")
        want = expected.get(user.name, lag_readers.get(user.name))
        if want is None:
            errors.append(f"{user.where}: no component logs in as this user")
        else:
            errors += _acl_problems(user.where, user_acls(user.obj), want)
    return errors


def _keda_lag_acls(bundle: Bundle) -> dict[str, set[Acl]]:
    """KafkaUser -> Describe on the topics and groups of the Kafka scalers that log in as it."""
    out: dict[str, set[Acl]] = {}
    for so in bundle.of("ScaledObject"):
        for t in (t for t in so.obj["spec"].get("triggers") or [] if t.get("type") == "kafka"):
            ta = bundle.get("TriggerAuthentication", (t.get("authenticationRef") or {}).get("name", ""))
            ref = (
                next(
                    (
                        r
                        for r in (ta.obj["spec"].get("configMapTargetRef") or [])
                        if r["parameter"] == "username"
                    ),
                    None,
                )
                if ta
                else None
            )
            cm = bundle.get("ConfigMap", ref["name"]) if ref else None
            user = str(((cm.obj.get("data") if cm else None) or {}).get(ref["key"] if ref else "", ""))
            meta = t.get("metadata") or {}
            out.setdefault(user, set()).update(
                _acls(("topic", meta.get("topic", ""), "literal"), "Describe")
                | _acls(("group", meta.get("consumerGroup", ""), "literal"), "Describe")
            )
    return out
