"""Schema and policy checks of the manifests, done by maintained libraries.

- Custom resources: ``jsonschema`` over each vendored CRD's ``openAPIV3Schema`` as it is (the vendored
  structural schemas use only JSON Schema keywords plus ``x-kubernetes-*`` ones), extended with what the API
  server adds: unknown fields are errors (strict field validation) unless the schema preserves them,
  ``x-kubernetes-list-type`` uniqueness, and the CRD's CEL rules (``x-kubernetes-validations``) evaluated by
  ``cel-python``. Transition rules (``oldSelf``) only apply to updates and are skipped.
- Core kinds: the strict Kubernetes JSON schemas of :data:`K8S_VERSION` that ``kubernetes-validate`` ships.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import celpy
import jsonschema
import yaml
from celpy import celtypes
from celpy.evaluation import CELEvalError, base_functions
from jsonschema import Draft202012Validator, FormatChecker, ValidationError
from referencing import Registry, Resource

from tests.k8s.manifests import REPO, YAML_LOADER, Bundle, Doc

#: Kubernetes version whose schemas core objects are checked against.
K8S_VERSION = "1.32.0"


def crds_dir() -> Path:
    """``$STREAMREC_CRDS_DIR`` or ``<repo>/../shared/crds``."""
    env = os.environ.get("STREAMREC_CRDS_DIR")
    return Path(env) if env else REPO.parent / "shared" / "crds"


# ------------------------------------------------------------------------------------------------------------
# CEL (cel-python) with the Kubernetes library functions the rules use


def _find(value: Any, pattern: Any) -> celtypes.StringType:
    match = re.search(str(pattern), str(value))
    return celtypes.StringType(match.group(0) if match else "")


def _split(value: Any, separator: Any) -> celtypes.ListType:
    return celtypes.ListType([celtypes.StringType(s) for s in str(value).split(str(separator))])


#: Functions of Kubernetes' CEL libraries that the vendored rules call and cel-python lacks: ``find`` (regex
#: library) and ``split`` (strings extension).
K8S_FUNCTIONS: dict[str, Callable[..., Any]] = {"find": _find, "split": _split}
CEL_MACROS = {"has", "all", "exists", "exists_one", "filter", "map"}
_CEL = celpy.Environment()


@cache
def cel_program(expression: str) -> Any:
    """A compiled CEL expression (celpy.CELParseError when it does not parse)."""
    return _CEL.program(_CEL.compile(expression), functions=K8S_FUNCTIONS)


def cel_functions(expression: str) -> set[str]:
    """Names of the functions and methods an expression calls."""
    tree = _CEL.compile(expression)
    names = set()
    for node in tree.iter_subtrees():
        if node.data in ("member_dot_arg", "ident_arg"):
            token = node.children[1] if node.data == "member_dot_arg" else node.children[0]
            names.add(str(token))
    return names


def cel_unknown_functions(expression: str) -> set[str]:
    return cel_functions(expression) - set(base_functions) - set(K8S_FUNCTIONS) - CEL_MACROS


def to_cel(variables: dict[str, Any]) -> dict[str, Any]:
    """JSON-like values as CEL values (convert once, evaluate many expressions)."""
    return {k: celpy.json_to_cel(v) for k, v in variables.items()}


def cel_holds(expression: str, activation: dict[str, Any]) -> bool:
    """True when the expression evaluates to true; false, an error or a non-boolean count as failing."""
    try:
        result = cel_program(expression).evaluate(activation)
    except CELEvalError:
        return False
    return isinstance(result, celtypes.BoolType) and bool(result)


def cel_message(rule: dict[str, Any], activation: dict[str, Any]) -> str:
    if "messageExpression" in rule:
        try:
            return str(cel_program(rule["messageExpression"]).evaluate(activation))
        except CELEvalError:
            pass
    return str(rule.get("message") or f"failed rule: {rule.get('rule') or rule.get('expression')}")


def is_transition_rule(expression: str) -> bool:
    return re.search(r"\boldSelf\b", expression) is not None


# ------------------------------------------------------------------------------------------------------------
# CRDs: jsonschema with the API server's additions

_Validate = Callable[[Any, Any, Any, dict[str, Any]], Iterator[ValidationError]]
_BASE: dict[str, _Validate] = Draft202012Validator.VALIDATORS


def _strict_properties(validator: Any, properties: Any, instance: Any, schema: dict[str, Any]) -> Iterator:
    yield from _BASE["properties"](validator, properties, instance, schema)
    if "additionalProperties" not in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
        yield from _BASE["additionalProperties"](validator, False, instance, schema)


def _list_type(validator: Any, list_type: str, instance: Any, schema: dict[str, Any]) -> Iterator:
    if not isinstance(instance, list) or list_type not in ("set", "map"):
        return
    keys = schema.get("x-kubernetes-list-map-keys") or []
    seen = set()
    for item in instance:
        key = repr(item) if list_type == "set" else repr([(item or {}).get(k) for k in keys])
        if key in seen:
            yield ValidationError(f"duplicate entry {item!r} in a list of type {list_type!r} {keys or ''}")
        seen.add(key)


def _cel_rules(
    validator: Any, rules: list[dict[str, Any]], instance: Any, schema: dict[str, Any]
) -> Iterator:
    activation = to_cel({"self": instance})
    for rule in rules:
        if is_transition_rule(rule["rule"]):
            continue
        try:
            holds = cel_holds(rule["rule"], activation)
        except celpy.CELParseError as exc:
            yield ValidationError(f"CEL rule does not compile ({exc}): {rule['rule']}")
            continue
        if not holds:
            yield ValidationError(f"{cel_message(rule, activation)} (CEL: {rule['rule']})")


def _ignore(*_: Any) -> Iterator[ValidationError]:
    return iter(())


_STRICT = {"properties": _strict_properties, "x-kubernetes-list-type": _list_type}
CrdValidator = jsonschema.validators.extend(
    Draft202012Validator, {**_STRICT, "x-kubernetes-validations": _cel_rules}
)
#: For kustomize patches, which hold only the fields they change: no required fields, no CEL rules.
PatchValidator = jsonschema.validators.extend(
    Draft202012Validator, {**_STRICT, "required": _ignore, "x-kubernetes-validations": _ignore}
)


class CrdRegistry:
    """Served versions of the vendored CRDs: (apiVersion, kind) -> openAPIV3Schema."""

    def __init__(self, directory: Path) -> None:
        self.schemas: dict[tuple[str, str], dict[str, Any]] = {}
        self.served: dict[tuple[str, str], list[str]] = {}  # (group, kind) -> served versions
        self.namespaced: dict[tuple[str, str], bool] = {}  # (group, kind) -> namespaced (else cluster-scoped)
        for path in sorted(directory.rglob("*.yaml")):
            for crd in yaml.load_all(path.read_text(encoding="utf-8"), Loader=YAML_LOADER):
                if not crd or crd.get("kind") != "CustomResourceDefinition":
                    continue
                group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
                self.namespaced[(group, kind)] = crd["spec"]["scope"] == "Namespaced"
                for version in crd["spec"]["versions"]:
                    if version.get("served"):
                        self.schemas[(f"{group}/{version['name']}", kind)] = version["schema"][
                            "openAPIV3Schema"
                        ]
                        self.served.setdefault((group, kind), []).append(version["name"])

    @cache  # noqa: B019 - one registry per session
    def validator(self, api_version: str, kind: str, partial: bool) -> Any:
        cls = PatchValidator if partial else CrdValidator
        return cls(self.schemas[(api_version, kind)], format_checker=FormatChecker())

    def validate(self, doc: Doc, *, partial: bool = False) -> list[str]:
        """Schema errors of one custom resource; an unknown kind or unserved version is an error too."""
        if (doc.api_version, doc.kind) not in self.schemas:
            served = self.served.get((doc.group, doc.kind))
            if served:
                return [
                    f"{doc.where}: {doc.api_version} is not served by the CRD (served: {', '.join(served)})"
                ]
            return [f"{doc.where}: no vendored CRD defines {doc.api_version} {doc.kind}"]
        errors = self.validator(doc.api_version, doc.kind, partial).iter_errors(doc.obj)
        return [
            f"{doc.where}: {'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
            for e in sorted(errors, key=lambda e: list(map(str, e.absolute_path)))
        ]

    def rules(self) -> set[str]:
        """Every CEL rule of the vendored CRDs."""
        found: set[str] = set()

        def walk(node: Any) -> None:
            if isinstance(node, dict):
                found.update(r["rule"] for r in node.get("x-kubernetes-validations") or [])
                node = list(node.values())
            if isinstance(node, list):
                for value in node:
                    walk(value)

        walk(list(self.schemas.values()))
        return found


def is_core(doc: Doc) -> bool:
    """Core Kubernetes kinds (no dot in the API group: apps/v1, batch/v1, v1, ... and *.k8s.io)."""
    return "." not in doc.group or doc.group.endswith(".k8s.io")


@cache
def _core_definitions(version: str) -> Registry:
    from kubernetes_validate.utils import schema_contents

    path = f"kubernetes-json-schema/v{version}-local-strict/_definitions.json"
    return Resource.from_contents(schema_contents(path, version)) @ Registry()


@cache
def core_validator(api_version: str, kind: str, version: str = K8S_VERSION) -> Any:
    """kubernetes-validate's strict JSON schema of a core kind, compiled once (its ``validate()`` reads the
    1.3 MB of shared definitions again for every object). None when the version has no such kind."""
    from kubernetes_validate.utils import schema_contents

    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)  # apps/v1 -> apps-v1, v1 -> v1
    try:
        schema = schema_contents(
            f"kubernetes-json-schema/v{version}-local-strict/{kind.lower()}-{group_version}.json", version
        )
    except FileNotFoundError:
        return None
    return Draft202012Validator(schema, registry=Resource.from_contents(schema) @ _core_definitions(version))


def check_core_schemas(bundle: Bundle, version: str = K8S_VERSION) -> list[str]:
    """Core objects against the strict Kubernetes JSON schemas that ``kubernetes-validate`` ships (strict:
    unknown fields are errors, as for custom resources). ImportError without the package (callers skip)."""
    errors = []
    for d in bundle.docs:
        if not is_core(d):
            continue
        validator = core_validator(d.api_version, d.kind, version)
        if validator is None:
            errors.append(f"{d.where}: no Kubernetes {version} schema for {d.api_version} {d.kind}")
            continue
        for e in validator.iter_errors(d.obj):
            path = "/".join(str(p) for p in e.absolute_path) or "<root>"
            errors.append(f"{d.where}: {path}: {e.message} (Kubernetes {version} schema)")
    return errors


def check_custom_resources(bundle: Bundle, registry: CrdRegistry, *, partial: bool = False) -> list[str]:
    """Schema errors of the custom resources whose kind has a vendored CRD (see :func:`unvendored`)."""
    return [
        e
        for d in bundle.docs
        if not is_core(d) and (d.group, d.kind) in registry.served
        for e in registry.validate(d, partial=partial)
    ]


def unvendored(bundle: Bundle, registry: CrdRegistry) -> dict[str, list[str]]:
    """``apiVersion kind`` -> where, for the custom resources whose CRD is not vendored (schema unchecked)."""
    out: dict[str, list[str]] = {}
    for d in bundle.docs:
        if not is_core(d) and (d.group, d.kind) not in registry.served:
            out.setdefault(f"{d.api_version} {d.kind}", []).append(d.source)
    return out


#: Core kinds that are cluster-scoped (every other core kind the manifests may use is namespaced).
CLUSTER_SCOPED_CORE = {"Namespace", "PersistentVolume", "StorageClass", "ClusterRole", "ClusterRoleBinding"}
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")  # Services and Namespaces (DNS-1035)


def check_identity(bundle: Bundle, registry: CrdRegistry | None, namespace: str) -> list[str]:
    """What the API server checks beyond the schemas, for a rendered overlay: names are DNS names, namespaced
    objects are in ``namespace`` and cluster-scoped ones in none (scopes of custom kinds from their CRDs)."""
    errors = []
    for d in bundle.docs:
        label = d.kind in ("Service", "Namespace")
        if not (_DNS_LABEL if label else _DNS_SUBDOMAIN).match(d.name) or len(d.name) > 253:
            errors.append(f"{d.where}: metadata.name {d.name!r} is not a DNS-{1035 if label else 1123} name")
        if is_core(d):
            scoped: bool | None = d.kind not in CLUSTER_SCOPED_CORE
        else:
            scoped = registry.namespaced.get((d.group, d.kind)) if registry else None
        ns = (d.obj.get("metadata") or {}).get("namespace")
        if scoped and ns != namespace:
            errors.append(f"{d.where}: namespaced, but rendered into namespace {ns!r}, not {namespace!r}")
        if scoped is False and ns is not None:
            errors.append(f"{d.where}: cluster-scoped, but sets metadata.namespace {ns!r}")
    return errors
