"""Every metric the dashboard and the alerts read is exposed by the real components: a worker, the archiver,
the API, Triton and the pipelines' success report, scraped live against the local stack."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from streamrec.client import InteractionProducer
from streamrec.schemas.events import InteractionEvent
from streamrec.settings import TritonSettings
from tests.conftest import StackHandle
from tests.monitoring.promql import SYNTHETIC, alert_rules, dashboard_exprs, metric_names, used_metrics
from tests.streams.conftest import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
PROBE_MODEL = "monitoring_probe"
#: Labels Prometheus or the Pushgateway attach at scrape time.
TARGET_LABELS = {"job", "instance", "pod", "namespace", "pipeline", "le"}

PROBE_CONFIG = f"""name: "{PROBE_MODEL}"
backend: "python"
max_batch_size: 0
input [ {{ name: "X" data_type: TYPE_FP32 dims: [ 1 ] }} ]
output [ {{ name: "Y" data_type: TYPE_FP32 dims: [ 1 ] }} ]
instance_group [ {{ kind: KIND_CPU count: 1 }} ]
"""
PROBE_MODEL_PY = """import os, sys
if os.environ.get("STREAMREC_STUB_OVERLAY"): sys.path.insert(0, os.environ["STREAMREC_STUB_OVERLAY"])
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [
            pb_utils.InferenceResponse([pb_utils.Tensor("Y", pb_utils.get_input_tensor_by_name(r, "X").as_numpy())])
            for r in requests
        ]
"""


def get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def post(url: str, body: bytes) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_for(check: Any, what: str, timeout_s: float = 60.0, proc: subprocess.Popen[bytes] | None = None) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what}: the process exited with {proc.returncode}")
        try:
            value = check()
        except OSError:
            value = None
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"{what}: not within {timeout_s}s")


class Exposition:
    """Metric families and samples scraped from one or more endpoints."""

    def __init__(self) -> None:
        self.names: set[str] = set()
        self.labels: dict[str, set[str]] = {}

    def add(self, text: str) -> None:
        for family in text_string_to_metric_families(text):
            self.names.add(family.name)
            suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}.get(family.type, [])
            self.names |= {family.name + s for s in suffixes}
            for sample in family.samples:
                self.names.add(sample.name)
                self.labels.setdefault(sample.name, set()).update(sample.labels)


def labels_read(expr: str) -> set[str]:
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    names = {n.strip() for group in re.findall(r"\b(?:by|on|without)\s*\(([^)]*)\)", text) for n in group.split(",")}
    names |= {m for group in re.findall(r"\{([^}]*)\}", text) for m in re.findall(r"([a-zA-Z_]\w*)\s*[=!]~?", group)}
    return {n for n in names if n} - TARGET_LABELS


@pytest.fixture
def probe_model(triton: TritonSettings) -> Iterator[str]:
    """A one-tensor python model, loaded into the session's Triton and unloaded after."""
    model_dir = triton.model_repository / PROBE_MODEL
    (model_dir / "1").mkdir(parents=True, exist_ok=True)
    (model_dir / "config.pbtxt").write_text(PROBE_CONFIG)
    (model_dir / "1" / "model.py").write_text(PROBE_MODEL_PY)
    status, body = post(f"{triton.http_url}/v2/repository/models/{PROBE_MODEL}/load", b"{}")
    assert status == 200, body
    try:
        yield PROBE_MODEL
    finally:
        post(f"{triton.http_url}/v2/repository/models/{PROBE_MODEL}/unload", b"{}")
        for path in sorted(model_dir.rglob("*"), reverse=True):
            path.rmdir() if path.is_dir() else path.unlink()
        model_dir.rmdir()


