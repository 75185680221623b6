"""Offline validation of k8s/ and keda/ (no cluster): CRD schemas with their CEL rules, core schemas, the
generic checks that matter here, and streamrec's own checks (settings, CLI, Triton repository, KEDA bounds).

The vendored CRDs are looked up in ``<repo>/../shared/crds`` (override: ``STREAMREC_CRDS_DIR``); schema tests
skip when they are absent. Rendering overlays needs ``kustomize`` or ``kubectl``; those tests skip without
either. Every check has a negative test: a mutated manifest it must reject.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.k8s import schemas
from tests.k8s.generic import (
    GPU,
    brokers,
    check_generic,
    check_kafka,
    check_karpenter,
    check_pods,
    check_references,
)
from tests.k8s.manifests import (
    KUSTOMIZATION_NAMES,
    OVERLAYS,
    REPO,
    Bundle,
    Doc,
    check_kustomization,
    kustomizations,
    kustomize_command,
    load_docs,
    manifest_files,
    pod_template,
    referenced_files,
    rendered_overlay,
)
from tests.k8s.schemas import (
    CrdRegistry,
    cel_holds,
    check_core_schemas,
    check_custom_resources,
    check_identity,
    to_cel,
)
from tests.k8s.validator import (
    check_project,
    check_scaled_objects,
    check_settings_consistency,
    check_streamrec_containers,
    check_triton,
    check_triton_metrics,
    cli_problem,
    env_var_problem,
    streamrec_cli,
    streamrec_invocations,
    streamrec_runs,
)

RENDERED = OVERLAYS


def _fmt(errors: list[str]) -> str:
    return "\n".join(errors)


@pytest.fixture(scope="session")
def registry(optional_registry: CrdRegistry | None) -> CrdRegistry:
    if optional_registry is None:
        directory = schemas.crds_dir()
        pytest.skip(
            f"vendored CRDs not found at {directory} (set STREAMREC_CRDS_DIR): schema validation skipped"
        )
    return optional_registry


@pytest.fixture(scope="session")
def optional_registry() -> CrdRegistry | None:
    return CrdRegistry(schemas.crds_dir()) if schemas.crds_dir().is_dir() else None


@pytest.fixture(scope="session")
def roles() -> dict[Path, set[str]]:
    return referenced_files()


@pytest.fixture(scope="session")
def resource_docs(roles: dict[Path, set[str]]) -> list[Doc]:
    """Every document of every file a kustomization lists as a resource."""
    return [d for f in manifest_files() if "resource" in roles.get(f.resolve(), set()) for d in load_docs(f)]


@pytest.fixture(scope="session")
def patch_docs(roles: dict[Path, set[str]]) -> list[Doc]:
    return [d for f in manifest_files() if "patch" in roles.get(f.resolve(), set()) for d in load_docs(f)]


@pytest.fixture
def source_bundle(resource_docs: list[Doc]) -> Bundle:
    return Bundle(copy.deepcopy(resource_docs))


def _rendered(name: str) -> list[Doc]:
    if kustomize_command() is None:
        pytest.skip("neither kustomize nor kubectl is installed: overlays not rendered")
    return rendered_overlay(name)


def _replace(bundle: Bundle, kind: str, name: str, obj: dict) -> None:
    for i, d in enumerate(bundle.docs):
        if d.kind == kind and d.name == name:
            bundle.docs[i] = Doc(obj, d.source)
            return
    raise AssertionError(f"{kind}/{name} not in bundle")


def _obj(bundle: Bundle, kind: str, name: str) -> dict:
    doc = bundle.get(kind, name)
    assert doc is not None, f"{kind}/{name} missing"
    return copy.deepcopy(doc.obj)


def _container(obj: dict, name: str) -> dict:
    pod = pod_template(Doc(obj, "x"))
    assert pod is not None
    return next(c for c in pod.containers() if c["name"] == name)


def _set_env(c: dict, name: str, value: str | None) -> None:
    """Replace (or with None remove) one env entry; builds a new list (YAML aliases share lists)."""
    c["env"] = [e for e in c.get("env", []) if e["name"] != name] + (
        [{"name": name, "value": value}] if value else []
    )


# ------------------------------------------------------------------------------------------------------------
# Files and kustomizations


def test_every_manifest_file_parses_and_is_used_by_a_kustomization(roles: dict[Path, set[str]]) -> None:
    files = manifest_files()
    assert files, "no manifests found"
    orphans = []
    for f in files:
        load_docs(f)  # raises on YAML errors
        if f.name not in KUSTOMIZATION_NAMES and f.resolve() not in roles:
            orphans.append(str(f.relative_to(REPO)))
    assert not orphans, f"Manifest files no kustomization uses: {orphans}"


@pytest.mark.parametrize("path", kustomizations(), ids=lambda p: str(p.parent.relative_to(REPO)))
def test_kustomization_references_exist(path: Path) -> None:
    assert not (errors := check_kustomization(path)), _fmt(errors)


def test_expected_kustomizations_exist() -> None:
    dirs = {str(p.parent.relative_to(REPO)) for p in kustomizations()}
    assert {"k8s/base", "k8s/overlays/local", "k8s/overlays/gpu", "keda", "keda/karpenter"} <= dirs


def test_kustomization_check_rejects_missing_and_remote_references(tmp_path: Path) -> None:
    (tmp_path / "present.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
    (tmp_path / "emptydir").mkdir()
    k = tmp_path / "kustomization.yaml"
    k.write_text(
        "resources:\n  - present.yaml\n  - missing.yaml\n  - emptydir\n"
        "  - https://github.com/example/repo//config?ref=v1\npatches:\n  - path: nope.yaml\n"
    )
    errors = _fmt(check_kustomization(k))
    assert "'missing.yaml' does not exist" in errors
    assert "'nope.yaml' does not exist" in errors
    assert "'emptydir' is a directory without a kustomization" in errors
    assert "remote reference" in errors
    assert "present.yaml" not in errors


# ------------------------------------------------------------------------------------------------------------
# Schemas: jsonschema + cel-python over the vendored CRDs, kubernetes-validate for core kinds


def test_custom_resources_match_vendored_crds(registry: CrdRegistry, resource_docs: list[Doc]) -> None:
    kinds = {d.kind for d in resource_docs if not schemas.is_core(d)}
    assert {
        "Kafka",
        "KafkaNodePool",
        "KafkaTopic",
        "ScaledObject",
        "TriggerAuthentication",
        "NodePool",
        "EC2NodeClass",
        "ServiceMonitor",
        "PodMonitor",
    } <= kinds
    assert not (errors := check_custom_resources(Bundle(resource_docs), registry)), _fmt(errors)


def test_every_custom_kind_has_a_vendored_crd(registry: CrdRegistry, resource_docs: list[Doc]) -> None:
    """A custom kind without a vendored CRD is not schema-checked: skipped, naming the kinds and files."""
    typo = Doc({"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObjekt"}, "typo.yaml#0")
    assert schemas.unvendored(Bundle([typo]), registry) == {"keda.sh/v1alpha1 ScaledObjekt": ["typo.yaml#0"]}
    missing = schemas.unvendored(Bundle(resource_docs), registry)
    if missing:
        kinds = "; ".join(f"{kind} ({', '.join(where)})" for kind, where in missing.items())
        pytest.skip(f"no CRD in {schemas.crds_dir()} for {kinds}: their schemas are not checked")


def test_patches_match_vendored_crds_and_target_existing_objects(
    registry: CrdRegistry, patch_docs: list[Doc], resource_docs: list[Doc]
) -> None:
    assert patch_docs
    existing = {(d.kind, d.name) for d in resource_docs}
    errors = [
        f"{d.where}: patches an object no resource defines"
        for d in patch_docs
        if (d.kind, d.name) not in existing
    ]
    errors += check_custom_resources(Bundle(patch_docs), registry, partial=True)
    assert not errors, _fmt(errors)


def test_strimzi_resources_use_v1(resource_docs: list[Doc]) -> None:
    strimzi = [d for d in resource_docs if d.group == "kafka.strimzi.io"]
    assert strimzi and all(d.api_version == "kafka.strimzi.io/v1" for d in strimzi)


def test_every_cel_rule_of_the_vendored_crds_compiles_and_calls_known_functions(
    registry: CrdRegistry,
) -> None:
    rules = registry.rules()
    assert len(rules) > 20
    unknown = {rule: schemas.cel_unknown_functions(rule) for rule in rules}
    assert not {r: f for r, f in unknown.items() if f}, unknown
    # The check itself sees a function cel-python and the Kubernetes additions lack.
    assert schemas.cel_unknown_functions("self.lowerAscii() == 'a'") == {"lowerAscii"}


def test_crd_validation_rejects_unknown_fields_duplicates_and_failed_cel_rules() -> None:
    schema = {
        "type": "object",
        "required": ["port"],
        "properties": {
            "port": {"anyOf": [{"type": "integer"}, {"type": "string"}], "x-kubernetes-int-or-string": True},
            "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            "strict": {"type": "object", "properties": {"a": {"type": "integer"}}},
            "tags": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"},
            "ports": {
                "type": "array",
                "items": {"type": "object", "properties": {"name": {"type": "string"}}},
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["name"],
            },
            "low": {"type": "integer"},
        },
        "x-kubernetes-validations": [
            {"rule": "!has(self.low) || self.low < 10", "message": "low must be below 10"},
            {"rule": "self.port == oldSelf.port", "message": "transition rules apply to updates only"},
        ],
    }
    validator = schemas.CrdValidator(schema)
    ok = {
        "port": "http",
        "free": {"anything": [1]},
        "strict": {"a": 1},
        "tags": ["x"],
        "ports": [{"name": "a"}],
    }
    assert not list(validator.iter_errors(ok))
    for bad, message in (
        ({"port": 1.5}, "is not valid under any of the given schemas"),
        ({"port": 1, "strict": {"b": 1}}, "'b' was unexpected"),
        ({"port": 1, "extra": 1}, "'extra' was unexpected"),
        ({"port": 1, "tags": ["x", "x"]}, "duplicate entry 'x'"),
        ({"port": 1, "ports": [{"name": "a"}, {"name": "a"}]}, "duplicate entry"),
        ({"port": 1, "low": 12}, "low must be below 10"),
        ({}, "'port' is a required property"),
    ):
        assert message in _fmt([e.message for e in validator.iter_errors(bad)]), bad
    assert not list(schemas.PatchValidator(schema).iter_errors({"low": 12})), "patches: no required, no CEL"
    broken = schemas.CrdValidator({"type": "object", "x-kubernetes-validations": [{"rule": "self.a =="}]})
    assert "CEL rule does not compile" in _fmt([e.message for e in broken.iter_errors({})])


@pytest.mark.parametrize(
    ("rule", "value", "expected"),
    [
        (
            "self.minReplicaCount <= (has(self.maxReplicaCount) ? self.maxReplicaCount : 100)",
            {"minReplicaCount": 3},
            True,
        ),
        ("!has(self.a) || self.a <= self.b", {"a": 7, "b": 6}, False),
        (
            "self.all(x, x.operator == 'In' ? x.values.size() != 0 : true)",
            [{"operator": "In", "values": []}],
            False,
        ),
        ("self.all(k, k != '' && self[k] != '')", {"a": "b"}, True),
        ("self.split('@')[0] in ['al2023', 'bottlerocket']", "al2023@latest", True),
        ("self.matches('^[a-zA-Z0-9]+@.+$')", "al2023", False),
        (
            "self.filter(x, has(x.root) ? x.root == true : false).size() <= 1",
            [{"root": True}, {"root": True}],
            False,
        ),
        ("!self.find('^([^/]+)').endsWith('karpenter.sh')", "karpenter.sh/x", False),
        ("self.missing == 1 || true", {}, True),
        ("self.missing == 1", {}, False),  # an evaluation error fails the rule, as in the API server
        ("int(self.values[0]) >= 0", {"values": ["5"]}, True),
    ],
)
def test_cel_rules_evaluate_as_in_kubernetes(rule: str, value: object, expected: bool) -> None:
    assert cel_holds(rule, to_cel({"self": value})) is expected


def _need_kubernetes_validate() -> None:
    pytest.importorskip(
        "kubernetes_validate",
        reason="kubernetes-validate not installed: core objects not checked against k8s schemas",
    )


@pytest.mark.parametrize("name", ["source", *sorted(RENDERED)])
def test_core_objects_match_kubernetes_schemas(name: str, resource_docs: list[Doc]) -> None:
    _need_kubernetes_validate()
    bundle = Bundle(resource_docs if name == "source" else _rendered(name))
    assert any(schemas.is_core(d) for d in bundle.docs)
    assert not (errors := check_core_schemas(bundle)), _fmt(errors)


def test_core_schema_check_rejects_unknown_and_mistyped_fields(source_bundle: Bundle) -> None:
    _need_kubernetes_validate()
    worker = _obj(source_bundle, "Deployment", "worker")
    worker["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    _replace(source_bundle, "Deployment", "worker", worker)
    pdb = _obj(source_bundle, "PodDisruptionBudget", "api")
    pdb["spec"]["maxUnavailable"] = [1]
    _replace(source_bundle, "PodDisruptionBudget", "api", pdb)
    source_bundle.docs.append(
        Doc({"apiVersion": "apps/v1", "kind": "Deploymnt", "metadata": {"name": "x"}}, "t")
    )
    errors = _fmt(check_core_schemas(source_bundle))
    assert "'readinessProbes' was unexpected" in errors
    assert "PodDisruptionBudget/api: spec/maxUnavailable" in errors
    assert "Deploymnt/x: no Kubernetes 1.32.0 schema for apps/v1 Deploymnt" in errors


# ------------------------------------------------------------------------------------------------------------
# Every check on the sources and on the rendered overlays


def test_source_manifests_pass_every_check(source_bundle: Bundle) -> None:
    errors = check_generic(source_bundle) + check_project(source_bundle)
    assert not errors, _fmt(errors)


@pytest.mark.parametrize("name", sorted(RENDERED))
def test_rendered_overlay_passes_every_check(name: str, optional_registry: CrdRegistry | None) -> None:
    """The generic and streamrec checks, and the CRD schemas when the vendored CRDs are there."""
    bundle, registry = Bundle(_rendered(name)), optional_registry
    errors = check_generic(bundle) + check_project(bundle) + check_identity(bundle, registry, "streamrec")
    if registry is not None:
        errors += check_custom_resources(bundle, registry)
    assert not errors, _fmt(errors)


def test_identity_check_rejects_bad_names_and_misplaced_namespaces(registry: CrdRegistry) -> None:
    bundle = Bundle(copy.deepcopy(_rendered("gpu")))
    assert not check_identity(bundle, registry, "streamrec")
    bundle.get("PodMonitor", "worker").obj["metadata"].pop("namespace")  # type: ignore[union-attr]
    bundle.get("NodePool", "gpu").obj["metadata"]["namespace"] = "streamrec"  # type: ignore[union-attr]
    bundle.get("Service", "api").obj["metadata"]["name"] = "1api"  # type: ignore[union-attr]
    bundle.get("ConfigMap", "streamrec-config").obj["metadata"]["name"] = "Streamrec_Config"  # type: ignore[union-attr]
    errors = _fmt(check_identity(bundle, registry, "streamrec"))
    assert "PodMonitor/worker: namespaced, but rendered into namespace None" in errors
    assert "NodePool/gpu: cluster-scoped, but sets metadata.namespace 'streamrec'" in errors
    assert "metadata.name '1api' is not a DNS-1035 name" in errors
    assert "metadata.name 'Streamrec_Config' is not a DNS-1123 name" in errors


def test_checks_see_every_streamrec_command_the_manifests_run(source_bundle: Bundle) -> None:
    """The CLI, settings and write checks above have something to check: each streamrec workload's command."""
    argvs = [argv for run in streamrec_runs(source_bundle) for argv in run.invocations]
    seen = {
        " ".join(a[:2]) if a[0] in ("serve", "features", "train", "catalog") else a[0] for a in argvs if a
    }
    expected = {
        "worker",
        "api",
        "archive",
        "serve prepare",
        "features apply",
        "train finetune",
        "catalog snapshot",
    }
    assert expected | {"catalog-sync"} <= seen, seen


