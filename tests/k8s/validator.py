"""Offline validation of the Kubernetes manifests under ``k8s/`` and ``keda/`` (no cluster needed).

Three layers:

1. **Schemas.** Every custom resource is validated against the vendored CRD (``shared/crds``, override with
   ``STREAMREC_CRDS_DIR``): each served version's ``openAPIV3Schema`` is converted to JSON Schema
   (int-or-string, preserve-unknown-fields, nullable, embedded resources, list types, int32/int64 formats) and
   unknown fields are errors, as with ``kubectl apply``'s default strict field validation. The CRDs' CEL rules
   (``x-kubernetes-validations``) are evaluated by :mod:`tests.k8s.cel`; transition rules (``oldSelf``) are
   not, as they only apply to updates.
2. **Structure.** Core objects (for which no schema is vendored) are checked for what matters here: identity
   and names, container resources/probes/security context, selectors that select something, references
   (ConfigMaps, Secrets and keys, PVCs, volumes, ports) that resolve, KEDA targets, Kafka-lag scaler bounds,
   topic and settings consistency, the GPU scheduling chain (GPU pod -> tolerated taint -> Karpenter NodePool
   with GPU limits). With the ``kubernetes-validate`` package installed, core objects are also validated
   against the strict Kubernetes JSON schemas of :data:`K8S_VERSION`.
3. **The application.** Every ``STREAMREC_*`` variable is a field of a settings class (core or registered by
   an app plugin); each streamrec container's arguments parse with the real ``streamrec`` CLI and its settings
   load from its resolved environment; servers bind the pod's address on the port they expose; whatever a
   command writes lies on a writable volume (root filesystems are read-only); Triton serves the repository
   ``streamrec serve prepare`` renders, in the model-control mode that prepare needs.
4. **Kustomize.** Kustomizations may only reference files that exist; every YAML file is used by one; overlays
   are rendered (``kustomize build`` or ``kubectl kustomize``, when installed) and the output checked again.
"""

from __future__ import annotations

import base64
import contextlib
import difflib
import io
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from jsonschema import Draft202012Validator, FormatChecker, ValidationError

from tests.k8s import cel

REPO = Path(__file__).resolve().parents[2]
MANIFEST_ROOTS = (REPO / "k8s", REPO / "keda")
NAMESPACE = "streamrec"
KUSTOMIZATION_NAMES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
APP_ENV_PREFIXES = (
    "STREAMREC_STREAMS_",
    "STREAMREC_API_",
    "STREAMREC_SERVING_",
    "STREAMREC_TRAINER_",
    "STREAMREC_CONSUMERS_",
)
GPU = "nvidia.com/gpu"

_VAR_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def crds_dir() -> Path:
    """``$STREAMREC_CRDS_DIR`` or ``<repo>/../shared/crds``."""
    env = os.environ.get("STREAMREC_CRDS_DIR")
    return Path(env) if env else REPO.parent / "shared" / "crds"


# ------------------------------------------------------------------------------------------------------------
# Documents


@dataclass
class Doc:
    """One YAML document and where it came from."""

    obj: dict[str, Any]
    source: str

    @property
    def kind(self) -> str:
        return str(self.obj.get("kind", ""))

    @property
    def api_version(self) -> str:
        return str(self.obj.get("apiVersion", ""))

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def name(self) -> str:
        return str((self.obj.get("metadata") or {}).get("name", ""))

    @property
    def where(self) -> str:
        return f"{self.source}: {self.kind}/{self.name}"


def load_docs(path: Path, text: str | None = None) -> list[Doc]:
    """Non-empty YAML documents of a file (or of ``text``), each tagged with its file and position."""
    rel = path.relative_to(REPO) if path.is_absolute() and path.is_relative_to(REPO) else path
    raw = text if text is not None else path.read_text(encoding="utf-8")
    docs = []
    for i, obj in enumerate(yaml.load_all(raw, Loader=_Loader)):
        if obj is None:
            continue
        if not isinstance(obj, dict):
            raise ValueError(f"{rel}#{i}: a manifest must be a mapping, got {type(obj).__name__}")
        docs.append(Doc(obj, f"{rel}#{i}"))
    return docs


def yaml_files() -> list[Path]:
    return sorted(p for root in MANIFEST_ROOTS for p in root.rglob("*") if p.suffix in (".yaml", ".yml"))


# ------------------------------------------------------------------------------------------------------------
# CRD schemas -> JSON Schema

_INT_RANGES = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}
_FORMATS = FormatChecker()


for _fmt, (_lo, _hi) in _INT_RANGES.items():

    def _check(value: object, lo: int = _lo, hi: int = _hi) -> bool:
        return not isinstance(value, int) or isinstance(value, bool) or lo <= value <= hi

    _FORMATS.checks(_fmt)(_check)

_OBJECT_META = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string"},
        "namespace": {"type": "string"},
        "generateName": {"type": "string"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
        "finalizers": {"type": "array", "items": {"type": "string"}},
        "ownerReferences": {"type": "array", "items": {"type": "object"}},
    },
}


