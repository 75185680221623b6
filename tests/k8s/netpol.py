"""NetworkPolicy semantics evaluated statically: may a peer open a connection to a pod on a port?

As in Kubernetes, a connection from A to B on port P needs both sides: A's egress (A selected by no Egress
policy, or some egress rule of a policy selecting A matches B and P) and B's ingress (likewise). Selectors
use the full label-selector semantics (``{}`` selects everything); a rule without ``from``/``to`` matches
every peer, one without ``ports`` every port; named ports resolve on the destination pod. ``ipBlock`` peers
are taken to match every peer (pod IPs can fall in a CIDR too): the conservative reading for "only from"
checks. Policies of other namespaces are unknown here, so outside peers are not restricted on their side.

The Strimzi operator generates the ingress policy of the Kafka pods from the listeners' ``networkPolicyPeers``
(a listener without peers is open to every pod); :func:`strimzi_policies` models that, and
:func:`operator_pods` the pods the operator runs, so that they are evaluated like the rendered ones.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tests.k8s.manifests import Bundle, PodTemplate


@dataclass(frozen=True)
class Peer:
    """A pod (``namespace`` set) or an address outside the cluster (``namespace`` None)."""

    name: str
    namespace: str | None
    labels: Mapping[str, str]
    ports: Mapping[str, int] = field(default_factory=dict)  # named container ports


@dataclass(frozen=True)
class Policy:
    name: str
    namespace: str
    spec: Mapping[str, Any]

    @property
    def types(self) -> set[str]:
        declared = self.spec.get("policyTypes")
        return set(declared) if declared else {"Ingress"} | ({"Egress"} if "egress" in self.spec else set())


def matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """A label selector against labels (``matchLabels`` and ``matchExpressions``; empty selects all)."""
    selector = selector or {}
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for e in selector.get("matchExpressions") or []:
        value, values = labels.get(e["key"]), e.get("values") or []
        ok = {
            "In": value in values,
            "NotIn": value not in values,
            "Exists": value is not None,
            "DoesNotExist": value is None,
        }[e["operator"]]
        if not ok:
            return False
    return True


def _peer_matches(rule_peer: Mapping[str, Any], policy_namespace: str, peer: Peer) -> bool:
    if "ipBlock" in rule_peer:
        return True
    if peer.namespace is None:
        return False
    if "namespaceSelector" in rule_peer:
        in_namespace = matches(
            rule_peer["namespaceSelector"], {"kubernetes.io/metadata.name": peer.namespace}
        )
    else:
        in_namespace = peer.namespace == policy_namespace
    return in_namespace and matches(rule_peer.get("podSelector"), peer.labels)


def _port_matches(ports: list[Mapping[str, Any]] | None, port: int, protocol: str, destination: Peer) -> bool:
    if not ports:
        return True
    for p in ports:
        if p.get("protocol", "TCP") != protocol:
            continue
        if "port" not in p:
            return True
        number = p["port"] if isinstance(p["port"], int) else destination.ports.get(p["port"])
        if number is not None and number <= port <= p.get("endPort", number):
            return True
    return False


def selecting(policies: Iterable[Policy], pod: Peer, direction: str) -> list[Policy]:
    """The policies that select the pod for a direction ("Ingress" or "Egress")."""
    return [
        p
        for p in policies
        if p.namespace == pod.namespace
        and direction in p.types
        and matches(p.spec.get("podSelector"), pod.labels)
    ]


def _side_allows(policies: list[Policy], pod: Peer, direction: str, other: Peer, port: int, protocol: str,
                 destination: Peer) -> bool:  # fmt: skip
    chosen = selecting(policies, pod, direction)
    rules_key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    return not chosen or any(
        _port_matches(rule.get("ports"), port, protocol, destination)
        and (not rule.get(peers_key) or any(_peer_matches(x, p.namespace, other) for x in rule[peers_key]))
        for p in chosen
        for rule in p.spec.get(rules_key) or []
    )


def allowed(
    policies: list[Policy],
    source: Peer,
    destination: Peer,
    port: int,
    protocol: str = "TCP",
    *,
    egress: bool = True,
) -> bool:
    """Whether ``source`` may connect to ``destination`` on ``port``; only this namespace's policies are
    known. ``egress=False``: by the destination's ingress policies alone (as if the source's egress were
    open)."""
    known = {p.namespace for p in policies}
    out = (
        not egress
        or source.namespace not in known
        or _side_allows(policies, source, "Egress", destination, port, protocol, destination)
    )
    ingress = destination.namespace not in known or _side_allows(
        policies, destination, "Ingress", source, port, protocol, destination
    )
    return out and ingress


# ------------------------------------------------------------------------------------------------------------
# The bundle's pods and policies, with what the Strimzi operator adds


def pod_peer(pod: PodTemplate, namespace: str) -> Peer:
    ports = {
        p["name"]: p["containerPort"] for c in pod.containers() for p in c.get("ports") or [] if "name" in p
    }
    return Peer(pod.doc.name, namespace, dict(pod.labels), ports)


def operator_pods(bundle: Bundle, namespace: str) -> list[Peer]:
    """The pods the Strimzi operator runs for each Kafka: one per node pool, and the entity operator."""
    peers = []
    for kafka in bundle.of("Kafka"):
        name = kafka.name
        base = {"strimzi.io/cluster": name, "strimzi.io/kind": "Kafka"}
        listeners = {
            f"l{lst['port']}": int(lst["port"]) for lst in kafka.obj["spec"]["kafka"].get("listeners") or []
        }
        for pool in bundle.of("KafkaNodePool"):
            if (pool.obj["metadata"].get("labels") or {}).get("strimzi.io/cluster") == name:
                labels = base | {"strimzi.io/name": f"{name}-kafka", "strimzi.io/pool-name": pool.name}
                ports = {"tcp-ctrlplane": 9090, "tcp-replication": 9091, **listeners}
                peers.append(Peer(f"{name}-{pool.name}", namespace, labels, ports))
        if "entityOperator" in kafka.obj["spec"]:
            labels = base | {"strimzi.io/name": f"{name}-entity-operator"}
            peers.append(Peer(f"{name}-entity-operator", namespace, labels))
    return peers


def strimzi_policies(bundle: Bundle, namespace: str) -> list[Policy]:
    """The ingress policy Strimzi generates for each Kafka's pods: controller quorum and replication from its
    own pods (and the operators), each listener port from the listener's networkPolicyPeers (open without)."""
    policies = []
    for kafka in bundle.of("Kafka"):
        name = kafka.name
        nodes = {
            "podSelector": {"matchLabels": {"strimzi.io/cluster": name, "strimzi.io/name": f"{name}-kafka"}}
        }
        entity = {"podSelector": {"matchLabels": {"strimzi.io/name": f"{name}-entity-operator"}}}
        cluster_operator = {
            "namespaceSelector": {},
            "podSelector": {"matchLabels": {"strimzi.io/kind": "cluster-operator"}},
        }
        ingress: list[dict[str, Any]] = [
            {"ports": [{"port": 9090}], "from": [nodes]},
            {"ports": [{"port": 9091}], "from": [nodes, entity, cluster_operator]},
            {"ports": [{"port": 8443}], "from": [cluster_operator]},
        ]
        for lst in kafka.obj["spec"]["kafka"].get("listeners") or []:
            peers = lst.get("networkPolicyPeers")
            ingress.append({"ports": [{"port": int(lst["port"])}], **({"from": peers} if peers else {})})
        spec = {"podSelector": nodes["podSelector"], "policyTypes": ["Ingress"], "ingress": ingress}
        policies.append(Policy(f"{name}-network-policy-kafka (Strimzi)", namespace, spec))
    return policies