def test_local_overlay_is_cpu_only_and_single_broker() -> None:
    bundle = Bundle(_rendered("local"))
    for pod in bundle.pods():
        for c in pod.containers():
            res = c.get("resources") or {}
            assert GPU not in (res.get("limits") or {}) and GPU not in (res.get("requests") or {}), (
                pod.doc.where
            )
    assert not bundle.of("ScaledObject") and not bundle.of("NodePool")
    assert brokers(bundle, "streamrec") == 1
    assert all(t.obj["spec"]["replicas"] == 1 for t in bundle.of("KafkaTopic"))


def test_gpu_overlay_wires_gpus_and_autoscaling() -> None:
    bundle = Bundle(_rendered("gpu"))
    for kind, name in (("Deployment", "triton"), ("CronJob", "trainer-finetune")):
        doc = bundle.get(kind, name)
        assert doc is not None
        pod = pod_template(doc)
        assert pod is not None
        gpus = {
            c["name"]: c["resources"]["limits"][GPU]
            for c in pod.containers()
            if GPU in c["resources"]["limits"]
        }
        assert gpus == {doc.name.split("-")[0]: "1"}, f"{name}: {gpus}"
    scaled = {d.obj["spec"]["scaleTargetRef"]["name"]: d.obj["spec"] for d in bundle.of("ScaledObject")}
    assert set(scaled) == {"worker", "archiver", "triton", "api"}
    for target, group in (("worker", "streamrec-worker"), ("archiver", "streamrec-archiver")):
        (trigger,) = scaled[target]["triggers"]
        assert trigger["type"] == "kafka"
        assert trigger["metadata"]["consumerGroup"] == group
        assert trigger["metadata"]["topic"] == "interactions"
        assert 1 <= scaled[target]["minReplicaCount"] <= scaled[target]["maxReplicaCount"] <= 6
    triton_queries = [
        t["metadata"]["query"] for t in scaled["triton"]["triggers"] if t["type"] == "prometheus"
    ]
    assert any("nv_inference_request_success" in q for q in triton_queries)
    assert {t["type"] for t in scaled["api"]["triggers"]} <= {"cpu", "prometheus"}
    pools = {d.name: d.obj["spec"] for d in bundle.of("NodePool")}
    assert GPU in pools["gpu"]["limits"] and GPU not in pools["cpu"].get("limits", {})
    pvcs = {d.name: d.obj["spec"]["accessModes"] for d in bundle.of("PersistentVolumeClaim")}
    assert pvcs == {"streamrec-data": ["ReadWriteMany"], "streamrec-models": ["ReadWriteMany"]}
    for name in ("worker", "archiver", "api", "triton"):  # KEDA's HPA owns their replica count
        assert "replicas" not in _obj(bundle, "Deployment", name)["spec"], name


