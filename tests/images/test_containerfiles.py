"""The Containerfiles' layering, read from their text (no build needed): the dependency layer is made from the
dependency list and constraints.txt alone, the trainer and Triton images share it, and the dependency list
(containers/requirements.py) is exactly what pyproject.toml declares."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.images.test_packaging import PYPROJECT, REPO, norm, requirements

CONTAINERS = REPO / "containers"
IMAGES = ("streamrec", "streamrec-trainer", "streamrec-triton")
SHARED_STAGES = ("requirements", "dependencies", "package")


def stages(name: str) -> dict[str, list[str]]:
    """Instructions (continuation lines joined, comments dropped) per stage name; the unnamed last one is 'final'."""
    text = (CONTAINERS / f"{name}.Containerfile").read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    instructions = re.split(r"\n(?=[A-Z]+ )", "\n".join(lines).replace("\\\n", " "))
    out: dict[str, list[str]] = {}
    current = "global"
    for instruction in (i.strip() for i in instructions if i.strip()):
        if instruction.startswith("FROM "):
            words = instruction.split()
            current = words[3] if len(words) == 4 and words[2] == "AS" else "final"
        out.setdefault(current, []).append(instruction)
    return out


def print_requirements(*args: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, str(CONTAINERS / "requirements.py"), str(REPO / "pyproject.toml"), *args],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def names(lines: list[str]) -> set[str]:
    return {norm(re.split(r"[<>=!~\[; ]", line, maxsplit=1)[0]) for line in lines if not line.startswith("-")}


@pytest.mark.parametrize("name", IMAGES)
def test_the_dependency_layer_is_made_from_the_dependency_list_and_constraints_only(name: str) -> None:
    dependencies = stages(name)["dependencies"]
    assert dependencies[0].startswith("FROM ${BASE_IMAGE} AS dependencies")
    copies = [i for i in dependencies if i.startswith(("COPY", "ADD"))]
    assert copies == [
        "COPY constraints.txt /opt/streamrec-deps/",
        "COPY --from=requirements /requirements.txt /opt/streamrec-deps/",
    ]
    # The requirements stage sees pyproject.toml, but only its printed dependency list reaches the layer.
    sources = " ".join(i for i in stages(name)["requirements"] if i.startswith("COPY"))
    assert not re.search(r"\b(streamrec|streams|consumers|serving|trainer)/", sources.replace("containers/", ""))


@pytest.mark.parametrize("name", IMAGES)
def test_the_final_stage_starts_from_the_dependencies_and_takes_the_package_last(name: str) -> None:
    final = stages(name)["final"]
    assert final[0] == "FROM dependencies"
    layers = [i for i in final if i.startswith(("COPY", "ADD", "RUN"))]
    assert layers[-1] == "COPY --from=package /staging/ /"
    package = stages(name)["package"]
    install = next(i for i in package if "--root /staging" in i)
    assert "--no-deps" in install


def test_trainer_and_triton_share_the_dependency_and_package_stages() -> None:
    trainer, triton = stages("streamrec-trainer"), stages("streamrec-triton")
    for stage in SHARED_STAGES:
        assert trainer[stage] == triton[stage], stage


@pytest.mark.parametrize("flavour", ["cpu", "gpu"])
def test_a_flavour_file_gives_the_dependencies_of_its_extra_without_the_package(flavour: str) -> None:
    lines = print_requirements(str(CONTAINERS / "flavours" / f"{flavour}.txt"))
    extra = "trainer" if flavour == "cpu" else "gpu"
    assert names(lines) == requirements(None) | requirements(extra)
    assert norm(PYPROJECT["project"]["name"]) not in names(lines)
    index_lines = [line for line in lines if line.startswith("--extra-index-url")]
    assert index_lines == ([] if flavour == "cpu" else ["--extra-index-url https://download.pytorch.org/whl/cu128"])


def test_without_a_flavour_the_list_is_the_base_install() -> None:
    assert names(print_requirements()) == requirements(None)


def test_a_flavour_file_naming_an_unknown_extra_or_no_package_is_refused(tmp_path: Path) -> None:
    unknown, unnamed = tmp_path / "unknown.txt", tmp_path / "unnamed.txt"
    unknown.write_text("streamrec[nonesuch]\n")
    unnamed.write_text("# no package line\n--extra-index-url https://example.invalid/simple\n")
    for path, reason in ((unknown, "no extra 'nonesuch'"), (unnamed, "names no streamrec line")):
        result = subprocess.run(
            [sys.executable, str(CONTAINERS / "requirements.py"), str(REPO / "pyproject.toml"), str(path)],
            capture_output=True,
            text=True,
        )
        assert result.returncode != 0 and reason in result.stderr, result.stderr
