"""Network policies and Kafka access of the rendered overlays, checked statically (no cluster): who may
connect to whom (a small NetworkPolicy evaluator over the rendered pods' labels, plus the policy Strimzi
generates for the brokers), and which Kafka user each component logs in as with which ACLs. Each check has a
negative test."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from tests.k8s.access import Acl, check_kafka_access, check_network_policies, expected_acls, user_acls
from tests.k8s.generic import check_references
from tests.k8s.manifests import OVERLAYS, Bundle, Doc, kustomize_command, pod_template, rendered_overlay
from tests.k8s.netpol import Network, Peer, Policy, allowed, matches
from tests.k8s.schemas import CrdRegistry, crds_dir
from tests.k8s.validator import check_scaled_objects, check_settings_consistency, streamrec_runs


def _fmt(errors: list[str]) -> str:
    return "\n".join(errors)


def _bundle(name: str) -> Bundle:
    if kustomize_command() is None:
        pytest.skip("neither kustomize nor kubectl is installed: overlays not rendered")
    return Bundle(rendered_overlay(name))


def _spec(bundle: Bundle, kind: str, name: str) -> dict[str, Any]:
    doc = bundle.get(kind, name)
    assert doc is not None, f"{kind}/{name} missing"
    return doc.obj["spec"]  # type: ignore[no-any-return]


def _container(bundle: Bundle, kind: str, name: str, container: str) -> dict[str, Any]:
    doc = bundle.get(kind, name)
    pod = pod_template(doc) if doc else None
    assert pod is not None
    return next(c for c in pod.containers() if c["name"] == container)


# ------------------------------------------------------------------------------------------------------------
# The evaluator itself


def test_label_selectors_follow_kubernetes_semantics() -> None:
    labels = {"app": "api", "tier": "front"}
    assert matches({}, labels) and matches(None, labels)
    assert matches({"matchLabels": {"app": "api"}}, labels)
    assert not matches({"matchLabels": {"app": "api", "tier": "back"}}, labels)
    assert matches({"matchExpressions": [{"key": "app", "operator": "In", "values": ["api", "x"]}]}, labels)
    assert not matches({"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["api"]}]}, labels)
    assert matches({"matchExpressions": [{"key": "zone", "operator": "DoesNotExist"}]}, labels)
    assert not matches({"matchExpressions": [{"key": "zone", "operator": "Exists"}]}, labels)


def test_connections_need_both_the_egress_and_the_ingress_side() -> None:
    a = Peer("a", "ns", {"app": "a"})
    b = Peer("b", "ns", {"app": "b"}, {"http": 8080})
    other = Peer("o", "other", {"app": "a"})
    deny = Policy("deny", "ns", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]})
    b_in = Policy(
        "b-in", "ns", {"podSelector": {"matchLabels": {"app": "b"}}, "ingress": [
            {"from": [{"podSelector": {"matchLabels": {"app": "a"}}}], "ports": [{"port": "http"}]}
        ]},
    )  # fmt: skip
    a_out = Policy("a-out", "ns", {"podSelector": {"matchLabels": {"app": "a"}}, "policyTypes": ["Egress"],
                   "egress": [{"to": [{"podSelector": {"matchLabels": {"app": "b"}}}]}]})  # fmt: skip
    assert allowed([], a, b, 8080)  # nothing selects either: open
    assert not allowed([deny], a, b, 8080)
    assert not allowed([deny, b_in], a, b, 8080)  # a's egress still denied
    assert allowed([deny, b_in, a_out], a, b, 8080)  # named port resolved on the destination
    assert not allowed([deny, b_in, a_out], a, b, 8081)
    assert not allowed(
        [deny, b_in, a_out], other, b, 8080
    )  # a podSelector alone means the policy's namespace
    from_ns = Policy("b-ns", "ns", {"podSelector": {}, "ingress": [{"from": [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "other"}},
         "podSelector": {"matchLabels": {"app": "a"}}}]}]})  # fmt: skip
    assert allowed([from_ns], other, b, 1)  # namespace AND pod selector, one peer
    assert not allowed([from_ns], Peer("x", "other", {"app": "x"}), b, 1)
    assert not allowed([deny], a, Peer("internet", None, {}), 443)
    assert allowed([deny, Policy("out", "ns", {"podSelector": {}, "policyTypes": ["Egress"], "egress": [
        {"ports": [{"port": 443}]}]})], a, Peer("internet", None, {}), 443)  # fmt: skip


# ------------------------------------------------------------------------------------------------------------
# Network policies of the overlays


@pytest.mark.parametrize("name", sorted(OVERLAYS))
def test_network_policies_deny_by_default_and_allow_exactly_each_components_peers(name: str) -> None:
    bundle = _bundle(name)
    net = Network.of(bundle, "streamrec")
    assert {
        "api",
        "worker",
        "archiver",
        "triton",
        "redis",
        "catalog-sync",
        "feast-apply",
        "trainer-finetune",
    } <= {p.name for p in net.pods}
    assert any(p.labels.get("strimzi.io/name") == "streamrec-kafka" for p in net.pods)  # Strimzi's pods too
    assert not (errors := check_network_policies(bundle)), _fmt(errors)
    triton = net.peer("triton")
    assert net.who_reaches(triton, 8001) == {
        "api",
        "worker",
    }  # the check above compares derived sets; pin one


def _policy(bundle: Bundle, name: str) -> dict[str, Any]:
    return _spec(bundle, "NetworkPolicy", name)


def _drop(bundle: Bundle, kind: str, name: str) -> None:
    bundle.docs = [d for d in bundle.docs if not (d.kind == kind and d.name == name)]


NETWORK_MUTATIONS: list[tuple[str, Callable[[Bundle], object], str]] = [
    ("no-default-deny", lambda b: _drop(b, "NetworkPolicy", "default-deny"), "no default-deny NetworkPolicy"),
    (
        "triton-open-to-namespace",
        lambda b: _policy(b, "triton")["ingress"].append(
            {"from": [{"podSelector": {}}], "ports": [{"port": 8001}]}
        ),
        "Triton grpc (triton:8001) is admitted by its ingress policies from ['api', 'archiver', 'catalog-",
    ),
    (
        "triton-model-control-from-anywhere",
        lambda b: _policy(b, "triton")["ingress"][0].pop("from"),
        "Triton http (triton:8000) is reachable from ['api', 'coredns', 'internet', 'keda-operator', 'oth",
    ),
    (
        "kafka-listener-without-peers",
        lambda b: _spec(b, "Kafka", "streamrec")["kafka"]["listeners"][0].pop("networkPolicyPeers"),
        "Kafka listener tls (streamrec-dual-role:9093) is reachable from",
    ),
    (
        "redis-missing-a-user",
        lambda b: _policy(b, "redis")["ingress"][0]["from"].pop(),  # feast-apply
        "(missing: ['feast-apply'])",
    ),
    (
        "worker-cannot-call-triton",
        lambda b: _policy(b, "worker")["egress"].pop(),
        "Triton http (triton:8000) is reachable from ['api']; expected exactly ['api', 'worker']",
    ),
    ("no-dns", lambda b: _drop(b, "NetworkPolicy", "dns"), "pod redis cannot resolve names (DNS UDP 53"),
    (
        "archiver-not-scraped",
        lambda b: _policy(b, "archiver")["ingress"][0]["ports"][0].update(port=9999),
        "PodMonitor/archiver: Prometheus cannot scrape archiver:9102",
    ),
    (
        "api-egress-anywhere",
        lambda b: _policy(b, "api")["egress"].append({"ports": [{"port": 443}]}),
        "pod api may connect outside the cluster on ports [443]",
    ),
    (
        "catalog-sync-without-policy",
        lambda b: _drop(b, "NetworkPolicy", "catalog-sync"),
        "pod catalog-sync: no NetworkPolicy of its own selects it",
    ),
    (
        "entity-operator-cut-off",
        lambda b: _drop(b, "NetworkPolicy", "kafka-entity-operator"),
        "streamrec-entity-operator cannot reach Kafka node streamrec-dual-role:9091",
    ),
]


@pytest.mark.parametrize(
    ("case", "mutate", "message"), NETWORK_MUTATIONS, ids=[m[0] for m in NETWORK_MUTATIONS]
)
def test_network_policy_check_rejects_a_mutated_overlay(
    case: str, mutate: Callable[[Bundle], object], message: str
) -> None:
    bundle = _bundle("gpu")
    mutate(bundle)
    assert message in _fmt(check_network_policies(bundle))


# ------------------------------------------------------------------------------------------------------------
# Kafka: listener, users, ACLs, secrets


def test_kafka_users_validate_against_the_strimzi_crd() -> None:
    if not crds_dir().is_dir():
        pytest.skip(f"vendored CRDs not found at {crds_dir()}: KafkaUser schema not checked")
    registry = CrdRegistry(crds_dir())
    bundle = _bundle("gpu")
    users = bundle.of("KafkaUser")
    assert {u.name for u in users} == {"api", "worker", "archiver", "trainer", "catalog-sync", "keda"}
    assert not (errors := [e for u in users for e in registry.validate(u)]), _fmt(errors)
    broken = copy.deepcopy(users[0].obj)
    broken["spec"]["authorization"]["acls"][0]["operations"] = ["Produce"]
    broken["spec"]["authentication"]["type"] = "scram-sha-256"
    del broken["spec"]["authorization"]["acls"][1]["resource"]["type"]
    found = _fmt(registry.validate(Doc(broken, "broken")))
    assert "'Produce' is not one of" in found
    assert "'scram-sha-256' is not one of" in found
    assert "'type' is a required property" in found


@pytest.mark.parametrize("name", sorted(OVERLAYS))
def test_every_kafka_client_logs_in_as_its_own_user_with_exactly_the_acls_it_uses(name: str) -> None:
    bundle = _bundle(name)
    assert not (errors := check_kafka_access(bundle)), _fmt(errors)
    clients = {
        r.pod.doc.name: next(
            e["value"] for e in r.container["env"] if e["name"] == "STREAMREC_KAFKA_SASL_USERNAME"
        )
        for r in streamrec_runs(bundle)
        if any(e["name"] == "STREAMREC_KAFKA_SASL_USERNAME" for e in r.container.get("env") or [])
    }
    assert clients == {
        "api": "api",
        "worker": "worker",
        "archiver": "archiver",
        "trainer-finetune": "trainer",
        "catalog-sync": "catalog-sync",
    }


def test_expected_acls_follow_the_settings() -> None:
    """The ACLs a component needs are computed from its settings: renamed topics and groups change them."""
    from consumers.settings import ConsumersSettings
    from serving.api.settings import UiSettings
    from streamrec.catalog.settings import CatalogSettings
    from streamrec.settings import KafkaSettings
    from streams.settings import StreamsSettings

    settings: dict[str, Any] = {
        "KafkaSettings": KafkaSettings(interactions_topic="events"),
        "CatalogSettings": CatalogSettings(items_topic="products"),
        "StreamsSettings": StreamsSettings(app_id="recs", by_item_topic="shared-by-item"),
        "ConsumersSettings": ConsumersSettings(archiver_group="arch"),
        "UiSettings": UiSettings(stream_group_prefix="live"),
    }
    api = expected_acls(["api"], settings)
    assert (
        Acl("topic", "events", "literal", "Write") in api
        and Acl("topic", "products", "literal", "Write") in api
    )
    assert Acl("group", "live-", "prefix", "Read") in api
    worker = expected_acls(["worker"], settings)
    assert (
        Acl("topic", "recs-", "prefix", "Create") in worker
        and Acl("group", "recs", "literal", "Read") in worker
    )
    assert Acl("topic", "shared-by-item", "literal", "Create") in worker  # outside the app-id prefix
    assert expected_acls(["archive"], settings) == {
        Acl("topic", "events", "literal", "Read"),
        Acl("group", "arch", "literal", "Read"),
    }
    with pytest.raises(ValueError, match="no Kafka access known"):
        expected_acls(["serve", "prepare"], settings)


def _env(c: dict[str, Any], name: str) -> dict[str, Any]:
    return next(e for e in c["env"] if e["name"] == name)


KAFKA_MUTATIONS: list[tuple[str, Callable[[Bundle], object], str]] = [
    (
        "worker-acl-too-wide",
        lambda b: _spec(b, "KafkaUser", "worker")["authorization"]["acls"].append(
            {"resource": {"type": "topic", "name": "*", "patternType": "literal"}, "operations": ["All"]}
        ),
        "KafkaUser/worker: ACLs differ from what the component uses; not used: All topic *",
    ),
    (
        "archiver-acl-missing-group",
        lambda b: _spec(b, "KafkaUser", "archiver")["authorization"]["acls"].pop(),
        "KafkaUser/archiver: ACLs differ from what the component uses; missing: Read group streamrec-archive",
    ),
    (
        "api-shares-the-worker-user",
        lambda b: _env(_container(b, "Deployment", "api", "api"), "STREAMREC_KAFKA_SASL_USERNAME").update(
            value="worker"
        ),
        "KafkaUser/api: no component logs in as this user",
    ),
    (
        "password-from-another-secret",
        lambda b: _env(_container(b, "Deployment", "archiver", "archiver"), "STREAMREC_KAFKA_SASL_PASSWORD")[
            "valueFrom"
        ]["secretKeyRef"].update(name="worker"),
        "STREAMREC_KAFKA_SASL_PASSWORD is not key 'password' of the Secret 'archiver'",
    ),
    (
        "no-ca-mounted",
        lambda b: _container(b, "Deployment", "worker", "worker")["volumeMounts"].pop(0),
        "'worker': STREAMREC_KAFKA_SSL_CA_LOCATION=/etc/streamrec/kafka-ca/ca.crt is not the cluster CA",
    ),
    (
        "listener-without-authentication",
        lambda b: _spec(b, "Kafka", "streamrec")["kafka"]["listeners"][0].pop("authentication"),
        "listener 'tls' is not TLS with SCRAM-SHA-512 authentication",
    ),
    (
        "super-user",
        lambda b: _spec(b, "Kafka", "streamrec")["kafka"]["authorization"].update(superUsers=["api"]),
        "authorization must be 'simple' with no super users",
    ),
    (
        "keda-describes-too-much",
        lambda b: _spec(b, "KafkaUser", "keda")["authorization"]["acls"][0].update(
            operations=["Describe", "Read"]
        ),
        "KafkaUser/keda: ACLs differ from what the component uses; not used: Read topic interactions",
    ),
]


@pytest.mark.parametrize(("case", "mutate", "message"), KAFKA_MUTATIONS, ids=[m[0] for m in KAFKA_MUTATIONS])
def test_kafka_access_check_rejects_a_mutated_overlay(
    case: str, mutate: Callable[[Bundle], object], message: str
) -> None:
    bundle = _bundle("gpu")
    mutate(bundle)
    assert message in _fmt(check_kafka_access(bundle))


def test_user_acls_read_the_kafka_user_resource() -> None:
    user = {"spec": {"authorization": {"acls": [
        {"resource": {"type": "topic", "name": "t"}, "operations": ["Read", "Write"]},
        {"type": "deny", "resource": {"type": "topic", "name": "x"}, "operations": ["Read"]},
    ]}}}  # fmt: skip
    assert user_acls(user) == {Acl("topic", "t", "literal", "Read"), Acl("topic", "t", "literal", "Write")}


def test_kafka_clients_and_scalers_must_match_the_scram_listener() -> None:
    bundle = _bundle("gpu")
    assert not check_scaled_objects(bundle) and not check_settings_consistency(bundle)
    client = bundle.get("ConfigMap", "streamrec-kafka-client")
    assert client is not None
    client.obj["data"] |= {
        "STREAMREC_KAFKA_SECURITY_PROTOCOL": "SSL",
        "STREAMREC_KAFKA_SASL_MECHANISM": "PLAIN",
    }
    del client.obj["data"]["STREAMREC_KAFKA_SSL_CA_LOCATION"]
    errors = _fmt(check_settings_consistency(bundle))
    assert (
        "listener 'tls' authenticates with SCRAM-SHA-512, but clients use SSL with mechanism 'PLAIN'"
        in errors
    )
    assert "listener 'tls' is TLS with the cluster CA, but STREAMREC_KAFKA_SSL_CA_LOCATION is unset" in errors

    del _spec(bundle, "ScaledObject", "worker")["triggers"][0]["metadata"]["sasl"]
    auth = _spec(bundle, "TriggerAuthentication", "kafka-cluster-ca")
    auth["secretTargetRef"][1]["name"] = "worker"  # another user's password
    errors = _fmt(check_scaled_objects(bundle))
    assert "ScaledObject/worker: sasl=None, but the listener authenticates with SCRAM-SHA-512" in errors
    assert (
        "ScaledObject/archiver:" in errors
        and "the password is not key 'password' of the Secret 'keda'" in errors
    )
    auth["configMapTargetRef"][0]["key"] = "user"
    errors = _fmt(check_scaled_objects(bundle) + check_references(bundle))
    assert "the user name (ConfigMap 'keda-kafka-user': '') is no KafkaUser" in errors
    assert "ConfigMap 'keda-kafka-user' with key 'user' is not defined" in errors