def test_topics_match_kafka_settings_defaults(resource_docs: list[Doc]) -> None:
    from streamrec.catalog.settings import CatalogSettings
    from streamrec.settings import KafkaSettings

    expected = {
        cls.model_fields[f"{role}_topic"].default: cls.model_fields[f"{role}_partitions"].default
        for cls, roles in (
            (KafkaSettings, ("interactions", "recommendations", "dlq")),
            (CatalogSettings, ("items", "users", "dlq")),
        )
        for role in roles
    }
    topics = {
        (d.obj["spec"].get("topicName") or d.name): d.obj["spec"]["partitions"]
        for d in resource_docs
        if d.kind == "KafkaTopic"
    }
    assert topics == expected


def test_catalog_topics_have_the_config_the_code_creates_them_with(resource_docs: list[Doc]) -> None:
    """The compacted items/users topics and the catalog DLQ as ``streamrec catalog topics`` creates them."""
    from streamrec.catalog.settings import CatalogSettings
    from streamrec.catalog.topics import catalog_topics

    by_name = {(d.obj["spec"].get("topicName") or d.name): d for d in resource_docs if d.kind == "KafkaTopic"}
    for spec in catalog_topics(CatalogSettings()):
        topic = by_name[spec.name].obj["spec"]
        config = {k: str(v) for k, v in (topic.get("config") or {}).items()}
        assert topic["partitions"] == spec.partitions, spec.name
        assert dict(spec.config).items() <= config.items(), (spec.name, config)


