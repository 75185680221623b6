"""The few generic checks that no schema expresses and that matter for these manifests.

No manifest linter from PyPI installs beside the project's pinned dependencies (checkov, the one maintained
Kubernetes linter there, pins packaging<24 and networkx<2.7), so only these are kept: the restricted pod
security profile, pinned images, bounded resources (quantities parsed by ``kubernetes.utils``), probes on
long-running containers, and references between objects (selectors that select, names that resolve, the
GPU scheduling chain). Label selectors are compared by ``matchLabels`` (the manifests use no
``matchExpressions``). :func:`container_env` resolves a container's environment as the kubelet does, for
streamrec's own checks, and reports the references that do not resolve.
"""

from __future__ import annotations

import base64
import re
from typing import Any

from kubernetes.utils import parse_quantity

from tests.k8s.manifests import Bundle, Doc, PodTemplate

GPU = "nvidia.com/gpu"
GPU_FAMILIES = ("g5", "g6", "p4", "p5")  # what the Triton and trainer images are built and sized for
_VAR_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")
_PINNED = re.compile(r"^[^@]+:[^/:@]+$|@sha256:[0-9a-f]{64}$")
#: Restricted pod security: (field, value it must have, message); container fields override the pod's.
_SECURITY = (
    ("runAsNonRoot", True, "runAsNonRoot is not true"),
    ("allowPrivilegeEscalation", False, "allowPrivilegeEscalation must be false"),
    ("readOnlyRootFilesystem", True, "readOnlyRootFilesystem must be true"),
)