def openapi_to_jsonschema(node: Any, *, partial: bool = False) -> Any:
    """Convert a structural OpenAPI v3 schema (as in a CRD) to JSON Schema (draft 2020-12).

    ``partial`` drops ``required`` and CEL rules: used for kustomize patches, which hold only the fields they
    change.
    """
    if isinstance(node, list):
        return [openapi_to_jsonschema(n, partial=partial) for n in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("description", "default", "example", "externalDocs"):
            continue
        if key == "x-kubernetes-validations":
            if not partial:
                out[key] = value
        elif key == "x-kubernetes-list-type":
            if value == "set":
                out["uniqueItems"] = True
        elif key == "x-kubernetes-list-map-keys":
            out["x-k8s-list-map-keys"] = value
        elif key.startswith("x-") or key == "nullable":
            continue  # handled below or without effect on validation (map-type, embedded, preserve...)
        elif key == "required":
            if not partial:
                out[key] = value
        elif key in ("properties", "patternProperties", "definitions"):
            out[key] = {k: openapi_to_jsonschema(v, partial=partial) for k, v in value.items()}
        elif key in ("items", "additionalProperties", "not", "allOf", "anyOf", "oneOf"):
            out[key] = openapi_to_jsonschema(value, partial=partial)
        else:
            out[key] = value
    # OpenAPI 3.0 boolean exclusive bounds -> numeric ones.
    for bound, excl in (("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")):
        if out.get(excl) is True and bound in out:
            out[excl] = out.pop(bound)
        elif out.get(excl) is False:
            out.pop(excl)
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    preserve = node.get("x-kubernetes-preserve-unknown-fields") is True
    if node.get("x-kubernetes-embedded-resource"):
        props = out.setdefault("properties", {})
        props.setdefault("apiVersion", {"type": "string"})
        props.setdefault("kind", {"type": "string"})
        props.setdefault("metadata", {"type": "object"})
    if out.get("type") == "object" and "additionalProperties" not in out and not preserve:
        # Strict field validation: a field the schema does not declare is an error ("unknown field").
        out["additionalProperties"] = False
    if node.get("nullable"):
        if "type" in out:
            out["type"] = [out["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
        if "anyOf" in out:
            out["anyOf"] = [*out["anyOf"], {"type": "null"}]
    return out


def _cel_keyword(
    validator: Any, rules: list[dict[str, Any]], instance: Any, schema: dict[str, Any]
) -> Iterator:
    for rule in rules:
        expr = rule["rule"]
        if cel.is_transition_rule(expr):
            continue
        try:
            cel.compile_rule(expr)
        except cel.CelUnsupported as exc:
            yield ValidationError(f"CEL rule not evaluable offline ({exc}): {expr}")
            continue
        if not cel.evaluate(expr, instance):
            yield ValidationError(f"{rule.get('message') or 'failed rule'} (CEL: {expr})")


def _list_map_keys(validator: Any, keys: list[str], instance: Any, schema: dict[str, Any]) -> Iterator:
    if not isinstance(instance, list):
        return
    seen: set[tuple] = set()
    for item in instance:
        if isinstance(item, dict):
            key = tuple(repr(item.get(k)) for k in keys)
            if key in seen:
                yield ValidationError(
                    f"duplicate entry for list-map keys {keys}: {dict(zip(keys, key, strict=True))}"
                )
            seen.add(key)


_K8sValidator = jsonschema.validators.extend(
    Draft202012Validator,
    {"x-kubernetes-validations": _cel_keyword, "x-k8s-list-map-keys": _list_map_keys},
)


@dataclass
class CrdVersion:
    group: str
    version: str
    kind: str
    namespaced: bool
    schema: dict[str, Any]
    source: str
    _validators: dict[bool, Any] = field(default_factory=dict)

    def validator(self, partial: bool) -> Any:
        if partial not in self._validators:
            converted = openapi_to_jsonschema(self.schema, partial=partial)
            converted.setdefault("properties", {})["metadata"] = _OBJECT_META
            self._validators[partial] = _K8sValidator(converted, format_checker=_FORMATS)
        return self._validators[partial]


class CrdRegistry:
    """Served versions of the vendored CRDs, by (apiVersion, kind)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.versions: dict[tuple[str, str], CrdVersion] = {}
        self.kinds: dict[tuple[str, str], list[str]] = {}  # (group, kind) -> served versions
        for path in sorted(directory.rglob("*.yaml")):
            for doc in yaml.load_all(path.read_text(encoding="utf-8"), Loader=_Loader):
                if not doc or doc.get("kind") != "CustomResourceDefinition":
                    continue
                spec = doc["spec"]
                kind = spec["names"]["kind"]
                for ver in spec["versions"]:
                    if not ver.get("served", False):
                        continue
                    key = (f"{spec['group']}/{ver['name']}", kind)
                    self.versions[key] = CrdVersion(
                        spec["group"],
                        ver["name"],
                        kind,
                        spec["scope"] == "Namespaced",
                        ver["schema"]["openAPIV3Schema"],
                        str(path.relative_to(directory)),
                    )
                    self.kinds.setdefault((spec["group"], kind), []).append(ver["name"])

    def lookup(self, api_version: str, kind: str) -> CrdVersion | None:
        return self.versions.get((api_version, kind))

    def validate(self, doc: Doc, *, partial: bool = False) -> list[str]:
        """Schema errors of one custom resource; an unknown group/kind or unserved version is an error too."""
        crd = self.lookup(doc.api_version, doc.kind)
        if crd is None:
            served = self.kinds.get((doc.group, doc.kind))
            if served:
                return [
                    f"{doc.where}: {doc.api_version} is not served by the CRD (served: {', '.join(served)})"
                ]
            return [f"{doc.where}: no vendored CRD defines {doc.api_version} {doc.kind}"]
        errors = []
        for err in sorted(crd.validator(partial).iter_errors(doc.obj), key=lambda e: list(map(str, e.path))):
            path = "/".join(str(p) for p in err.absolute_path) or "<root>"
            errors.append(f"{doc.where}: {path}: {err.message}")
        return errors


# ------------------------------------------------------------------------------------------------------------
# Core kinds (no schema vendored): known kinds and scopes

CORE_KINDS: dict[tuple[str, str], bool] = {
    ("v1", "Namespace"): False,
    ("v1", "ConfigMap"): True,
    ("v1", "Secret"): True,
    ("v1", "Service"): True,
    ("v1", "ServiceAccount"): True,
    ("v1", "PersistentVolumeClaim"): True,
    ("apps/v1", "Deployment"): True,
    ("apps/v1", "StatefulSet"): True,
    ("apps/v1", "DaemonSet"): True,
    ("batch/v1", "Job"): True,
    ("batch/v1", "CronJob"): True,
    ("policy/v1", "PodDisruptionBudget"): True,
    ("networking.k8s.io/v1", "NetworkPolicy"): True,
    ("rbac.authorization.k8s.io/v1", "Role"): True,
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): True,
}

_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_NAME_KINDS = {"Namespace", "Service"}


def is_namespaced(doc: Doc, registry: CrdRegistry | None) -> bool | None:
    core = CORE_KINDS.get((doc.api_version, doc.kind))
    if core is not None:
        return core
    crd = registry.lookup(doc.api_version, doc.kind) if registry else None
    return crd.namespaced if crd else None


# ------------------------------------------------------------------------------------------------------------
# Quantities and settings

_SUFFIX = {
    "m": Decimal("0.001"),
    "": Decimal(1),
    "k": Decimal(10) ** 3,
    "M": Decimal(10) ** 6,
    "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12,
    "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40,
}
_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(m|k|M|G|T|Ki|Mi|Gi|Ti)?$")


def parse_quantity(value: Any) -> Decimal:
    """Kubernetes resource quantity ("500m", "2", "4Gi") as a number; ValueError when malformed."""
    if isinstance(value, bool):
        raise ValueError(f"not a quantity: {value!r}")
    if isinstance(value, int | float):
        return Decimal(str(value))
    m = _QUANTITY.match(str(value))
    if not m:
        raise ValueError(f"not a quantity: {value!r}")
    try:
        return Decimal(m.group(1)) * _SUFFIX[m.group(2) or ""]
    except InvalidOperation as exc:
        raise ValueError(f"not a quantity: {value!r}") from exc


@dataclass(frozen=True)
class Cli:
    """streamrec's command line as the images run it: core commands plus every plugin that imports."""

    settings: tuple[type, ...]  # ComponentSettings subclasses: core + those plugins register
    commands: frozenset[str]
    failed_plugins: frozenset[str]  # entry-point names of plugins that did not import (app not written yet)
    parser: Any


@cache
def streamrec_cli() -> Cli:
    from streamrec.cli.main import build_parser, core_registry
    from streamrec.cli.plugins import load_plugins

    registry = core_registry()
    failed = load_plugins(registry)
    return Cli(
        tuple(registry.settings),
        frozenset(registry.commands),
        frozenset(f.split(" ", 1)[0] for f in failed),
        build_parser(registry),
    )


def setting_env_names(classes: Iterable[type]) -> dict[str, str]:
    """``STREAMREC_*`` variable -> settings class name: env_prefix + field name, upper-cased."""
    names = {}
    for cls in classes:
        prefix = cls.model_config.get("env_prefix", "")  # type: ignore[attr-defined]
        for name in cls.model_fields:  # type: ignore[attr-defined]
            names[f"{prefix}{name}".upper()] = cls.__name__
    return names


def env_var_problem(name: str, classes: Iterable[type] | None = None) -> str | None:
    """Why a ``STREAMREC_*`` variable is not a setting (None when it is, or is no STREAMREC_ variable).

    Checked against the core settings classes and those the app plugins register (what ``streamrec config``
    lists).
    An app prefix (:data:`APP_ENV_PREFIXES`) whose settings class is not registered yet is accepted by prefix.
    """
    classes = tuple(streamrec_cli().settings if classes is None else classes)
    known = setting_env_names(classes)
    if not name.startswith("STREAMREC_") or name in known:
        return None
    prefixes = {cls.model_config.get("env_prefix", "") for cls in classes}  # type: ignore[attr-defined]
    app_prefix = next((p for p in APP_ENV_PREFIXES if name.startswith(p)), None)
    if app_prefix is not None and app_prefix not in prefixes:
        return None  # that app has no settings class yet: accepted by prefix
    close = difflib.get_close_matches(name, sorted(known), n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return f"{name} is not a field of any streamrec settings class{hint}"


#: Commands whose plugin is not written yet: accepted while that plugin (entry-point name) fails to import.
PENDING_COMMANDS = {"archive": "consumers"}
#: Images whose entrypoint is the ``streamrec`` CLI (the image contract in docs/deploy.md).
STREAMREC_IMAGES = ("ghcr.io/streamrec/streamrec:", "ghcr.io/streamrec/streamrec-triton:")
_SHELL_SEPARATORS = {";", "&&", "||", "|", "&", "(", ")"}


def _is_streamrec_image(c: dict[str, Any]) -> bool:
    return str(c.get("image", "")).startswith(STREAMREC_IMAGES)


def _expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion (unknown references stay as they are)."""
    return _VAR_REF.sub(lambda m: env.get(m.group(1), m.group(0)), value)


def streamrec_invocations(c: dict[str, Any], env: dict[str, str] | None = None) -> list[list[str]]:
    """Argument lists the container passes to the ``streamrec`` CLI.

    A streamrec image without ``command`` runs its entrypoint ``streamrec`` with ``args``;
    ``command: [streamrec]`` likewise; ``sh -c SCRIPT`` is scanned for ``streamrec ...`` commands.
    ``$(VAR)`` is expanded from ``env``.
    """
    env = env or {}
    command = [_expand(str(x), env) for x in c.get("command") or []]
    args = [_expand(str(x), env) for x in c.get("args") or []]
    if not command:
        return [args] if _is_streamrec_image(c) else []
    if Path(command[0]).name == "streamrec":
        return [command[1:] + args]
    if Path(command[0]).name in ("sh", "bash") and "-c" in command[1:]:
        script = (command + args)[command.index("-c") + 1]
        out = []
        for line in script.splitlines():
            lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            try:
                tokens = list(lexer)
            except ValueError:
                continue
            for i, tok in enumerate(tokens):
                if tok == "streamrec" and (
                    i == 0 or tokens[i - 1] in _SHELL_SEPARATORS | {"exec", "then", "do"}
                ):
                    argv = []
                    for t in tokens[i + 1 :]:
                        if t in _SHELL_SEPARATORS:
                            break
                        argv.append(t)
                    out.append(argv)
        return out
    return []


def cli_problem(argv: list[str]) -> str | None:
    """Why ``streamrec ARGV`` would not parse (None when it parses, or names a pending command)."""
    cli = streamrec_cli()
    pending = argv[0] if argv and argv[0] not in cli.commands else None
    if pending in PENDING_COMMANDS and PENDING_COMMANDS[pending] in cli.failed_plugins:
        return None
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            cli.parser.parse_args(argv)
    except SystemExit as exc:
        if exc.code not in (0, None):
            message = stderr.getvalue().strip().splitlines()
            return f"`streamrec {' '.join(argv)}` does not parse: {message[-1] if message else exc.code}"
    return None


@contextlib.contextmanager
def _environment(env: dict[str, str]) -> Iterator[None]:
    """os.environ with streamrec's variables replaced by ``env`` (restored afterwards)."""
    saved = dict(os.environ)
    try:
        for key in list(os.environ):
            if key.startswith("STREAMREC_") or key in WELL_KNOWN_ENV:
                del os.environ[key]
        os.environ.update(env)
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


WELL_KNOWN_ENV = ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL", "TRITON_URL")


def load_settings(
    env: dict[str, str], classes: Iterable[type] | None = None
) -> tuple[dict[str, Any], list[str]]:
    """Every settings class built from ``env`` as the container's process would.

    Returns the instances by class name and the errors of those that do not load."""
    classes = tuple(streamrec_cli().settings if classes is None else classes)
    loaded, errors = {}, []
    relevant = {k: v for k, v in env.items() if k.startswith("STREAMREC_") or k in WELL_KNOWN_ENV}
    with _environment(relevant):
        for cls in classes:
            try:
                loaded[cls.__name__] = cls()
            except Exception as exc:  # pydantic ValidationError, pydantic-settings SettingsError
                errors.append(f"{cls.__name__}: {str(exc).splitlines()[0]}" + _first_error(exc))
    return loaded, errors


def _first_error(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return ""
    first = errors()[0]
    return f" -> {'.'.join(str(p) for p in first.get('loc', ()))}: {first.get('msg')}"


# ------------------------------------------------------------------------------------------------------------
# Bundle: a set of documents checked together


@dataclass
class PodTemplate:
    doc: Doc
    spec: dict[str, Any]
    labels: dict[str, str]
    long_running: bool

    def containers(self, *, init: bool = True) -> list[dict[str, Any]]:
        out = list(self.spec.get("containers") or [])
        if init:
            out += list(self.spec.get("initContainers") or [])
        return out

    def port_names(self) -> set[str]:
        return {p["name"] for c in self.containers() for p in c.get("ports") or [] if "name" in p}

    def port_numbers(self) -> set[int]:
        return {
            p["containerPort"]
            for c in self.containers()
            for p in c.get("ports") or []
            if "containerPort" in p
        }


def pod_template(doc: Doc) -> PodTemplate | None:
    spec = doc.obj.get("spec") or {}
    if doc.kind in ("Deployment", "StatefulSet", "DaemonSet"):
        tpl = spec.get("template") or {}
        long_running = True
    elif doc.kind == "Job":
        tpl = spec.get("template") or {}
        long_running = False
    elif doc.kind == "CronJob":
        tpl = ((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}
        long_running = False
    else:
        return None
    return PodTemplate(
        doc, tpl.get("spec") or {}, (tpl.get("metadata") or {}).get("labels") or {}, long_running
    )


def selects(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """matchLabels / matchExpressions (or a plain Service selector map) against labels; empty: nothing."""
    if not selector:
        return False
    if "matchLabels" in selector or "matchExpressions" in selector:
        match = selector.get("matchLabels") or {}
        exprs = selector.get("matchExpressions") or []
    else:
        match, exprs = selector, []
    if not match and not exprs:
        return False
    if any(labels.get(k) != v for k, v in match.items()):
        return False
    for e in exprs:
        op, key, values = e.get("operator"), e.get("key"), e.get("values") or []
        if (
            (op == "In" and labels.get(key) not in values)
            or (op == "NotIn" and labels.get(key) in values)
            or (op == "Exists" and key not in labels)
            or (op == "DoesNotExist" and key in labels)
        ):
            return False
    return True


class Bundle:
    """Documents that are applied together (a rendered overlay, or all source resources)."""

    def __init__(self, docs: Iterable[Doc], registry: CrdRegistry | None = None) -> None:
        self.docs = list(docs)
        self.registry = registry

    def of(self, kind: str) -> list[Doc]:
        return [d for d in self.docs if d.kind == kind]

    def get(self, kind: str, name: str) -> Doc | None:
        return next((d for d in self.docs if d.kind == kind and d.name == name), None)

    def pods(self) -> list[PodTemplate]:
        return [p for d in self.docs if (p := pod_template(d)) is not None]

    def secret_keys(self, name: str | None) -> set[str] | None:
        doc = self.get("Secret", name or "")
        if doc is not None:
            return set(doc.obj.get("data") or {}) | set(doc.obj.get("stringData") or {})
        # Secrets the Strimzi operator creates for each Kafka cluster.
        for kafka in self.of("Kafka"):
            if name == f"{kafka.name}-cluster-ca-cert":
                return {"ca.crt", "ca.p12", "ca.password"}
        return None

    def configmap_keys(self, name: str | None) -> set[str] | None:
        doc = self.get("ConfigMap", name or "")
        return None if doc is None else set(doc.obj.get("data") or {})

    def configmap_data(self, name: str | None) -> dict[str, str]:
        doc = self.get("ConfigMap", name or "")
        return {k: str(v) for k, v in ((doc.obj.get("data") or {}) if doc else {}).items()}

    def secret_data(self, name: str | None) -> dict[str, str]:
        """Values of a Secret in the bundle (data base64-decoded, then stringData); empty if not defined."""
        doc = self.get("Secret", name or "")
        if doc is None:
            return {}
        out = {
            k: base64.b64decode(str(v)).decode("utf-8", "replace")
            for k, v in (doc.obj.get("data") or {}).items()
        }
        out.update({k: str(v) for k, v in (doc.obj.get("stringData") or {}).items()})
        return out

    def topics(self) -> dict[str, Doc]:
        """Kafka topic name (spec.topicName, else metadata.name) -> KafkaTopic."""
        return {(d.obj.get("spec") or {}).get("topicName") or d.name: d for d in self.of("KafkaTopic")}

    def brokers(self, cluster: str) -> int:
        return sum(
            int((p.obj.get("spec") or {}).get("replicas", 0))
            for p in self.of("KafkaNodePool")
            if (p.obj["metadata"].get("labels") or {}).get("strimzi.io/cluster") == cluster
            and "broker" in ((p.obj.get("spec") or {}).get("roles") or [])
        )


# ------------------------------------------------------------------------------------------------------------
# Checks. Each returns a list of human-readable problems; empty means fine.


def check_identity(bundle: Bundle, *, rendered: bool, namespace: str = NAMESPACE) -> list[str]:
    errors = []
    seen: dict[tuple[str, str, str, str], str] = {}
    for d in bundle.docs:
        if not d.api_version or not d.kind:
            errors.append(f"{d.source}: apiVersion and kind are required")
            continue
        meta = d.obj.get("metadata")
        if not isinstance(meta, dict) or not isinstance(meta.get("name"), str) or not meta["name"]:
            errors.append(f"{d.where}: metadata.name is required")
            continue
        pattern, limit = (_DNS_LABEL, 63) if d.kind in _LABEL_NAME_KINDS else (_DNS_SUBDOMAIN, 253)
        if not pattern.match(d.name) or len(d.name) > limit:
            errors.append(f"{d.where}: metadata.name {d.name!r} is not a valid DNS-1123 name")
        namespaced = is_namespaced(d, bundle.registry)
        if namespaced is None and bundle.registry is None:
            pass  # a custom resource, and no CRDs to tell its scope
        elif namespaced is None:
            errors.append(f"{d.where}: unknown kind {d.api_version} {d.kind} (no core kind, no vendored CRD)")
        elif rendered:
            ns = meta.get("namespace")
            if namespaced and ns != namespace:
                errors.append(
                    f"{d.where}: namespaced object rendered into namespace {ns!r}, expected {namespace!r}"
                )
            if not namespaced and ns is not None:
                errors.append(f"{d.where}: cluster-scoped object must not set metadata.namespace ({ns!r})")
        key = (d.group, d.kind, str(meta.get("namespace", "")), d.name)
        if key in seen:
            errors.append(f"{d.where}: duplicate of {seen[key]}")
        seen[key] = d.source
    return errors


def check_custom_resources(bundle: Bundle, *, partial: bool = False) -> list[str]:
    if bundle.registry is None:
        return []
    errors = []
    for d in bundle.docs:
        if (d.api_version, d.kind) in CORE_KINDS:
            continue
        errors += bundle.registry.validate(d, partial=partial)
    return errors


def _check_resources(where: str, container: dict[str, Any]) -> list[str]:
    errors = []
    res = container.get("resources") or {}
    requests, limits = res.get("requests") or {}, res.get("limits") or {}
    for part, values in (("requests", requests), ("limits", limits)):
        for r in ("cpu", "memory"):
            if r not in values:
                errors.append(f"{where}: resources.{part}.{r} is missing")
        for r, v in values.items():
            try:
                parse_quantity(v)
            except ValueError as exc:
                errors.append(f"{where}: resources.{part}.{r}: {exc}")
    for r in set(requests) & set(limits):
        try:
            if parse_quantity(requests[r]) > parse_quantity(limits[r]):
                errors.append(f"{where}: resources.requests.{r} exceeds its limit")
            if "/" in r and parse_quantity(requests[r]) != parse_quantity(limits[r]):
                errors.append(f"{where}: extended resource {r}: requests must equal limits")
        except ValueError:
            pass
    return errors


def _check_probe(
    where: str, name: str, probe: dict[str, Any], pod: PodTemplate, c: dict[str, Any]
) -> list[str]:
    errors = []
    handlers = [k for k in ("httpGet", "tcpSocket", "exec", "grpc") if k in probe]
    if len(handlers) != 1:
        return [f"{where}: {name} needs exactly one handler (httpGet, tcpSocket, exec or grpc)"]
    handler = probe[handlers[0]]
    port = handler.get("port") if isinstance(handler, dict) else None
    own_names = {p["name"] for p in c.get("ports") or [] if "name" in p}
    own_numbers = {p["containerPort"] for p in c.get("ports") or [] if "containerPort" in p}
    if handlers[0] in ("httpGet", "tcpSocket", "grpc"):
        if isinstance(port, str) and port not in own_names:
            errors.append(f"{where}: {name} port {port!r} is not a named port of the container")
        if isinstance(port, int) and port not in own_numbers:
            errors.append(f"{where}: {name} port {port} is not a containerPort of the container")
    if handlers[0] == "httpGet" and not str(handler.get("path", "/")).startswith("/"):
        errors.append(f"{where}: {name} path must start with /")
    if handlers[0] == "exec" and not (handler.get("command") or []):
        errors.append(f"{where}: {name} exec needs a command")
    return errors


def check_pods(bundle: Bundle) -> list[str]:
    errors = []
    pvcs = {d.name for d in bundle.of("PersistentVolumeClaim")}
    for pod in bundle.pods():
        d, spec = pod.doc, pod.spec
        if not pod.labels:
            errors.append(f"{d.where}: pod template has no labels")
        if d.kind in ("Deployment", "StatefulSet", "DaemonSet"):
            sel = (d.obj.get("spec") or {}).get("selector")
            if not selects(sel, pod.labels):
                errors.append(f"{d.where}: spec.selector does not match the pod template labels")
        if d.kind == "StatefulSet":
            svc = (d.obj.get("spec") or {}).get("serviceName")
            if svc and bundle.get("Service", svc) is None:
                errors.append(f"{d.where}: serviceName {svc!r} names no Service")
        if d.kind == "Deployment" and not spec.get("topologySpreadConstraints"):
            errors.append(f"{d.where}: no topologySpreadConstraints")
        for tsc in spec.get("topologySpreadConstraints") or []:
            if not selects(tsc.get("labelSelector"), pod.labels):
                errors.append(
                    f"{d.where}: topology spread constraint does not select the workload's own pods"
                )
        psc = spec.get("securityContext") or {}
        volumes = {v["name"]: v for v in spec.get("volumes") or []}
        claim_templates = {
            (t.get("metadata") or {}).get("name")
            for t in (d.obj.get("spec") or {}).get("volumeClaimTemplates") or []
        }
        for v in volumes.values():
            claim = (v.get("persistentVolumeClaim") or {}).get("claimName")
            if claim and claim not in pvcs:
                errors.append(f"{d.where}: volume {v['name']!r} uses PVC {claim!r}, which is not defined")
        for c in pod.containers():
            where = f"{d.where}: container {c.get('name')!r}"
            image = str(c.get("image", ""))
            if (
                not image
                or not (re.search(r":[^/]+$", image) or "@sha256:" in image)
                or image.endswith(":latest")
            ):
                errors.append(f"{where}: image {image!r} must be pinned to a tag or digest (not latest)")
            errors += _check_resources(where, c)
            if pod.long_running and c in (spec.get("containers") or []):
                for probe in ("readinessProbe", "livenessProbe"):
                    if probe not in c:
                        errors.append(f"{where}: {probe} is missing")
            for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
                if probe in c:
                    errors += _check_probe(where, probe, c[probe], pod, c)
            csc = c.get("securityContext") or {}
            if csc.get("runAsNonRoot", psc.get("runAsNonRoot")) is not True:
                errors.append(f"{where}: runAsNonRoot is not true")
            if csc.get("runAsUser", psc.get("runAsUser")) == 0:
                errors.append(f"{where}: runs as uid 0")
            if csc.get("allowPrivilegeEscalation") is not False:
                errors.append(f"{where}: allowPrivilegeEscalation must be false")
            if "ALL" not in ((csc.get("capabilities") or {}).get("drop") or []):
                errors.append(f"{where}: capabilities must drop ALL")
            if csc.get("readOnlyRootFilesystem") is not True:
                errors.append(f"{where}: readOnlyRootFilesystem must be true")
            seccomp = (csc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
            if seccomp not in ("RuntimeDefault", "Localhost"):
                errors.append(f"{where}: seccompProfile must be RuntimeDefault")
            if csc.get("privileged"):
                errors.append(f"{where}: privileged container")
            for m in c.get("volumeMounts") or []:
                if m.get("name") not in volumes and m.get("name") not in claim_templates:
                    errors.append(f"{where}: volumeMount {m.get('name')!r} has no volume")
            errors += _check_env(where, c, bundle)
    return errors


def container_env_names(c: dict[str, Any], bundle: Bundle) -> list[str]:
    """Every variable a container gets: envFrom ConfigMap/Secret keys (with prefix) and env entries."""
    names = []
    for ef in c.get("envFrom") or []:
        prefix = ef.get("prefix", "")
        if "configMapRef" in ef:
            names += [prefix + k for k in sorted(bundle.configmap_keys(ef["configMapRef"].get("name")) or ())]
        if "secretRef" in ef:
            names += [prefix + k for k in sorted(bundle.secret_keys(ef["secretRef"].get("name")) or ())]
    names += [e.get("name", "") for e in c.get("env") or []]
    return names


def _check_env(where: str, c: dict[str, Any], bundle: Bundle) -> list[str]:
    errors = []
    for ef in c.get("envFrom") or []:
        cm_ref, secret_ref = ef.get("configMapRef") or {}, ef.get("secretRef") or {}
        if cm_ref and bundle.configmap_keys(cm_ref.get("name")) is None and not cm_ref.get("optional"):
            errors.append(f"{where}: envFrom ConfigMap {ef['configMapRef'].get('name')!r} is not defined")
        if (
            secret_ref
            and bundle.secret_keys(secret_ref.get("name")) is None
            and not secret_ref.get("optional")
        ):
            errors.append(f"{where}: envFrom Secret {ef['secretRef'].get('name')!r} is not defined")
    defined: set[str] = set()
    for ef in c.get("envFrom") or []:
        prefix = ef.get("prefix", "")
        keys = (
            bundle.configmap_keys(ef["configMapRef"].get("name"))
            if "configMapRef" in ef
            else bundle.secret_keys(ef.get("secretRef", {}).get("name"))
        )
        defined |= {prefix + k for k in keys or ()}
    for e in c.get("env") or []:
        name = e.get("name", "")
        src = e.get("valueFrom") or {}
        if "secretKeyRef" in src:
            ref = src["secretKeyRef"]
            keys = bundle.secret_keys(ref.get("name"))
            if keys is None:
                errors.append(f"{where}: env {name}: Secret {ref.get('name')!r} is not defined")
            elif ref.get("key") not in keys:
                errors.append(
                    f"{where}: env {name}: Secret {ref.get('name')!r} has no key {ref.get('key')!r}"
                )
        if "configMapKeyRef" in src:
            ref = src["configMapKeyRef"]
            keys = bundle.configmap_keys(ref.get("name"))
            if keys is None:
                errors.append(f"{where}: env {name}: ConfigMap {ref.get('name')!r} is not defined")
            elif ref.get("key") not in keys:
                errors.append(
                    f"{where}: env {name}: ConfigMap {ref.get('name')!r} has no key {ref.get('key')!r}"
                )
        for ref in _VAR_REF.findall(str(e.get("value", ""))):
            if ref not in defined:
                errors.append(f"{where}: env {name} references $({ref}), which is not defined before it")
        defined.add(name)
    for part in ("command", "args"):
        for arg in c.get(part) or []:
            for ref in _VAR_REF.findall(str(arg)):
                if ref not in defined:
                    errors.append(
                        f"{where}: {part} references $({ref}), which the container's environment lacks"
                    )
    for name in container_env_names(c, bundle):
        problem = env_var_problem(name)
        if problem:
            errors.append(f"{where}: {problem}")
    return errors


def container_env(c: dict[str, Any], bundle: Bundle) -> dict[str, str]:
    """The environment a container's process gets, resolved from the bundle as the kubelet would.

    envFrom first, then env in order with $(VAR) expanded; Secret and ConfigMap key references are resolved
    from the objects in the bundle (Strimzi-made Secrets and fieldRefs resolve to nothing).
    """
    env: dict[str, str] = {}
    for ef in c.get("envFrom") or []:
        prefix = ef.get("prefix", "")
        if "configMapRef" in ef:
            data = bundle.configmap_data(ef["configMapRef"].get("name"))
        else:
            data = bundle.secret_data((ef.get("secretRef") or {}).get("name"))
        env.update({prefix + k: v for k, v in data.items()})
    for e in c.get("env") or []:
        name, src = e.get("name", ""), e.get("valueFrom") or {}
        if "secretKeyRef" in src:
            value = bundle.secret_data(src["secretKeyRef"].get("name")).get(
                src["secretKeyRef"].get("key", "")
            )
        elif "configMapKeyRef" in src:
            ref = src["configMapKeyRef"]
            value = bundle.configmap_data(ref.get("name")).get(ref.get("key", ""))
        elif src:
            value = None
        else:
            value = _expand(str(e.get("value", "")), env)
        if value is not None:
            env[name] = value
    return env


def _mount_for(path: str, c: dict[str, Any]) -> dict[str, Any] | None:
    """The volumeMount a path falls under (longest mountPath prefix); None: the root filesystem."""
    best = None
    for m in c.get("volumeMounts") or []:
        mp = str(m.get("mountPath", "")).rstrip("/") or "/"
        if (path == mp or path.startswith(mp + "/") or mp == "/") and (
            best is None or len(mp) > len(str(best["mountPath"]).rstrip("/"))
        ):
            best = m
    return best


def _write_problem(path: str, pod: PodTemplate, c: dict[str, Any]) -> str | None:
    """Why a process in the container cannot write ``path`` (None when it can)."""
    if not path.startswith("/"):
        if not str(c.get("workingDir", "")).startswith("/"):
            return "a relative path (the image's working directory is unknown here and not a volume)"
        path = str(Path(c["workingDir"]) / path)
    mount = _mount_for(path, c)
    if mount is None:
        if (c.get("securityContext") or {}).get("readOnlyRootFilesystem"):
            return "on the read-only root filesystem (no volume is mounted there)"
        return None
    volume: dict[str, Any] = next(
        (v for v in pod.spec.get("volumes") or [] if v.get("name") == mount.get("name")), {}
    )
    if mount.get("readOnly") or (volume.get("persistentVolumeClaim") or {}).get("readOnly"):
        return f"on volume {mount.get('name')!r}, mounted read-only"
    if any(k in volume for k in ("configMap", "secret", "downwardAPI", "projected")):
        return f"on volume {mount.get('name')!r}, which is read-only by nature"
    return None


#: What each streamrec command writes (settings class, field, "dir" or "file"): must be on a writable volume.
WRITES: dict[tuple[str, ...], list[tuple[str, str, str]]] = {
    ("worker",): [("StreamsSettings", "data_dir", "dir")],
    ("archive",): [("PathsSettings", "archive_root", "dir")],
    ("train",): [
        ("PathsSettings", "export_root", "dir"),
        ("TrainerSettings", "cache_dir", "dir"),
        ("TrainerSettings", "checkpoint_dir", "dir"),
    ],
    ("features", "apply"): [
        ("StreamsSettings", "feast_registry", "file"),
        ("PathsSettings", "archive_root", "dir"),
    ],
    ("serve", "prepare"): [("TritonSettings", "model_repository", "dir")],
}
#: Commands that serve HTTP: (settings class, host field, port field). Probes and Services reach the pod's
#: address, on a port the container declares.
BINDS: dict[tuple[str, ...], tuple[str, str, str]] = {
    ("api",): ("ApiSettings", "host", "port"),
    ("worker",): ("StreamsSettings", "web_host", "web_port"),
}
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _lookup(table: dict[tuple[str, ...], Any], argv: list[str]) -> Any:
    return next((v for k, v in table.items() if tuple(argv[: len(k)]) == k), None)


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
            env = container_env(c, bundle)
            if not _is_streamrec_image(c) and not any(k.startswith("STREAMREC_") for k in env):
                continue
            where = f"{pod.doc.where}: container {c.get('name')!r}"
            invocations = streamrec_invocations(c, env)
            errors = [f"{where}: {p}" for argv in invocations if (p := cli_problem(argv))]
            settings, problems = load_settings(env)
            errors += [f"{where}: settings do not load from its environment: {p}" for p in problems]
            runs.append(ContainerRun(pod, c, where, env, invocations, settings, errors))
    return runs


def check_streamrec_containers(bundle: Bundle) -> list[str]:
    """streamrec containers: CLI arguments parse, settings load, servers bind the pod's address on the probed
    port, and whatever a command writes lies on a writable volume."""
    errors = []
    for run in streamrec_runs(bundle):
        errors += run.errors
        c = run.container
        for argv in run.invocations:
            bind = _lookup(BINDS, argv)
            if bind and bind[0] in run.settings:
                cls, host_field, port_field = bind
                host, port = getattr(run.settings[cls], host_field), getattr(run.settings[cls], port_field)
                if host in _LOOPBACK:
                    errors.append(
                        f"{run.where}: `streamrec {argv[0]}` binds {cls}.{host_field}={host}: unreachable"
                    )
                ports = {p.get("containerPort") for p in c.get("ports") or []}
                if port not in ports:
                    errors.append(
                        f"{run.where}: `streamrec {argv[0]}` listens on {cls}.{port_field}={port}, "
                        f"not a containerPort ({sorted(p for p in ports if p)})"
                    )
            for cls, name, kind in _lookup(WRITES, argv) or []:
                if cls not in run.settings or getattr(run.settings[cls], name) is None:
                    continue
                path = str(getattr(run.settings[cls], name))
                target = str(Path(path).parent) if kind == "file" and path.startswith("/") else path
                problem = _write_problem(target, run.pod, c)
                if problem:
                    errors.append(
                        f"{run.where}: `streamrec {' '.join(argv[:2])}` writes {cls}.{name}={path}, {problem}"
                    )
    return errors


def _flag(args: list[str], name: str) -> str | None:
    for i, a in enumerate(args):
        if a.startswith(f"{name}="):
            return a.split("=", 1)[1]
        if a == name and i + 1 < len(args):
            return args[i + 1]
    return None


def check_triton(bundle: Bundle) -> list[str]:
    """Triton serves the model repository ``streamrec serve prepare`` renders, from a volume both containers
    share, and a prepare that loads models talks to its own pod's Triton in explicit model-control mode."""
    errors = []
    runs = streamrec_runs(bundle)
    for pod in bundle.pods():
        for t in pod.containers(init=False):
            command = [str(x) for x in (t.get("command") or []) + (t.get("args") or [])]
            if not command or Path(command[0]).name != "tritonserver":
                continue
            where = f"{pod.doc.where}: container {t.get('name')!r}"
            repo = _flag(command, "--model-repository") or _flag(command, "--model-store")
            mode = _flag(command, "--model-control-mode") or "none"
            if not repo:
                errors.append(f"{where}: tritonserver without --model-repository")
                continue
            triton_mount = _mount_for(repo, t)
            if triton_mount is None:
                errors.append(f"{where}: model repository {repo} is on no volume")
            preparers = [
                (r, argv)
                for r in runs
                if r.pod.doc is pod.doc
                for argv in r.invocations
                if argv[:2] == ["serve", "prepare"]
            ]
            for r, argv in preparers:
                rendered = _flag(argv, "--repository") or (
                    str(r.settings["TritonSettings"].model_repository)
                    if "TritonSettings" in r.settings
                    else None
                )
                if rendered != repo:
                    errors.append(
                        f"{r.where}: renders the model repository at {rendered}, Triton serves {repo}"
                    )
                    continue
                mount = _mount_for(repo, r.container)
                if triton_mount and (mount is None or mount.get("name") != triton_mount.get("name")):
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
                url = r.settings["TritonSettings"].http_url if "TritonSettings" in r.settings else ""
                host = re.sub(r"^\w+://", "", url).split(":")[0].split("/")[0]
                if host not in _LOOPBACK:
                    errors.append(
                        f"{r.where}: loads models on {url}, not on its own pod's Triton: "
                        "other replicas never reload"
                    )
            if not preparers and mode == "explicit" and _flag(command, "--load-model") is None:
                errors.append(
                    f"{where}: explicit model control with no --load-model and nothing that loads models"
                )
    return errors


def check_services(bundle: Bundle) -> list[str]:
    errors = []
    pods = bundle.pods()
    for svc in bundle.of("Service"):
        sel = (svc.obj.get("spec") or {}).get("selector")
        matched = [p for p in pods if selects(sel, p.labels)]
        if not matched:
            errors.append(f"{svc.where}: selector {sel} matches no pod template")
            continue
        for port in (svc.obj.get("spec") or {}).get("ports") or []:
            target = port.get("targetPort", port.get("port"))
            for p in matched:
                if isinstance(target, str) and target not in p.port_names():
                    errors.append(f"{svc.where}: targetPort {target!r} is not a named port of {p.doc.where}")
                if isinstance(target, int) and target not in p.port_numbers():
                    errors.append(f"{svc.where}: targetPort {target} is not a containerPort of {p.doc.where}")
    return errors


def check_disruption_budgets(bundle: Bundle) -> list[str]:
    errors = []
    pods = bundle.pods()
    pdbs = bundle.of("PodDisruptionBudget")
    for pdb in pdbs:
        spec = pdb.obj.get("spec") or {}
        if not any(selects(spec.get("selector"), p.labels) for p in pods if p.long_running):
            errors.append(f"{pdb.where}: selector matches no workload")
        if ("minAvailable" in spec) == ("maxUnavailable" in spec):
            errors.append(f"{pdb.where}: set exactly one of minAvailable / maxUnavailable")
    for dep in bundle.of("Deployment"):
        pod = pod_template(dep)
        if pod and not any(selects((b.obj.get("spec") or {}).get("selector"), pod.labels) for b in pdbs):
            errors.append(f"{dep.where}: no PodDisruptionBudget covers it")
    return errors


def check_monitors(bundle: Bundle) -> list[str]:
    errors = []
    services = bundle.of("Service")
    for sm in bundle.of("ServiceMonitor"):
        spec = sm.obj.get("spec") or {}
        matched = [
            s for s in services if selects(spec.get("selector"), (s.obj["metadata"].get("labels") or {}))
        ]
        if not matched:
            errors.append(f"{sm.where}: selector matches no Service")
        for ep in spec.get("endpoints") or []:
            for s in matched:
                names = {p.get("name") for p in (s.obj.get("spec") or {}).get("ports") or []}
                if ep.get("port") not in names:
                    errors.append(
                        f"{sm.where}: endpoint port {ep.get('port')!r} is not a port name of {s.where}"
                    )
    for pm in bundle.of("PodMonitor"):
        spec = pm.obj.get("spec") or {}
        pods = [p for p in bundle.pods() if selects(spec.get("selector"), p.labels)]
        if not pods:
            errors.append(f"{pm.where}: selector matches no pod template")
        for ep in spec.get("podMetricsEndpoints") or []:
            for p in pods:
                if ep.get("port") not in p.port_names():
                    errors.append(
                        f"{pm.where}: port {ep.get('port')!r} is not a container port name of {p.doc.where}"
                    )
    return errors


def _bootstrap_listener(bundle: Bundle, servers: str) -> tuple[Doc, dict[str, Any]] | str:
    """The Kafka listener a bootstrap address points at, or why it points at none."""
    first = servers.split(",")[0].strip()
    host, _, port = first.rpartition(":")
    service = host.split(".")[0]
    for kafka in bundle.of("Kafka"):
        if service == f"{kafka.name}-kafka-bootstrap":
            listeners = ((kafka.obj.get("spec") or {}).get("kafka") or {}).get("listeners") or []
            for lst in listeners:
                if str(lst.get("port")) == port:
                    return kafka, lst
            return f"port {port} is no listener of Kafka {kafka.name!r}"
    return f"{host!r} is not the bootstrap service of a Kafka in the manifests"


def _numeric(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def check_scaled_objects(bundle: Bundle, *, rendered: bool) -> list[str]:
    errors = []
    topics = bundle.topics()
    for so in bundle.of("ScaledObject"):
        spec = so.obj.get("spec") or {}
        ref = spec.get("scaleTargetRef") or {}
        kind = ref.get("kind", "Deployment")
        target = bundle.get(kind, ref.get("name", "")) if kind in ("Deployment", "StatefulSet") else None
        if target is None:
            errors.append(
                f"{so.where}: scaleTargetRef {kind}/{ref.get('name')} names no Deployment or StatefulSet"
            )
        elif rendered and "replicas" in (target.obj.get("spec") or {}):
            errors.append(
                f"{so.where}: {target.where} sets spec.replicas, which fights the HPA on every apply"
            )
        lo, hi = spec.get("minReplicaCount", 0), spec.get("maxReplicaCount", 100)
        if not isinstance(lo, int) or not isinstance(hi, int) or lo > hi:
            errors.append(
                f"{so.where}: minReplicaCount {lo!r} / maxReplicaCount {hi!r} are not ordered integers"
            )
            continue
        triggers = spec.get("triggers") or []
        if not triggers:
            errors.append(f"{so.where}: no triggers")
        for t in triggers:
            meta = t.get("metadata") or {}
            ttype = t.get("type")
            auth_ref = t.get("authenticationRef") or {}
            auth_kind = auth_ref.get("kind", "TriggerAuthentication")
            if (
                auth_ref
                and auth_kind == "TriggerAuthentication"
                and bundle.get(auth_kind, str(auth_ref.get("name", ""))) is None
            ):
                errors.append(
                    f"{so.where}: authenticationRef {auth_ref.get('name')!r} names no TriggerAuthentication"
                )
            if ttype == "kafka":
                errors += _check_kafka_trigger(bundle, so, meta, hi, topics)
            elif ttype == "prometheus":
                for key in ("serverAddress", "query", "threshold"):
                    if not meta.get(key):
                        errors.append(f"{so.where}: prometheus trigger needs metadata.{key}")
                if meta.get("threshold") and not (_numeric(meta["threshold"]) or 0) > 0:
                    errors.append(
                        f"{so.where}: prometheus threshold {meta['threshold']!r} is not a positive number"
                    )
                if not str(meta.get("serverAddress", "")).startswith(("http://", "https://")):
                    errors.append(f"{so.where}: prometheus serverAddress must be an http(s) URL")
            elif ttype in ("cpu", "memory"):
                if not (_numeric(meta.get("value")) or 0) > 0:
                    errors.append(f"{so.where}: {ttype} trigger needs a positive metadata.value")
                if t.get("metricType", "Utilization") not in ("Utilization", "AverageValue"):
                    errors.append(
                        f"{so.where}: {ttype} trigger metricType must be Utilization or AverageValue"
                    )
                if lo < 1:
                    errors.append(
                        f"{so.where}: a {ttype} trigger cannot scale to zero (minReplicaCount >= 1)"
                    )
                pod = pod_template(target) if target else None
                for c in pod.containers(init=False) if pod else []:
                    if ttype not in ((c.get("resources") or {}).get("requests") or {}):
                        errors.append(
                            f"{so.where}: {ttype} trigger needs resources.requests.{ttype} on {c['name']}"
                        )
    for ta in bundle.of("TriggerAuthentication"):
        for ref in (ta.obj.get("spec") or {}).get("secretTargetRef") or []:
            keys = bundle.secret_keys(ref.get("name"))
            if keys is None:
                errors.append(
                    f"{ta.where}: Secret {ref.get('name')!r} is neither defined nor made by Strimzi"
                )
            elif ref.get("key") not in keys:
                errors.append(f"{ta.where}: Secret {ref.get('name')!r} has no key {ref.get('key')!r}")
    return errors


def _check_kafka_trigger(
    bundle: Bundle, so: Doc, meta: dict[str, Any], hi: int, topics: dict[str, Doc]
) -> list[str]:
    errors = []
    for key in ("bootstrapServers", "consumerGroup", "topic", "lagThreshold"):
        if not meta.get(key):
            errors.append(f"{so.where}: kafka trigger needs metadata.{key}")
    topic = meta.get("topic")
    if topic:
        if topic not in topics:
            errors.append(f"{so.where}: topic {topic!r} is not defined by a KafkaTopic")
        else:
            partitions = (topics[topic].obj.get("spec") or {}).get("partitions")
            if not isinstance(partitions, int):
                errors.append(f"{so.where}: KafkaTopic {topic!r} has no partition count")
            elif hi > partitions:
                errors.append(
                    f"{so.where}: maxReplicaCount {hi} exceeds the {partitions} partitions of {topic!r} "
                    "(extra consumers would sit idle)"
                )
    lag = meta.get("lagThreshold")
    if lag is not None and not (isinstance(lag, str) and lag.isdigit() and int(lag) > 0):
        errors.append(f"{so.where}: lagThreshold {lag!r} must be a positive integer string")
    if meta.get("bootstrapServers"):
        found = _bootstrap_listener(bundle, str(meta["bootstrapServers"]))
        if isinstance(found, str):
            errors.append(f"{so.where}: bootstrapServers: {found}")
        else:
            listener_tls = bool(found[1].get("tls"))
            if listener_tls != (meta.get("tls") == "enable"):
                listener = found[1].get("name")
                errors.append(
                    f"{so.where}: tls={meta.get('tls')!r} but listener {listener!r} tls={listener_tls}"
                )
    return errors


def check_kafka(bundle: Bundle) -> list[str]:
    errors = []
    clusters = {k.name for k in bundle.of("Kafka")}
    for d in bundle.of("KafkaNodePool") + bundle.of("KafkaTopic"):
        cluster = (d.obj["metadata"].get("labels") or {}).get("strimzi.io/cluster")
        if cluster not in clusters:
            errors.append(f"{d.where}: label strimzi.io/cluster={cluster!r} names no Kafka")
    for k in bundle.of("Kafka"):
        roles = {
            r
            for p in bundle.of("KafkaNodePool")
            if (p.obj["metadata"].get("labels") or {}).get("strimzi.io/cluster") == k.name
            for r in (p.obj.get("spec") or {}).get("roles") or []
        }
        if not {"controller", "broker"} <= roles:
            errors.append(
                f"{k.where}: KRaft needs node pools with the controller and broker roles (has {roles})"
            )
        config = ((k.obj.get("spec") or {}).get("kafka") or {}).get("config") or {}
        brokers = bundle.brokers(k.name)
        for key in ("default.replication.factor", "offsets.topic.replication.factor", "min.insync.replicas"):
            if key in config and int(config[key]) > brokers:
                errors.append(f"{k.where}: {key}={config[key]} exceeds the {brokers} broker(s)")
    for t in bundle.of("KafkaTopic"):
        spec = t.obj.get("spec") or {}
        cluster = (t.obj["metadata"].get("labels") or {}).get("strimzi.io/cluster", "")
        replicas, brokers = spec.get("replicas"), bundle.brokers(cluster)
        if isinstance(replicas, int) and brokers and replicas > brokers:
            errors.append(f"{t.where}: replicas {replicas} exceeds the {brokers} broker(s)")
        isr = (spec.get("config") or {}).get("min.insync.replicas")
        if isr is not None and isinstance(replicas, int) and int(isr) > replicas:
            errors.append(f"{t.where}: min.insync.replicas {isr} exceeds replicas {replicas}")
    return errors


def check_settings_consistency(bundle: Bundle, configmap: str = "streamrec-config") -> list[str]:
    """The settings ConfigMap agrees with the KafkaTopics and points at services that exist."""
    cm = bundle.get("ConfigMap", configmap)
    if cm is None:
        return [f"ConfigMap {configmap!r} is missing"]
    data = cm.obj.get("data") or {}
    errors = []
    topics = bundle.topics()
    for role in ("INTERACTIONS", "RECOMMENDATIONS", "DLQ"):
        name = data.get(f"STREAMREC_KAFKA_{role}_TOPIC")
        parts = data.get(f"STREAMREC_KAFKA_{role}_PARTITIONS")
        if name not in topics:
            errors.append(f"{cm.where}: STREAMREC_KAFKA_{role}_TOPIC={name!r} has no KafkaTopic")
            continue
        actual = (topics[name].obj.get("spec") or {}).get("partitions")
        if parts is not None and str(actual) != str(parts):
            errors.append(
                f"{cm.where}: STREAMREC_KAFKA_{role}_PARTITIONS={parts} but KafkaTopic {name!r} has {actual}"
            )
    rf = data.get("STREAMREC_KAFKA_REPLICATION_FACTOR")
    kafkas = bundle.of("Kafka")
    if rf is not None and kafkas and int(rf) > bundle.brokers(kafkas[0].name):
        errors.append(f"{cm.where}: STREAMREC_KAFKA_REPLICATION_FACTOR={rf} exceeds the brokers")
    if "KAFKA_BOOTSTRAP_SERVERS" in data:
        found = _bootstrap_listener(bundle, data["KAFKA_BOOTSTRAP_SERVERS"])
        if isinstance(found, str):
            errors.append(f"{cm.where}: KAFKA_BOOTSTRAP_SERVERS: {found}")
        elif (
            found[1].get("tls") and data.get("STREAMREC_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT") == "PLAINTEXT"
        ):
            errors.append(
                f"{cm.where}: KAFKA_BOOTSTRAP_SERVERS points at a TLS listener but clients use PLAINTEXT"
            )
    for key in ("TRITON_URL",):
        if key in data:
            host = re.sub(r"^\w+://", "", data[key]).split(":")[0].split("/")[0]
            if bundle.get("Service", host.split(".")[0]) is None:
                errors.append(f"{cm.where}: {key} host {host!r} is no Service")
    for key in data:
        problem = env_var_problem(key)
        if problem:
            errors.append(f"{cm.where}: {problem}")
    return errors


def _tolerates(tolerations: list[dict[str, Any]], taint: dict[str, Any]) -> bool:
    for t in tolerations:
        if t.get("effect") not in (None, "", taint.get("effect")):
            continue
        if t.get("operator") == "Exists" and (not t.get("key") or t.get("key") == taint.get("key")):
            return True
        if t.get("key") == taint.get("key") and t.get("value") == taint.get("value"):
            return True
    return False


def _nodepool_allows_labels(np: Doc, selector: dict[str, str]) -> bool:
    tpl = (np.obj.get("spec") or {}).get("template") or {}
    labels = (tpl.get("metadata") or {}).get("labels") or {}
    reqs = {r["key"]: r for r in (tpl.get("spec") or {}).get("requirements") or []}
    for key, value in selector.items():
        if key in labels:
            if labels[key] != value:
                return False
        elif key in reqs:
            r = reqs[key]
            if r.get("operator") == "In" and value not in (r.get("values") or []):
                return False
            if r.get("operator") in ("NotIn", "DoesNotExist") and value in (r.get("values") or [value]):
                return False
        elif key != "karpenter.sh/nodepool" or value != np.name:
            return False
    return True


def check_karpenter(bundle: Bundle) -> list[str]:
    errors = []
    classes = {d.name for d in bundle.of("EC2NodeClass")}
    nodepools = bundle.of("NodePool")
    for np in nodepools:
        spec = np.obj.get("spec") or {}
        tpl_spec = (spec.get("template") or {}).get("spec") or {}
        ref = tpl_spec.get("nodeClassRef") or {}
        if ref.get("kind") == "EC2NodeClass" and classes and ref.get("name") not in classes:
            errors.append(
                f"{np.where}: nodeClassRef names EC2NodeClass {ref.get('name')!r}, which is not defined"
            )
        limits = spec.get("limits") or {}
        if not limits:
            errors.append(f"{np.where}: no limits (an unbounded pool can launch any number of nodes)")
        if not (spec.get("disruption") or {}).get("consolidationPolicy"):
            errors.append(f"{np.where}: no disruption.consolidationPolicy")
        if GPU in limits:
            taints = tpl_spec.get("taints") or []
            if not any(t.get("key") == GPU and t.get("effect") == "NoSchedule" for t in taints):
                errors.append(f"{np.where}: a GPU pool must taint its nodes {GPU}:NoSchedule")
            reqs = {r.get("key"): r for r in tpl_spec.get("requirements") or []}
            fam = reqs.get("karpenter.k8s.aws/instance-family") or {}
            values = fam.get("values") or [] if fam.get("operator") == "In" else []
            for family in ("g5", "g6", "p4", "p5"):
                if not any(v.startswith(family) for v in values):
                    errors.append(f"{np.where}: instance families do not include {family}*")
    # Every pod asking for a GPU must fit some NodePool that has GPUs: taints tolerated, node selector
    # satisfiable.
    for pod in bundle.pods():
        gpus = sum(
            parse_quantity(((c.get("resources") or {}).get("limits") or {}).get(GPU, 0))
            for c in pod.containers()
        )
        if not gpus or not nodepools:
            continue
        fits = [
            np
            for np in nodepools
            if parse_quantity(((np.obj.get("spec") or {}).get("limits") or {}).get(GPU, 0)) >= gpus
            and all(
                _tolerates(pod.spec.get("tolerations") or [], t)
                for t in (((np.obj.get("spec") or {}).get("template") or {}).get("spec") or {}).get("taints")
                or []
            )
            and _nodepool_allows_labels(np, pod.spec.get("nodeSelector") or {})
        ]
        if not fits:
            errors.append(
                f"{pod.doc.where}: requests {gpus} GPU(s) but no NodePool with GPU limits can take it"
            )
    return errors


#: Kubernetes version whose schemas core objects are checked against (CronJob timeZone, policy/v1, ... need
#: >= 1.27).
K8S_VERSION = "1.32.0"


def check_core_schemas(bundle: Bundle, version: str = K8S_VERSION) -> list[str]:
    """Core objects against the strict Kubernetes JSON schemas of the ``kubernetes-validate`` package.

    Strict means unknown fields are errors, as for custom resources. The package reports the first error of
    each object. Raises ImportError when the package is not installed (callers skip).
    """
    import kubernetes_validate

    errors = []
    for d in bundle.docs:
        if (d.api_version, d.kind) not in CORE_KINDS:
            continue
        try:
            kubernetes_validate.validate(d.obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = "/".join(str(p) for p in exc.absolute_path) or "<root>"
            errors.append(f"{d.where}: {path}: {exc.message} (Kubernetes {version} schema)")
        except kubernetes_validate.SchemaNotFoundError:
            errors.append(f"{d.where}: no Kubernetes {version} schema for {d.api_version} {d.kind}")
    return errors


def check_bundle(bundle: Bundle, *, rendered: bool) -> list[str]:
    """All structural checks (and schema checks when the bundle has a CRD registry)."""
    return (
        check_identity(bundle, rendered=rendered)
        + check_custom_resources(bundle)
        + check_pods(bundle)
        + check_services(bundle)
        + check_disruption_budgets(bundle)
        + check_monitors(bundle)
        + check_scaled_objects(bundle, rendered=rendered)
        + check_kafka(bundle)
        + (check_settings_consistency(bundle) if bundle.get("ConfigMap", "streamrec-config") else [])
        + check_karpenter(bundle)
        + check_streamrec_containers(bundle)
        + check_triton(bundle)
    )


# ------------------------------------------------------------------------------------------------------------
# Kustomize


def kustomization_file(directory: Path) -> Path | None:
    return next((directory / n for n in KUSTOMIZATION_NAMES if (directory / n).is_file()), None)


def kustomizations() -> list[Path]:
    return sorted(p for root in MANIFEST_ROOTS for n in KUSTOMIZATION_NAMES for p in root.rglob(n))


def kustomization_refs(path: Path) -> list[tuple[str, str]]:
    """(role, reference) for every local path a kustomization names; role is 'resource', 'patch' or 'file'."""
    k = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader) or {}
    refs: list[tuple[str, str]] = []
    refs += [("resource", r) for r in k.get("resources") or []]
    refs += [("resource", r) for r in k.get("components") or []]
    refs += [("resource", r) for r in k.get("crds") or []]
    refs += [("patch", p["path"]) for p in k.get("patches") or [] if isinstance(p, dict) and "path" in p]
    refs += [
        ("patch", p) for p in k.get("patchesStrategicMerge") or [] if isinstance(p, str) and "\n" not in p
    ]
    refs += [("patch", p["path"]) for p in k.get("patchesJson6902") or [] if "path" in p]
    for gen in (k.get("configMapGenerator") or []) + (k.get("secretGenerator") or []):
        refs += [("file", f.split("=", 1)[-1]) for f in gen.get("files") or []]
        refs += [("file", f) for f in gen.get("envs") or []]
    return refs


def check_kustomization(path: Path) -> list[str]:
    errors = []
    rel = path.relative_to(REPO) if path.is_relative_to(REPO) else path
    for role, ref in kustomization_refs(path):
        if "://" in ref or ref.startswith(("github.com/", "git@")):
            errors.append(f"{rel}: remote reference {ref!r} (manifests must build offline)")
            continue
        target = (path.parent / ref).resolve()
        if not target.exists():
            errors.append(f"{rel}: {role} {ref!r} does not exist")
        elif target.is_dir() and (role != "resource" or kustomization_file(target) is None):
            errors.append(f"{rel}: {role} {ref!r} is a directory without a kustomization")
    return errors


def referenced_files() -> dict[Path, set[str]]:
    """File -> roles it plays in some kustomization."""
    out: dict[Path, set[str]] = {}
    for k in kustomizations():
        for role, ref in kustomization_refs(k):
            target = (k.parent / ref).resolve()
            if target.is_file():
                out.setdefault(target, set()).add(role)
    return out


def kustomize_command() -> list[str] | None:
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    return None


def render(directory: Path) -> list[Doc]:
    """``kustomize build`` of a directory (RuntimeError with kustomize's message when it fails)."""
    cmd = kustomize_command()
    if cmd is None:
        raise FileNotFoundError("neither kustomize nor kubectl is installed")
    proc = subprocess.run([*cmd, str(directory)], capture_output=True, text=True, timeout=60, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} {directory}: {proc.stderr.strip()}")
    rel = directory.relative_to(REPO) if directory.is_relative_to(REPO) else directory
    return load_docs(Path(f"{rel}(rendered)"), proc.stdout)