def test_consumer_groups_match_the_worker_settings(resource_docs: list[Doc]) -> None:
    """The worker's Faust app id is the consumer group KEDA watches."""
    worker = next(d for d in resource_docs if d.kind == "Deployment" and d.name == "worker")
    env = {e["name"]: e.get("value") for e in worker.obj["spec"]["template"]["spec"]["containers"][0]["env"]}
    so = next(d for d in resource_docs if d.kind == "ScaledObject" and d.name == "worker")
    assert env["STREAMREC_STREAMS_APP_ID"] == so.obj["spec"]["triggers"][0]["metadata"]["consumerGroup"]


# ------------------------------------------------------------------------------------------------------------
# Settings variables and the CLI


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("STREAMREC_KAFKA_INTERACTIONS_PARTITIONS", True),
        ("STREAMREC_PATHS_ARCHIVE_ROOT", True),
        ("STREAMREC_TRITON_GRPC_URL", True),
        ("STREAMREC_FEAST_REPO", True),
        ("STREAMREC_API_API_KEYS", True),
        ("STREAMREC_STREAMS_APP_ID", True),
        ("KAFKA_BOOTSTRAP_SERVERS", True),
        # An app prefix without a registered settings class yet is accepted by prefix only.
        ("STREAMREC_CONSUMERS_ANYTHING", True),
        ("STREAMREC_API_KEYS", False),  # ApiSettings.api_keys is STREAMREC_API_API_KEYS
        ("STREAMREC_STREAMS_ANYTHING", False),
        ("STREAMREC_KAFKA_BOOTSTRAP_SERVER", False),
        ("STREAMREC_REDIS_PASSWORD", False),
        ("STREAMREC_FEAST_REPOSITORY", False),
    ],
)
def test_env_var_names_are_checked_against_settings_classes(name: str, ok: bool) -> None:
    from serving.settings import ApiSettings
    from streamrec.settings import CORE_SETTINGS
    from streams.settings import StreamsSettings

    # A fixed set of classes: the consumers app has no settings class in it, whatever the tree holds today.
    assert (env_var_problem(name, (*CORE_SETTINGS, ApiSettings, StreamsSettings)) is None) is ok