class PushCapture(BaseHTTPRequestHandler):
    pushed: list[tuple[str, str]] = []

    def do_PUT(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
        PushCapture.pushed.append((self.path, body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def scrape_worker(worker_factory: Any, exposed: Exposition) -> list[str]:
    worker = worker_factory(partitions=2)
    worker.start()
    events = [InteractionEvent.new(f"m-u{n % 7}", f"it{n % 40}", "view") for n in range(200)]
    with InteractionProducer(worker.stack.kafka, topic=worker.topics["interactions"]) as producer:
        producer.send_many(events)
        producer.send_raw(b"x", b"{not json")  # one dead letter, so the DLQ series has its labels
    worker.wait_idle(partitions=2)
    exposed.add(get(f"http://127.0.0.1:{worker.port}/metrics")[1].decode())
    return [worker.topics["interactions"], worker.env["STREAMREC_STREAMS_DLQ_TOPIC"]]


def scrape_archiver(stack: StackHandle, topic: str, dlq: str, tmp_path: Path, exposed: Exposition) -> None:
    port = free_port()
    env = {
        **os.environ,
        "STREAMREC_PATHS_ARCHIVE_ROOT": str(tmp_path / "archive"),
        "STREAMREC_CONSUMERS_ARCHIVER_TOPIC": topic,
        "STREAMREC_CONSUMERS_ARCHIVER_GROUP": f"monitoring-{uuid.uuid4().hex[:8]}",
        "STREAMREC_KAFKA_DLQ_TOPIC": dlq,
        "STREAMREC_CONSUMERS_ROLL_MAX_AGE_S": "0.5",
        "STREAMREC_CONSUMERS_ARCHIVER_METRICS_PORT": str(port),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamrec.cli.main", "archive"], cwd=REPO, env=env, stdout=subprocess.DEVNULL
    )
    try:

        def written() -> str | None:
            text = get(f"http://127.0.0.1:{port}/metrics")[1].decode()
            return text if re.search(r"^streamrec_archiver_events_total [1-9]", text, re.M) else None

        exposed.add(wait_for(written, "archiver metrics after a write", proc=proc))
    finally:
        proc.terminate()
        proc.wait(30)


def scrape_api(exposed: Exposition) -> None:
    port = free_port()
    env = {**os.environ, "STREAMREC_API_AUTH_DISABLED": "true", "STREAMREC_API_PORT": str(port)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamrec.cli.main", "api"], cwd=REPO, env=env, stdout=subprocess.DEVNULL
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: get(f"{base}/healthz")[0] == 200, "API /healthz", proc=proc)
        for user in ("m-u1", "m-u2"):
            get(f"{base}/v1/recommendations?user_id={user}&k=5", timeout=30)
        exposed.add(get(f"{base}/metrics")[1].decode())
    finally:
        proc.terminate()
        proc.wait(30)


def scrape_triton(triton: TritonSettings, model: str, exposed: Exposition) -> None:
    body = {"inputs": [{"name": "X", "shape": [1], "datatype": "FP32", "data": [1.5]}]}
    status, answer = post(f"{triton.http_url}/v2/models/{model}/infer", json.dumps(body).encode())
    assert status == 200 and json.loads(answer)["outputs"][0]["data"] == [1.5], answer
    exposed.add(get(f"http://127.0.0.1:{triton.metrics_port}/metrics")[1].decode())


def capture_success_report(exposed: Exposition) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), PushCapture)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        gateway = f"http://127.0.0.1:{server.server_address[1]}"
        cli = [sys.executable, "-m", "streamrec.cli.main", "report-success", "--pipeline", "fine-tune"]
        result = subprocess.run([*cli, "--gateway", gateway], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
    finally:
        server.shutdown()
    path, body = PushCapture.pushed[-1]
    assert path == "/metrics/job/streamrec-training/pipeline/fine-tune"
    exposed.add(body)


def test_every_metric_the_dashboard_and_alerts_read_is_exposed_live(
    stack: StackHandle, triton: TritonSettings, probe_model: str, worker_factory: Any, tmp_path: Path
) -> None:
    exposed = Exposition()
    topic, dlq = scrape_worker(worker_factory, exposed)
    scrape_archiver(stack, topic, dlq, tmp_path, exposed)
    scrape_api(exposed)
    scrape_triton(triton, probe_model, exposed)
    capture_success_report(exposed)

    assert used_metrics() - exposed.names == set()
    # The labels the expressions group and filter by exist on the series they read (where samples exist).
    wrong = {}
    for expr in [r["expr"] for r in alert_rules()] + dashboard_exprs():
        metrics = [m for m in metric_names(expr) - SYNTHETIC if exposed.labels.get(m)]
        available = set().union(*(exposed.labels[m] for m in metrics)) if metrics else set()
        if metrics and labels_read(expr) - available:
            wrong[expr] = sorted(labels_read(expr) - available)
    assert wrong == {}