def selects(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """A label selector (or a Service's plain map) against labels; an empty selector selects nothing here."""
    selector = selector or {}
    match = selector.get("matchLabels") or {} if "matchLabels" in selector else selector
    return bool(match) and all(labels.get(k) == v for k, v in match.items())


def _quantities(where: str, resources: dict[str, Any]) -> list[str]:
    errors, parsed = [], {}
    for part in ("requests", "limits"):
        values = resources.get(part) or {}
        errors += [f"{where}: resources.{part}.{r} is missing" for r in ("cpu", "memory") if r not in values]
        for r, v in values.items():
            try:
                parsed[part, r] = parse_quantity(v)
            except ValueError as exc:
                errors.append(f"{where}: resources.{part}.{r}: {exc}")
    for (part, r), value in parsed.items():
        if part == "requests" and value > parsed.get(("limits", r), value):
            errors.append(f"{where}: resources.requests.{r} exceeds its limit")
    return errors


def _container(pod: PodTemplate, c: dict[str, Any]) -> list[str]:
    where = f"{pod.doc.where}: container {c.get('name')!r}"
    image = str(c.get("image", ""))
    errors = (
        []
        if _PINNED.search(image) and not image.endswith(":latest")
        else [f"{where}: image {image!r} must be pinned to a tag or digest (not latest)"]
    )
    errors += _quantities(where, c.get("resources") or {})
    if pod.long_running and c in (pod.spec.get("containers") or []):
        errors += [f"{where}: {p} is missing" for p in ("readinessProbe", "livenessProbe") if p not in c]
    security = (pod.spec.get("securityContext") or {}) | (c.get("securityContext") or {})
    errors += [f"{where}: {message}" for key, value, message in _SECURITY if security.get(key) is not value]
    if security.get("runAsUser") == 0 or security.get("privileged"):
        errors.append(f"{where}: runs as uid 0 or privileged")
    if "ALL" not in ((security.get("capabilities") or {}).get("drop") or []):
        errors.append(f"{where}: capabilities must drop ALL")
    if (security.get("seccompProfile") or {}).get("type") not in ("RuntimeDefault", "Localhost"):
        errors.append(f"{where}: seccompProfile must be RuntimeDefault")
    volumes = {v["name"] for v in pod.spec.get("volumes") or []}
    volumes |= {t["metadata"]["name"] for t in (pod.doc.obj["spec"].get("volumeClaimTemplates") or [])}
    errors += [
        f"{where}: volumeMount {m['name']!r} has no volume"
        for m in c.get("volumeMounts") or []
        if m["name"] not in volumes
    ]
    return errors


def check_pods(bundle: Bundle) -> list[str]:
    errors = []
    names = {(d.kind, d.name) for d in bundle.docs}
    pdbs = [(d.obj.get("spec") or {}).get("selector") for d in bundle.of("PodDisruptionBudget")]
    for pod in bundle.pods():
        d = pod.doc
        for c in pod.containers():
            errors += _container(pod, c)
        for v in pod.spec.get("volumes") or []:
            claim = (v.get("persistentVolumeClaim") or {}).get("claimName")
            if claim and ("PersistentVolumeClaim", claim) not in names:
                errors.append(f"{d.where}: volume {v['name']!r} uses PVC {claim!r}, which is not defined")
        if pod.long_running and not selects(d.obj["spec"].get("selector"), pod.labels):
            errors.append(f"{d.where}: spec.selector does not match the pod template labels")
        if d.kind == "Deployment" and not any(selects(s, pod.labels) for s in pdbs):
            errors.append(f"{d.where}: no PodDisruptionBudget covers it")
        if d.kind == "Deployment" and not pod.spec.get("topologySpreadConstraints"):
            errors.append(f"{d.where}: no topologySpreadConstraints")
    return errors


def _port_names(pod: PodTemplate) -> set[str]:
    return {p["name"] for c in pod.containers() for p in c.get("ports") or [] if "name" in p}


def check_references(bundle: Bundle) -> list[str]:
    """Services, disruption budgets and monitors select something; KEDA and Karpenter names resolve."""
    errors = []
    pods = [p for p in bundle.pods() if p.long_running]
    services = bundle.of("Service")
    for svc in services:
        spec = svc.obj.get("spec") or {}
        matched = [p for p in pods if selects(spec.get("selector"), p.labels)]
        named = {p["targetPort"] for p in spec.get("ports") or [] if isinstance(p.get("targetPort"), str)}
        if not matched:
            errors.append(f"{svc.where}: selector {spec.get('selector')} matches no pod template")
        errors += [
            f"{svc.where}: targetPort {name!r} is not a named port of {p.doc.where}"
            for p in matched
            for name in sorted(named - _port_names(p))
        ]
    for pdb in bundle.of("PodDisruptionBudget"):
        spec = pdb.obj.get("spec") or {}
        if not any(selects(spec.get("selector"), p.labels) for p in pods):
            errors.append(f"{pdb.where}: selector matches no workload")
    for sm in bundle.of("ServiceMonitor"):
        spec = sm.obj.get("spec") or {}
        ports = {e.get("port") for e in spec.get("endpoints") or []}
        if not any(
            selects(spec.get("selector"), s.obj["metadata"].get("labels") or {})
            and ports <= {p.get("name") for p in s.obj["spec"].get("ports") or []}
            for s in services
        ):
            errors.append(f"{sm.where}: selector matches no Service with the ports {sorted(ports)}")
    for pm in bundle.of("PodMonitor"):
        spec = pm.obj.get("spec") or {}
        ports = {e.get("port") for e in spec.get("podMetricsEndpoints") or []}
        if not any(selects(spec.get("selector"), p.labels) and ports <= _port_names(p) for p in pods):
            errors.append(f"{pm.where}: selector matches no pod template with the ports {sorted(ports)}")
    for so in bundle.of("ScaledObject"):
        ref = so.obj["spec"].get("scaleTargetRef") or {}
        kind = ref.get("kind", "Deployment")
        if kind not in ("Deployment", "StatefulSet") or bundle.get(kind, ref.get("name", "")) is None:
            errors.append(
                f"{so.where}: scaleTargetRef {kind}/{ref.get('name')} names no Deployment or StatefulSet"
            )
        for t in so.obj["spec"].get("triggers") or []:
            auth = (t.get("authenticationRef") or {}).get("name")
            if auth and bundle.get("TriggerAuthentication", auth) is None:
                errors.append(f"{so.where}: authenticationRef {auth!r} names no TriggerAuthentication")
    for ta in bundle.of("TriggerAuthentication"):
        for ref in ta.obj["spec"].get("secretTargetRef") or []:
            if ref.get("key") not in (secret_keys(bundle, ref.get("name")) or set()):
                errors.append(
                    f"{ta.where}: Secret {ref.get('name')!r} with key {ref.get('key')!r} is not defined"
                )
        for ref in ta.obj["spec"].get("configMapTargetRef") or []:
            if ref.get("key") not in (_data(bundle, "ConfigMap", ref.get("name")) or {}):
                errors.append(
                    f"{ta.where}: ConfigMap {ref.get('name')!r} with key {ref.get('key')!r} is not defined"
                )
    return errors


def secret_keys(bundle: Bundle, name: str | None) -> set[str] | None:
    """Keys of a Secret of the bundle, or of one the Strimzi operator makes (the cluster CA, a SCRAM
    KafkaUser's password); None when there is none."""
    doc = bundle.get("Secret", name or "")
    if doc is not None:
        return set(doc.obj.get("data") or {}) | set(doc.obj.get("stringData") or {})
    if any(name == f"{k.name}-cluster-ca-cert" for k in bundle.of("Kafka")):
        return {"ca.crt", "ca.p12", "ca.password"}
    user = bundle.get("KafkaUser", name or "")
    if user is not None and (user.obj["spec"].get("authentication") or {}).get("type") == "scram-sha-512":
        return {"password", "sasl.jaas.config"}
    return None


def brokers(bundle: Bundle, cluster: str) -> int:
    return sum(
        int(p.obj["spec"].get("replicas", 0))
        for p in bundle.of("KafkaNodePool")
        if (p.obj["metadata"].get("labels") or {}).get("strimzi.io/cluster") == cluster
        and "broker" in (p.obj["spec"].get("roles") or [])
    )


def check_kafka(bundle: Bundle) -> list[str]:
    """Strimzi: node pools and topics name a cluster with KRaft roles; replication fits the brokers."""
    errors = []
    for d in bundle.of("KafkaNodePool") + bundle.of("KafkaTopic"):
        cluster = (d.obj["metadata"].get("labels") or {}).get("strimzi.io/cluster", "")
        if bundle.get("Kafka", cluster) is None:
            errors.append(f"{d.where}: label strimzi.io/cluster={cluster!r} names no Kafka")
        replicas, isr = (
            d.obj["spec"].get("replicas"),
            (d.obj["spec"].get("config") or {}).get("min.insync.replicas"),
        )
        if d.kind == "KafkaTopic" and isinstance(replicas, int) and replicas > brokers(bundle, cluster):
            errors.append(f"{d.where}: replicas {replicas} exceeds the {brokers(bundle, cluster)} broker(s)")
        if d.kind == "KafkaTopic" and isr is not None and isinstance(replicas, int) and int(isr) > replicas:
            errors.append(f"{d.where}: min.insync.replicas {isr} exceeds replicas {replicas}")
    for k in bundle.of("Kafka"):
        pools = [
            p
            for p in bundle.of("KafkaNodePool")
            if p.obj["metadata"]["labels"].get("strimzi.io/cluster") == k.name
        ]
        roles = {r for p in pools for r in p.obj["spec"].get("roles") or []}
        if not {"controller", "broker"} <= roles:
            errors.append(
                f"{k.where}: KRaft needs node pools with the controller and broker roles (has {roles})"
            )
        config = (k.obj["spec"].get("kafka") or {}).get("config") or {}
        for key in ("default.replication.factor", "offsets.topic.replication.factor", "min.insync.replicas"):
            if key in config and int(config[key]) > brokers(bundle, k.name):
                errors.append(
                    f"{k.where}: {key}={config[key]} exceeds the {brokers(bundle, k.name)} broker(s)"
                )
    return errors


def _tolerates(tolerations: list[dict[str, Any]], taint: dict[str, Any]) -> bool:
    return any(
        t.get("effect") in (None, "", taint.get("effect"))
        and (
            (t.get("operator") == "Exists" and t.get("key") in (None, "", taint.get("key")))
            or (t.get("key") == taint.get("key") and t.get("value") == taint.get("value"))
        )
        for t in tolerations
    )


def _allows(nodepool: Doc, node_selector: dict[str, str]) -> bool:
    """Whether nodes of the pool can carry these labels (template labels, or In requirements)."""
    template = nodepool.obj["spec"].get("template") or {}
    labels = (template.get("metadata") or {}).get("labels") or {}
    reqs = {r["key"]: r for r in (template.get("spec") or {}).get("requirements") or []}
    return all(
        labels[k] == v
        if k in labels
        else (k in reqs and reqs[k].get("operator") == "In" and v in reqs[k]["values"])
        for k, v in node_selector.items()
    )


def check_karpenter(bundle: Bundle) -> list[str]:
    """NodePools name a node class and have limits; the GPU pool is tainted and offers the GPU families; every
    pod asking for a GPU fits a GPU pool (taints tolerated, node selector satisfiable)."""
    errors = []
    nodepools = bundle.of("NodePool")
    for np in nodepools:
        spec = np.obj["spec"]
        template = spec["template"]["spec"]
        ref = template.get("nodeClassRef") or {}
        if bundle.get(ref.get("kind", ""), ref.get("name", "")) is None:
            errors.append(
                f"{np.where}: nodeClassRef names {ref.get('kind')} {ref.get('name')!r}, which is not defined"
            )
        if not spec.get("limits"):
            errors.append(f"{np.where}: no limits (an unbounded pool can launch any number of nodes)")
        if GPU in (spec.get("limits") or {}):
            if not any(
                t.get("key") == GPU and t.get("effect") == "NoSchedule" for t in template.get("taints") or []
            ):
                errors.append(f"{np.where}: a GPU pool must taint its nodes {GPU}:NoSchedule")
            families = [
                v
                for r in template.get("requirements") or []
                if r.get("key") == "karpenter.k8s.aws/instance-family" and r.get("operator") == "In"
                for v in r.get("values") or []
            ]
            errors += [
                f"{np.where}: instance families do not include {f}*"
                for f in GPU_FAMILIES
                if not any(v.startswith(f) for v in families)
            ]
    for pod in bundle.pods():
        gpus = sum(
            parse_quantity(((c.get("resources") or {}).get("limits") or {}).get(GPU, 0))
            for c in pod.containers()
        )
        fits = [
            np
            for np in nodepools
            if parse_quantity((np.obj["spec"].get("limits") or {}).get(GPU, 0)) >= gpus
            and all(
                _tolerates(pod.spec.get("tolerations") or [], t)
                for t in np.obj["spec"]["template"]["spec"].get("taints") or []
            )
            and _allows(np, pod.spec.get("nodeSelector") or {})
        ]
        if gpus and nodepools and not fits:
            errors.append(
                f"{pod.doc.where}: requests {gpus} GPU(s) but no NodePool with GPU limits can take it"
            )
    return errors


def check_generic(bundle: Bundle) -> list[str]:
    return check_pods(bundle) + check_references(bundle) + check_kafka(bundle) + check_karpenter(bundle)


# ------------------------------------------------------------------------------------------------------------
# A container's environment, resolved as the kubelet does


def _data(bundle: Bundle, kind: str, name: str | None) -> dict[str, str] | None:
    """A ConfigMap's data or a Secret's values (data decoded, then stringData); None when it is not there."""
    doc = bundle.get(kind, name or "")
    if doc is None:  # a Secret the Strimzi operator makes: its keys; a stand-in value (generated there)
        keys = secret_keys(bundle, name) if kind == "Secret" else None
        return None if keys is None else {k: f"<{k} generated by the operator>" for k in keys}
    data = {k: str(v) for k, v in (doc.obj.get("data") or {}).items()}
    if kind == "Secret":
        data = {k: base64.b64decode(v).decode("utf-8", "replace") for k, v in data.items()}
        data |= {k: str(v) for k, v in (doc.obj.get("stringData") or {}).items()}
    return data


def container_env(c: dict[str, Any], bundle: Bundle) -> tuple[dict[str, str], list[str]]:
    """The environment a container's process gets (envFrom, then env in order with $(VAR) expanded), and the
    references that do not resolve (ConfigMaps, Secrets, keys, $(VAR) in env, command and args)."""
    env: dict[str, str] = {}
    problems = []
    for ef in c.get("envFrom") or []:
        kind, ref = (
            ("ConfigMap", ef["configMapRef"])
            if "configMapRef" in ef
            else ("Secret", ef.get("secretRef") or {})
        )
        data = _data(bundle, kind, ref.get("name"))
        if data is None and not ref.get("optional"):
            problems.append(f"envFrom {kind} {ref.get('name')!r} is not defined")
        env |= {ef.get("prefix", "") + k: v for k, v in (data or {}).items()}
    for e in c.get("env") or []:
        name, src = e["name"], e.get("valueFrom") or {}
        for kind, key in (("Secret", "secretKeyRef"), ("ConfigMap", "configMapKeyRef")):
            if key in src:
                data = _data(bundle, kind, src[key].get("name")) or {}
                if src[key].get("key") not in data:
                    problems.append(
                        f"env {name}: {kind} {src[key].get('name')!r} has no key {src[key].get('key')!r}"
                    )
                env[name] = data.get(src[key].get("key"), "")
        if not src:
            problems += [
                f"env {name} references $({r}), which is not defined before it"
                for r in _VAR_REF.findall(str(e.get("value", "")))
                if r not in env
            ]
            env[name] = expand(str(e.get("value", "")), env)
    for part in ("command", "args"):
        refs = {r for arg in c.get(part) or [] for r in _VAR_REF.findall(str(arg))}
        problems += [
            f"{part} references $({r}), which the container's environment lacks"
            for r in sorted(refs - set(env))
        ]
    return env, problems


def expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion (unknown references stay as they are)."""
    return _VAR_REF.sub(lambda m: env.get(m.group(1), m.group(0)), value)