def test_app_settings_classes_and_commands_are_registered_with_the_cli() -> None:
    cli = streamrec_cli()
    names = {cls.__name__ for cls in cli.settings}
    assert {
        "KafkaSettings",
        "StreamsSettings",
        "ApiSettings",
        "ServingSettings",
        "TrainerSettings",
        "ConsumersSettings",
    } <= names
    assert {"worker", "api", "serve", "train", "features", "archive"} <= cli.commands


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        (["worker"], None),
        (["train", "finetune", "--data", "/data/archive", "--no-progress"], None),
        (["serve", "prepare", "--no-load"], None),
        (["features", "apply"], None),
        (["train", "finetun"], "invalid choice: 'finetun'"),
        (["worker", "--app"], "expected one argument"),
        (["api", "--workers", "4"], "unrecognized arguments: --workers 4"),
        (["recommend"], "invalid choice: 'recommend'"),
    ],
)
def test_container_arguments_are_parsed_by_the_streamrec_cli(argv: list[str], problem: str | None) -> None:
    found = cli_problem(argv)
    assert (found is None) if problem is None else (found is not None and problem in found), found


def test_streamrec_invocations_are_found_in_shell_scripts() -> None:
    script = (
        'mkdir -p "$X"\nif [ -f "$Y/CURRENT" ]; then\n  exec streamrec serve prepare --no-load\nfi\n'
        "while true; do streamrec serve prepare || echo 'streamrec failed'; sleep 30; done\n"
    )
    container = {"image": "ghcr.io/streamrec/streamrec:1", "command": ["sh", "-c", script]}
    assert streamrec_invocations(container) == [["serve", "prepare", "--no-load"], ["serve", "prepare"]]
    plain = {"image": "ghcr.io/streamrec/streamrec:1", "args": ["train", "full", "--data", "$(ROOT)"]}
    assert streamrec_invocations(plain, {"ROOT": "/data/archive"}) == [
        ["train", "full", "--data", "/data/archive"]
    ]
    assert streamrec_invocations({"image": "redis:7", "args": ["--port", "1"]}) == []


# ------------------------------------------------------------------------------------------------------------
# Negative tests: each check must reject a broken manifest


def test_broken_scaled_object_is_rejected(registry: CrdRegistry, source_bundle: Bundle) -> None:
    so = _obj(source_bundle, "ScaledObject", "worker")
    so["spec"]["maxReplicaCount"] = 12  # > 6 partitions of "interactions"
    so["spec"]["minReplicaCount"] = 13  # > max: the CRD's CEL rule
    so["spec"]["pollingIntervall"] = 15  # typo: unknown field
    so["spec"]["triggers"][0]["metadata"]["lagThreshold"] = 100  # must be a string
    schema_errors = _fmt(registry.validate(Doc(so, "broken")))
    assert "minReplicaCount must be less than or equal to maxReplicaCount" in schema_errors
    assert "'pollingIntervall' was unexpected" in schema_errors
    assert "lagThreshold: 100 is not of type 'string'" in schema_errors

    so2 = _obj(source_bundle, "ScaledObject", "worker")
    so2["spec"]["maxReplicaCount"] = 12
    _replace(source_bundle, "ScaledObject", "worker", so2)
    assert "maxReplicaCount 12 exceeds the 6 partitions of 'interactions'" in _fmt(
        check_scaled_objects(source_bundle)
    )
    so3 = _obj(source_bundle, "ScaledObject", "archiver")
    so3["spec"]["scaleTargetRef"]["name"] = "archivr"
    so3["spec"]["triggers"][0]["metadata"]["topic"] = "interaction"
    so3["spec"]["triggers"][0]["metadata"]["tls"] = "disable"  # the listener is TLS
    so3["spec"]["triggers"][0]["authenticationRef"]["name"] = "kafka-tls-typo"
    _replace(source_bundle, "ScaledObject", "archiver", so3)
    errors = _fmt(check_scaled_objects(source_bundle) + check_references(source_bundle))
    assert "scaleTargetRef Deployment/archivr names no Deployment" in errors
    assert "topic 'interaction' is not defined by a KafkaTopic" in errors
    assert "tls='disable' but listener 'tls' tls=True" in errors
    assert "authenticationRef 'kafka-tls-typo' names no TriggerAuthentication" in errors


