"""NVIDIA Triton Inference Server, the binary bundled in the nvidia-pytriton wheel.

The wheel is downloaded (not installed: its numpy<2 pin would clash with Feast) and unpacked into the
cache. Python-backend stubs embed their own libpython and ignore PYTHONPATH, so each stage's model.py
extends ``sys.path`` from two variables set here: ``STREAMREC_STUB_OVERLAY`` (numpy 1.26 + a matching
pyarrow, because the 2.51 stub's pybind11 numpy bridge corrupts tensors with numpy 2) and
``STREAMREC_STUB_SITE`` (this interpreter's site-packages, processed as a site dir so editable installs
resolve).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from streamrec.errors import StackError
from streamrec.settings import StackSettings, TritonSettings
from streamrec.stack.base import Component, Health

#: Packages the python-backend stub must see before the project's site-packages.
STUB_OVERLAY_PACKAGES = ("numpy==1.26.4", "pyarrow==20.0.0")
STUB_OVERLAY_ENV = "STREAMREC_STUB_OVERLAY"
STUB_SITE_ENV = "STREAMREC_STUB_SITE"


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def http_post(url: str, body: bytes = b"{}", timeout: float = 60.0) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class TritonComponent(Component):
    name = "triton"

    def __init__(self, run_dir: Path, stack: StackSettings, settings: TritonSettings) -> None:
        super().__init__(run_dir)
        self.stack = stack
        self.settings = settings
        version_tag = stack.triton_wheel.split("==")[-1]
        self.home = stack.cache_dir / f"pytriton-{version_tag}"
        self.server_dir = self.home / "tritonserver"
        self.libs_dir = self.home / "nvidia_pytriton.libs"
        self.overlay_dir = self.home / "stub-overlay"

    @property
    def external(self) -> bool:
        return self.settings.external

    def install(self, progress: Callable[[str], None]) -> None:
        marker = self.home / ".complete"
        if marker.is_file():
            return
        self.home.mkdir(parents=True, exist_ok=True)
        log = self.home / "install.log"
        download = self.home / "wheel"
        progress(f"fetching the tritonserver binary from the {self.stack.triton_wheel} wheel")
        self._pip(["download", "--no-deps", "-d", str(download), self.stack.triton_wheel], log)
        wheels = sorted(download.glob("*.whl"))
        if not wheels:
            raise StackError(self.name, f"pip download of {self.stack.triton_wheel} produced no wheel", str(log))
        with zipfile.ZipFile(wheels[-1]) as archive:
            members = [
                m for m in archive.namelist() if m.startswith(("pytriton/tritonserver/", "nvidia_pytriton.libs/"))
            ]
            archive.extractall(self.home / "unpacked", members)
        shutil.rmtree(self.server_dir, ignore_errors=True)
        shutil.rmtree(self.libs_dir, ignore_errors=True)
        shutil.move(str(self.home / "unpacked" / "pytriton" / "tritonserver"), self.server_dir)
        shutil.move(str(self.home / "unpacked" / "nvidia_pytriton.libs"), self.libs_dir)
        shutil.rmtree(self.home / "unpacked", ignore_errors=True)
        shutil.rmtree(download, ignore_errors=True)
        stub_version = f"{sys.version_info.major}.{sys.version_info.minor}"
        stub = self.server_dir / "python_backend_stubs" / stub_version / "triton_python_backend_stub"
        if not stub.is_file():
            raise StackError(self.name, f"the wheel has no python-backend stub for Python {stub_version}")
        target = self.server_dir / "backends" / "python" / "triton_python_backend_stub"
        shutil.copy2(stub, target)
        for binary in (self.server_dir / "bin" / "tritonserver", target):
            binary.chmod(0o755)
        progress("installing the python-backend stub overlay (numpy 1.26)")
        self._pip(["install", "--no-deps", "--target", str(self.overlay_dir), *STUB_OVERLAY_PACKAGES], log)
        marker.write_text(self.stack.triton_wheel)

    def _pip(self, args: list[str], log: Path) -> None:
        with open(log, "ab") as out:
            result = subprocess.run(
                [sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                check=False,
            )
        if result.returncode != 0:
            raise StackError(self.name, f"pip {args[0]} failed", str(log))

    def stub_environment(self) -> dict[str, str]:
        return {
            STUB_OVERLAY_ENV: str(self.overlay_dir.resolve()),
            STUB_SITE_ENV: sysconfig.get_paths()["purelib"],
            "LD_LIBRARY_PATH": os.pathsep.join(
                p for p in (str(self.libs_dir.resolve()), os.environ.get("LD_LIBRARY_PATH", "")) if p
            ),
        }

    def prepare(self) -> None:
        self.settings.model_repository.mkdir(parents=True, exist_ok=True)

    def ports(self) -> list[int]:
        return [self.settings.http_port, self.settings.grpc_port, self.settings.metrics_port]

    def command(self) -> tuple[Sequence[str], Mapping[str, str]]:
        s = self.settings
        return [
            str(self.server_dir / "bin" / "tritonserver"),
            f"--model-repository={s.model_repository.resolve()}",
            f"--backend-directory={(self.server_dir / 'backends').resolve()}",
            f"--http-port={s.http_port}",
            f"--grpc-port={s.grpc_port}",
            f"--metrics-port={s.metrics_port}",
            "--http-address=127.0.0.1",
            "--grpc-address=127.0.0.1",
            "--model-control-mode=explicit",
            "--load-model=*",
            "--strict-readiness=false",
            "--exit-on-error=false",
            "--log-verbose=0",
        ], self.stub_environment()

    def models(self) -> list[dict[str, str]]:
        status, body = http_post(f"{self.settings.http_url}/v2/repository/index", b"{}", timeout=2.0)
        if status != 200:
            return []
        return list(json.loads(body or b"[]"))

    def health(self) -> Health:
        try:
            status, _ = http_get(f"{self.settings.http_url}/v2/health/ready")
        except OSError as exc:
            return Health(False, f"unreachable: {exc}")
        if status != 200:
            return Health(False, f"/v2/health/ready answered {status}")
        try:
            models = self.models()
        except (OSError, ValueError):
            models = []
        ready = sorted(m["name"] for m in models if m.get("state") == "READY")
        failed = sorted(m["name"] for m in models if m.get("state") not in (None, "READY"))
        detail = f"ready at {self.settings.http_url}; {len(ready)} model(s) ready"
        if failed:
            detail += f", not ready: {', '.join(failed)}"
        return Health(True, detail)
