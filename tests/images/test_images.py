"""Smoke tests inside the built images (``make images``), run with ``buildah run --isolation chroot``: the CLI
as a non-root user without build tools, the API answering against the local stack, the trainer's model code,
and tritonserver loading the model repository rendered from an export."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

import psutil
import pytest

from tests.conftest import StackHandle
from tests.streams.conftest import free_port

REPO = Path(__file__).resolve().parents[2]
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
BUILDAH = shutil.which("buildah")
OCI_LABELS = {"title", "version", "revision", "licenses", "source", "description"}
#: Compilers and Python package tools a final stage must not carry (the base's apt stays, as in python:slim).
BUILD_TOOLS = ("gcc", "cc", "c++", "make", "ld", "pip", "pip3")

#: Working containers are named streamrec-smoke-PID-N: scripts/build_images.sh removes those whose test is gone.
CONTAINER_NUMBERS = itertools.count()

pytestmark = pytest.mark.skipif(BUILDAH is None, reason="buildah not installed: image smoke tests skipped")


def image(name: str) -> str:
    return f"localhost/{name}:{VERSION}"


def inspect(name: str) -> dict:
    assert BUILDAH is not None
    result = subprocess.run([BUILDAH, "inspect", "--type", "image", image(name)], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"image {image(name)} not built: run `make images`")
    return json.loads(result.stdout)


@pytest.fixture
def container() -> Iterator[Callable[[str], str]]:
    """Working containers of built images, removed after the test."""
    assert BUILDAH is not None
    made: list[str] = []

    def make(name: str) -> str:
        inspect(name)
        ref = f"containers-storage:{image(name)}"
        ctr_name = f"streamrec-smoke-{os.getpid()}-{next(CONTAINER_NUMBERS)}"
        ctr = subprocess.run(
            [BUILDAH, "from", "--pull-never", "--quiet", "--name", ctr_name, ref], capture_output=True, text=True
        )
        assert ctr.returncode == 0, ctr.stderr
        made.append(ctr.stdout.strip())
        return made[-1]

    yield make
    for ctr in made:
        subprocess.run([BUILDAH, "rm", ctr], capture_output=True)


def run_args(ctr: str, cmd: Sequence[str], env: dict[str, str] | None, volumes: dict[Path, str] | None) -> list[str]:
    assert BUILDAH is not None
    args = [BUILDAH, "run", "--isolation", "chroot"]
    for key, value in (env or {}).items():
        args += ["--env", f"{key}={value}"]
    for host, inside in (volumes or {}).items():
        args += ["--volume", f"{host}:{inside}"]
    return [*args, ctr, "--", *cmd]


def run(ctr: str, *cmd: str, env: dict[str, str] | None = None, volumes: dict[Path, str] | None = None):
    return subprocess.run(run_args(ctr, cmd, env, volumes), capture_output=True, text=True, timeout=300)


@contextmanager
def serving(ctr: str, cmd: Sequence[str], log: Path, env: dict[str, str], volumes: dict[Path, str] | None = None):
    """A server inside the container, stopped (with every process it started) on exit."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(run_args(ctr, cmd, env, volumes), stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        tree = [proc.pid, *(p.pid for p in psutil.Process(proc.pid).children(recursive=True))]
        for pid in reversed(tree):
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def http(url: str, timeout: float = 10.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


def wait_for(check: Callable[[], bool], what: str, proc: subprocess.Popen, log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{what}: exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        if check():
            return
        time.sleep(0.5)
    raise AssertionError(f"{what}: not within {timeout_s}s:\n{log.read_text()[-3000:]}")


@pytest.mark.parametrize(
    ("name", "uid"), [("streamrec", 10001), ("streamrec-trainer", 10001), ("streamrec-triton", 1000)]
)
def test_image_runs_as_its_non_root_user_with_labels_and_no_build_tools(container, name: str, uid: int) -> None:
    labels = inspect(name)["OCIv1"]["config"]["Labels"]
    assert {k.removeprefix("org.opencontainers.image.") for k in labels} >= OCI_LABELS
    assert labels["org.opencontainers.image.title"] == name and labels["org.opencontainers.image.version"] == VERSION
    ctr = container(name)
    assert run(ctr, "id", "-u").stdout.strip() == str(uid)
    found = run(ctr, "sh", "-c", f"for t in {' '.join(BUILD_TOOLS)}; do command -v $t; done; true")
    assert found.stdout.split() == []
    result = run(ctr, "streamrec", "--help")
    assert result.returncode == 0 and result.stdout.startswith("usage: streamrec"), result.stderr


def dependency_layers(name: str) -> list[str]:
    """The image's layers up to and including the one that installed its dependencies."""
    oci = inspect(name)["OCIv1"]
    layered = [h for h in oci["history"] if not h.get("empty_layer")]
    assert len(layered) == len(oci["rootfs"]["diff_ids"])
    install = next(i for i, h in enumerate(layered) if "/opt/streamrec-deps/requirements.txt" in h["created_by"])
    return oci["rootfs"]["diff_ids"][: install + 1]


def test_trainer_and_triton_images_share_their_dependency_layer() -> None:
    """One multi-GB layer on disk for both, which a code change leaves in place."""
    assert dependency_layers("streamrec-trainer") == dependency_layers("streamrec-triton")
    assert dependency_layers("streamrec")[-1] != dependency_layers("streamrec-trainer")[-1]


def test_streamrec_image_carries_no_model_code(container) -> None:
    ctr = container("streamrec")
    probe = (
        "import importlib.util as u; print([m for m in ('torch', 'faiss', 'sentence_transformers') if u.find_spec(m)])"
    )
    assert run(ctr, "python3", "-c", probe).stdout.strip() == "[]"
    for command in ("api", "worker", "archive"):
        assert run(ctr, "streamrec", command, "--help").returncode == 0


def test_trainer_image_has_the_model_code_and_the_pipeline_steps(container) -> None:
    ctr = container("streamrec-trainer")
    probe = "import torch, faiss, sentence_transformers; print(torch.__version__, faiss.__version__)"
    result = run(ctr, "python3", "-c", probe)
    assert result.returncode == 0, result.stderr
    assert run(ctr, "streamrec", "train", "full", "--help").returncode == 0
    assert run(ctr, "python3", "-m", "trainer.pipelines.steps", "--help").returncode == 0


@pytest.mark.integration
def test_api_image_answers_healthz_and_a_recommendation_from_the_local_stack(
    container, stack: StackHandle, export_root: Path, tmp_path: Path
) -> None:
    ctr = container("streamrec")
    port = free_port()
    env = {
        "STREAMREC_API_AUTH_DISABLED": "true",
        "STREAMREC_API_HOST": "127.0.0.1",
        "STREAMREC_API_PORT": str(port),
        "KAFKA_BOOTSTRAP_SERVERS": stack.kafka.bootstrap,
        "REDIS_URL": stack.redis.effective_url,
        "TRITON_URL": "http://127.0.0.1:1",  # no Triton: the API answers from the export's popular items
        "STREAMREC_PATHS_EXPORT_ROOT": "/exports",
    }
    log = tmp_path / "api.log"
    with serving(ctr, ["streamrec", "api"], log, env, {export_root: "/exports:ro"}) as proc:
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: http(f"{base}/healthz")[0] == 200, "API in the image", proc, log, 120)
        status, body = http(f"{base}/v1/recommendations?user_id=image-smoke-user&k=5", timeout=30)
    assert status == 200, body
    answer = json.loads(body)
    assert len(answer["items"]) == 5 and "popularity_fallback" in answer["flags"]


@pytest.mark.integration
def test_triton_image_loads_the_model_repository_of_an_export(
    container, stack: StackHandle, export_root: Path, tmp_path: Path
) -> None:
    ctr = container("streamrec-triton")
    repository = tmp_path / "repository"
    repository.mkdir()
    repository.chmod(0o777)  # written by the image's user
    volumes = {export_root: "/exports:ro", repository: "/var/lib/triton"}
    env = {"REDIS_URL": stack.redis.effective_url, "STREAMREC_PATHS_EXPORT_ROOT": "/exports"}
    prepared = run(
        ctr, "streamrec", "serve", "prepare", "--no-load", "--repository", "/var/lib/triton/model_repository",
        env=env, volumes=volumes,
    )  # fmt: skip
    assert prepared.returncode == 0, prepared.stdout + prepared.stderr
    http_port, grpc_port, metrics_port = free_port(), free_port(), free_port()
    server = [
        "tritonserver", "--model-repository=/var/lib/triton/model_repository", "--model-control-mode=explicit",
        "--load-model=*", f"--http-port={http_port}", f"--grpc-port={grpc_port}", f"--metrics-port={metrics_port}",
        "--http-address=127.0.0.1", "--grpc-address=127.0.0.1", "--exit-on-error=false",
    ]  # fmt: skip
    log = tmp_path / "triton.log"
    with serving(ctr, server, log, env, volumes) as proc:
        base = f"http://127.0.0.1:{http_port}"
        wait_for(lambda: http(f"{base}/v2/health/ready")[0] == 200, "tritonserver in the image", proc, log, 300)
        request = urllib.request.Request(f"{base}/v2/repository/index", data=b"{}", method="POST")
        with urllib.request.urlopen(request, timeout=10) as answer:
            models = json.loads(answer.read())
    assert models and all(m.get("state") == "READY" for m in models), models