def test_scaled_object_without_required_fields_is_rejected(registry: CrdRegistry) -> None:
    broken = {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": "x"},
        "spec": {"minReplicaCount": "1"},
    }
    errors = _fmt(registry.validate(Doc(broken, "broken")))
    assert "'scaleTargetRef' is a required property" in errors
    assert "'triggers' is a required property" in errors
    assert "'1' is not of type 'integer'" in errors
    assert "v1alpha2 is not served by the CRD" in _fmt(
        registry.validate(Doc(broken | {"apiVersion": "keda.sh/v1alpha2"}, "x"))
    )


def test_broken_nodepool_is_rejected(registry: CrdRegistry, source_bundle: Bundle) -> None:
    np = _obj(source_bundle, "NodePool", "gpu")
    reqs = np["spec"]["template"]["spec"]["requirements"]
    reqs[0]["operator"] = "Within"  # not an operator
    reqs[1]["values"] = []  # "In" with no values: CEL rule
    np["spec"]["template"]["metadata"]["labels"]["karpenter.sh/team"] = "x"  # restricted label domain: CEL
    np["spec"]["disruption"]["consolidationPolicy"] = "Sometimes"
    del np["spec"]["template"]["spec"]["nodeClassRef"]
    errors = _fmt(registry.validate(Doc(np, "broken")))
    assert "'Within' is not one of" in errors
    assert "requirements with operator 'In' must have a value defined" in errors
    assert 'label domain "karpenter.sh" is restricted' in errors
    assert "'Sometimes' is not one of" in errors
    assert "'nodeClassRef' is a required property" in errors

    # Schema-valid but wrong for streamrec: GPU pool without its taint, other families, a missing node class.
    np2 = _obj(source_bundle, "NodePool", "gpu")
    np2["spec"]["template"]["spec"]["taints"] = []
    np2["spec"]["template"]["spec"]["requirements"][0]["values"] = ["g5"]
    np2["spec"]["template"]["spec"]["nodeClassRef"]["name"] = "gpu-typo"
    assert not registry.validate(Doc(np2, "schema-valid"))
    _replace(source_bundle, "NodePool", "gpu", np2)
    errors = _fmt(check_karpenter(source_bundle))
    assert f"must taint its nodes {GPU}:NoSchedule" in errors
    assert "instance families do not include p5*" in errors
    assert "EC2NodeClass 'gpu-typo', which is not defined" in errors


def test_gpu_pod_without_a_fitting_nodepool_is_rejected(source_bundle: Bundle) -> None:
    triton = _obj(source_bundle, "Deployment", "triton")
    triton["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"][GPU] = "1"
    triton["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"][GPU] = "1"
    _replace(source_bundle, "Deployment", "triton", triton)
    # No toleration for the GPU pool's taint: nothing can take the pod.
    assert "no NodePool with GPU limits can take it" in _fmt(check_karpenter(source_bundle))
    triton["spec"]["template"]["spec"]["tolerations"] = [
        {"key": GPU, "operator": "Exists", "effect": "NoSchedule"}
    ]
    triton["spec"]["template"]["spec"]["nodeSelector"] = {"streamrec.io/node-class": "gpu"}
    _replace(source_bundle, "Deployment", "triton", triton)
    assert not check_karpenter(source_bundle)
    triton["spec"]["template"]["spec"]["nodeSelector"] = {"streamrec.io/node-class": "gpu-typo"}
    _replace(source_bundle, "Deployment", "triton", triton)
    assert "no NodePool with GPU limits can take it" in _fmt(check_karpenter(source_bundle))


