"""The manifests under ``k8s/`` and ``keda/`` as documents: YAML files, kustomizations, rendered overlays.

A :class:`Bundle` is a set of documents applied together (all source resources, or one rendered overlay); the
checks in :mod:`tests.k8s.schemas` and :mod:`tests.k8s.validator` take one.
"""

from __future__ import annotations

import copy
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
MANIFEST_ROOTS = (REPO / "k8s", REPO / "keda")
KUSTOMIZATION_NAMES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob")

YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


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
    for i, obj in enumerate(yaml.load_all(raw, Loader=YAML_LOADER)):
        if obj is None:
            continue
        if not isinstance(obj, dict):
            raise ValueError(f"{rel}#{i}: a manifest must be a mapping, got {type(obj).__name__}")
        docs.append(Doc(obj, f"{rel}#{i}"))
    return docs


def manifest_files() -> list[Path]:
    """Every YAML or JSON file under k8s/ and keda/ (kustomize takes JSON resources too)."""
    suffixes = (".yaml", ".yml", ".json")
    return sorted(p for root in MANIFEST_ROOTS for p in root.rglob("*") if p.suffix in suffixes)


@dataclass
class PodTemplate:
    """The pod template of a workload."""

    doc: Doc
    spec: dict[str, Any]
    labels: dict[str, str]
    long_running: bool

    def containers(self, *, init: bool = True) -> list[dict[str, Any]]:
        return list(self.spec.get("containers") or []) + list(
            (self.spec.get("initContainers") or []) if init else []
        )


def pod_template(doc: Doc) -> PodTemplate | None:
    spec = doc.obj.get("spec") or {}
    if doc.kind not in WORKLOAD_KINDS:
        return None
    if doc.kind == "CronJob":
        spec = (spec.get("jobTemplate") or {}).get("spec") or {}
    template = spec.get("template") or {}
    labels = (template.get("metadata") or {}).get("labels") or {}
    return PodTemplate(doc, template.get("spec") or {}, labels, doc.kind not in ("Job", "CronJob"))


class Bundle:
    """Documents that are applied together."""

    def __init__(self, docs: Iterable[Doc]) -> None:
        self.docs = list(docs)

    def of(self, kind: str) -> list[Doc]:
        return [d for d in self.docs if d.kind == kind]

    def get(self, kind: str, name: str) -> Doc | None:
        return next((d for d in self.docs if d.kind == kind and d.name == name), None)

    def pods(self) -> list[PodTemplate]:
        return [p for d in self.docs if (p := pod_template(d)) is not None]


# ------------------------------------------------------------------------------------------------------------
# Kustomize


def kustomization_file(directory: Path) -> Path | None:
    return next((directory / n for n in KUSTOMIZATION_NAMES if (directory / n).is_file()), None)


def kustomizations() -> list[Path]:
    return sorted(p for root in MANIFEST_ROOTS for n in KUSTOMIZATION_NAMES for p in root.rglob(n))


def kustomization_refs(path: Path) -> list[tuple[str, str]]:
    """(role, reference) for every path a kustomization names; role is 'resource', 'patch' or 'file'."""
    k = yaml.load(path.read_text(encoding="utf-8"), Loader=YAML_LOADER) or {}
    refs = [("resource", r) for key in ("resources", "components", "crds") for r in k.get(key) or []]
    refs += [("patch", p["path"]) for p in k.get("patches") or [] if isinstance(p, dict) and "path" in p]
    refs += [("patch", p) for p in k.get("patchesStrategicMerge") or [] if "\n" not in p]
    for gen in (k.get("configMapGenerator") or []) + (k.get("secretGenerator") or []):
        refs += [("file", f.split("=", 1)[-1]) for f in (gen.get("files") or []) + (gen.get("envs") or [])]
    return refs


def check_kustomization(path: Path) -> list[str]:
    """Every reference is local (the manifests build offline) and exists; kustomize would fail later."""
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


#: The overlays as they are applied: name -> directories rendered together. The GPU overlay is applied with
#: the cluster-scoped Karpenter pools it relies on.
OVERLAYS = {"local": ("k8s/overlays/local",), "gpu": ("k8s/overlays/gpu", "keda/karpenter")}


@cache
def _rendered_overlay(name: str) -> tuple[Doc, ...]:
    return tuple(d for path in OVERLAYS[name] for d in render(REPO / path))


def rendered_overlay(name: str) -> list[Doc]:
    """An overlay of :data:`OVERLAYS` rendered (once per session; each call gets its own copy to mutate)."""
    return copy.deepcopy(list(_rendered_overlay(name)))