def policies_of(bundle: Bundle, namespace: str) -> list[Policy]:
    """The bundle's NetworkPolicies and the ones Strimzi generates from it."""
    own = [
        Policy(d.name, (d.obj.get("metadata") or {}).get("namespace") or namespace, d.obj.get("spec") or {})
        for d in bundle.of("NetworkPolicy")
    ]
    return own + strimzi_policies(bundle, namespace)


#: Peers outside the manifests: who the allow lists name (Prometheus, KEDA, CoreDNS, the Strimzi operator) and
#: who they must keep out (a pod of the namespace that is none of streamrec's, a pod elsewhere, the internet).
def outside_peers(namespace: str) -> list[Peer]:
    return [
        Peer("prometheus", "monitoring", {"app.kubernetes.io/name": "prometheus"}),
        Peer("keda-operator", "keda", {"app.kubernetes.io/name": "keda-operator"}),
        Peer("coredns", "kube-system", {"k8s-app": "kube-dns"}, {"dns": 53}),
        Peer("strimzi-cluster-operator", "strimzi", {"strimzi.io/kind": "cluster-operator"}),
        Peer("stray-pod", namespace, {"app.kubernetes.io/name": "debug-shell"}),
        Peer("other-namespace", "default", {"app.kubernetes.io/name": "api"}),
        Peer("internet", None, {}),
    ]


@dataclass
class Network:
    """Every peer of a rendered bundle and the policies that govern them."""

    namespace: str
    pods: list[Peer]  # the bundle's workloads and the operator's pods
    peers: list[Peer]  # pods plus the outside peers
    policies: list[Policy]

    @classmethod
    def of(cls, bundle: Bundle, namespace: str) -> Network:
        pods = [pod_peer(p, namespace) for p in bundle.pods()] + operator_pods(bundle, namespace)
        return cls(namespace, pods, pods + outside_peers(namespace), policies_of(bundle, namespace))

    def peer(self, name: str) -> Peer:
        return next(p for p in self.peers if p.name == name)

    def who_reaches(
        self, destination: Peer, port: int, protocol: str = "TCP", *, egress: bool = True
    ) -> set[str]:
        """Names of the peers (other than the destination itself) allowed to connect to it on ``port``
        (``egress=False``: by the destination's ingress policies alone)."""
        return {
            p.name
            for p in self.peers
            if p.name != destination.name
            and allowed(self.policies, p, destination, port, protocol, egress=egress)
        }