def test_broken_workloads_are_rejected(source_bundle: Bundle) -> None:
    api = _obj(source_bundle, "Deployment", "api")
    c = api["spec"]["template"]["spec"]["containers"][0]
    del c["readinessProbe"]
    del c["resources"]["limits"]
    c["resources"]["requests"]["memory"] = "4 GB"
    c["securityContext"]["readOnlyRootFilesystem"] = False
    c["image"] = "ghcr.io/streamrec/streamrec:latest"
    c["env"].append({"name": "STREAMREC_KAFKA_BOOTSTRAP_SERVER", "value": "x:1"})
    c["env"].append({"name": "URL", "value": "http://$(UNDEFINED_VAR)/"})
    c["volumeMounts"].append({"name": "nowhere", "mountPath": "/x"})
    api["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"] = "api-v2"
    _replace(source_bundle, "Deployment", "api", api)
    worker = _obj(source_bundle, "Deployment", "worker")
    worker["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] = "64"
    _replace(source_bundle, "Deployment", "worker", worker)
    errors = _fmt(
        check_pods(source_bundle)
        + check_references(source_bundle)
        + check_streamrec_containers(source_bundle)
    )
    assert "readinessProbe is missing" in errors
    assert "resources.limits.cpu is missing" in errors
    assert "resources.requests.memory: " in errors  # "4 GB" is no quantity
    assert "Deployment/worker: container 'worker': resources.requests.cpu exceeds its limit" in errors
    assert "readOnlyRootFilesystem must be true" in errors
    assert "must be pinned to a tag or digest" in errors
    assert "volumeMount 'nowhere' has no volume" in errors
    assert "STREAMREC_KAFKA_BOOTSTRAP_SERVER is not a field" in errors
    assert "references $(UNDEFINED_VAR)" in errors
    assert "spec.selector does not match the pod template labels" in errors
    assert "Service/api" in errors and "matches no pod template" in errors
    assert "PodDisruptionBudget/api: selector matches no workload" in errors


def test_topic_and_settings_mismatches_are_rejected(source_bundle: Bundle) -> None:
    topic = _obj(source_bundle, "KafkaTopic", "interactions")
    topic["spec"]["partitions"] = 4
    topic["spec"]["replicas"] = 5
    _replace(source_bundle, "KafkaTopic", "interactions", topic)
    cm = _obj(source_bundle, "ConfigMap", "streamrec-config")
    cm["data"]["STREAMREC_BLOOM_CAPACITYY"] = "10"
    _replace(source_bundle, "ConfigMap", "streamrec-config", cm)
    errors = _fmt(
        check_settings_consistency(source_bundle)
        + check_kafka(source_bundle)
        + check_streamrec_containers(source_bundle)
    )
    assert "STREAMREC_KAFKA_INTERACTIONS_PARTITIONS=6 but KafkaTopic 'interactions' has 4" in errors
    assert "replicas 5 exceeds the 3 broker(s)" in errors
    assert "ConfigMap/streamrec-config: STREAMREC_BLOOM_CAPACITYY is not a field" in errors


def test_streamrec_container_mistakes_are_rejected(source_bundle: Bundle) -> None:
    assert not check_streamrec_containers(source_bundle)
    api = _obj(source_bundle, "Deployment", "api")
    _set_env(_container(api, "api"), "STREAMREC_API_HOST", None)  # uvicorn's default 127.0.0.1
    _replace(source_bundle, "Deployment", "api", api)
    worker = _obj(source_bundle, "Deployment", "worker")
    _set_env(_container(worker, "worker"), "STREAMREC_STREAMS_WEB_PORT", "9999")
    _set_env(_container(worker, "worker"), "STREAMREC_STREAMS_DATA_DIR", "faust")
    _replace(source_bundle, "Deployment", "worker", worker)
    trainer = _obj(source_bundle, "CronJob", "trainer-finetune")
    _container(trainer, "trainer")["args"] = ["train", "finetun", "--data", "$(STREAMREC_ARCHIVE_ROOT)"]
    pod = trainer["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    next(v for v in pod["volumes"] if v["name"] == "models")["persistentVolumeClaim"]["readOnly"] = True
    _replace(source_bundle, "CronJob", "trainer-finetune", trainer)
    feast = _obj(source_bundle, "Job", "feast-apply")
    data_mount = next(m for m in _container(feast, "feast-apply")["volumeMounts"] if m["name"] == "data")
    data_mount["readOnly"] = True
    _replace(source_bundle, "Job", "feast-apply", feast)
    cm = _obj(source_bundle, "ConfigMap", "streamrec-config")
    cm["data"]["STREAMREC_BLOOM_BACKEND"] = "bloomier"
    _replace(source_bundle, "ConfigMap", "streamrec-config", cm)

    errors = _fmt(check_streamrec_containers(source_bundle))
    assert "`streamrec api` binds ApiSettings.host=127.0.0.1: unreachable" in errors
    assert "listens on StreamsSettings.web_port=9999, not a containerPort ([6066])" in errors
    assert "writes StreamsSettings.data_dir=faust, a relative path (the image" in errors
    assert "`streamrec train finetun --data $(STREAMREC_ARCHIVE_ROOT)` does not parse" in errors
    assert "args references $(STREAMREC_ARCHIVE_ROOT), which the container's environment lacks" in errors
    assert (
        "writes TrainerSettings.checkpoint_dir=/models/checkpoints, on volume 'models', mounted read-only"
        in errors
    )
    assert "`streamrec features apply` writes " in errors and "registry=/data/feast/registry.db" in errors
    assert "BloomSettings: 1 validation error" in errors and "backend: Input should be" in errors

    secret = _obj(source_bundle, "Secret", "streamrec-secrets")
    secret["stringData"]["api-keys"] = "k1,k2"  # not the JSON list ApiSettings.api_keys reads
    _replace(source_bundle, "Secret", "streamrec-secrets", secret)
    errors = _fmt(check_streamrec_containers(source_bundle))
    assert "Deployment/api: container 'api': settings do not load" in errors
    assert 'error parsing value for field "api_keys" from source "EnvSettingsSource"' in errors


def test_triton_repository_mistakes_are_rejected(source_bundle: Bundle) -> None:
    assert not check_triton(source_bundle)
    runs = {
        r.container["name"]: r.invocations
        for r in streamrec_runs(source_bundle)
        if r.pod.doc.name == "triton" and r.invocations
    }
    assert runs == {
        "model-repository": [["serve", "prepare", "--no-load"]],
        "model-sync": [["serve", "prepare"]],
    }
    triton = _obj(source_bundle, "Deployment", "triton")
    server = _container(triton, "triton")
    server["args"] = [a.replace("explicit", "poll") for a in server["args"]]
    _set_env(_container(triton, "model-sync"), "TRITON_URL", "http://triton:8000")  # the Service: one replica
    init = _container(triton, "model-repository")
    init["command"] = [init["command"][0], "-c", "streamrec serve prepare"]  # loads before Triton is up
    _replace(source_bundle, "Deployment", "triton", triton)
    errors = _fmt(check_triton(source_bundle))
    assert "--model-control-mode=poll, but" in errors and "only accepts in explicit mode" in errors
    assert "loads models on http://triton:8000, not on its own pod's Triton" in errors
    assert "an init container cannot load models" in errors

    server["args"] = ["--model-repository=/models/model_repository", "--model-control-mode=explicit"]
    _replace(source_bundle, "Deployment", "triton", triton)
    errors = _fmt(check_triton(source_bundle))
    assert (
        "renders the model repository at /var/lib/triton/model_repository, Triton serves /models/model_r"
        in errors
    )

    model_sync = _container(triton, "model-sync")
    model_sync["command"], init["command"] = ["sleep", "infinity"], ["true"]
    _replace(source_bundle, "Deployment", "triton", triton)
    assert "nothing in the pod renders the model repository" in _fmt(check_triton(source_bundle))


def _pod_spec(obj: dict) -> dict:
    pod = pod_template(Doc(obj, "x"))
    assert pod is not None
    return pod.spec


def _security(obj: dict, **fields: object) -> None:
    _pod_spec(obj)["containers"][0]["securityContext"] = (
        _pod_spec(obj)["containers"][0].get("securityContext", {}) | fields
    )


#: (kind, name, mutation, message the generic checks must then report): one per check not covered above.
GENERIC_MUTATIONS = [
    ("Deployment", "worker", lambda o: _security(o, runAsNonRoot=False), "runAsNonRoot is not true"),
    ("Deployment", "worker", lambda o: _security(o, allowPrivilegeEscalation=True), "must be false"),
    ("Deployment", "worker", lambda o: _security(o, privileged=True), "runs as uid 0 or privileged"),
    ("Deployment", "worker", lambda o: _security(o, runAsUser=0), "runs as uid 0 or privileged"),
    ("Deployment", "worker", lambda o: _security(o, capabilities={"drop": ["NET_RAW"]}), "must drop ALL"),
    ("Deployment", "worker", lambda o: _security(o, seccompProfile={"type": "Unconfined"}), "seccompProfile"),
    ("Deployment", "api", lambda o: _pod_spec(o).pop("topologySpreadConstraints"), "no topologySpreadConstr"),
    (
        "CronJob",
        "trainer-finetune",
        lambda o: next(v for v in _pod_spec(o)["volumes"] if "persistentVolumeClaim" in v)[
            "persistentVolumeClaim"
        ].update(claimName="nope"),
        "uses PVC 'nope', which is not defined",
    ),
    ("Service", "api", lambda o: o["spec"]["ports"][0].update(targetPort="htp"), "targetPort 'htp' is not"),
    ("ServiceMonitor", "api", lambda o: o["spec"]["endpoints"][0].update(port="htp"), "no Service with"),
    (
        "PodMonitor",
        "worker",
        lambda o: o["spec"]["podMetricsEndpoints"][0].update(port="x"),
        "no pod template",
    ),
    (
        "TriggerAuthentication",
        "kafka-cluster-ca",
        lambda o: o["spec"]["secretTargetRef"][0].update(key="ca.pem"),
        "key 'ca.pem' is not defined",
    ),
    (
        "KafkaTopic",
        "interactions-dlq",
        lambda o: o["metadata"]["labels"].update({"strimzi.io/cluster": "x"}),
        "names no Kafka",
    ),
    (
        "KafkaTopic",
        "interactions-dlq",
        lambda o: o["spec"]["config"].update({"min.insync.replicas": 9}),
        "exceeds replicas",
    ),
    (
        "Kafka",
        "streamrec",
        lambda o: o["spec"]["kafka"]["config"].update({"default.replication.factor": 4}),
        "4 exceeds the 3",
    ),
    (
        "KafkaNodePool",
        "dual-role",
        lambda o: o["spec"].update(roles=["broker"]),
        "controller and broker roles",
    ),
    ("NodePool", "cpu", lambda o: o["spec"].pop("limits"), "no limits (an unbounded pool"),
]


@pytest.mark.parametrize(
    ("kind", "name", "mutate", "message"), GENERIC_MUTATIONS, ids=lambda v: v if isinstance(v, str) else ""
)
def test_generic_check_rejects_a_mutated_manifest(
    source_bundle: Bundle, kind: str, name: str, mutate: Callable[[dict], object], message: str
) -> None:
    assert not check_generic(source_bundle)
    obj = _obj(source_bundle, kind, name)
    mutate(obj)
    _replace(source_bundle, kind, name, obj)
    assert message in _fmt(check_generic(source_bundle))


def test_triton_scaler_queries_that_miss_the_served_ensemble_are_rejected(source_bundle: Bundle) -> None:
    assert not check_triton_metrics(source_bundle)
    so = _obj(source_bundle, "ScaledObject", "triton")
    for trigger in so["spec"]["triggers"]:
        query = trigger["metadata"]["query"]
        trigger["metadata"]["query"] = query.replace('model="recommend"', 'model="recommendations"').replace(
            'service="triton"', 'service="triton-gpu"'
        )
    _replace(source_bundle, "ScaledObject", "triton", so)
    errors = _fmt(check_triton_metrics(source_bundle))
    assert "query counts model 'recommendations'; the repository serves ['recommend']" in errors
    assert "query reads service 'triton-gpu', which selects no triton pod" in errors
