"""The HTTP API under load while what serves its answers fails: a Valkey (Bloom filters and Feast rows) killed
and restarted, a Triton killed and started again. The servers are this module's own (own ports, own run
dir, a tiny export trained by the trainer's code), so the session stack stays untouched.

What the API promises: every call is answered 200, never a 5xx; while Valkey is down the answers pass
through with flags saying what is missing; while Triton is down they are the flagged popular-items
fallback; once the server is back, the answers are the normal ones again. (The worker's side of a Valkey
restart: ``test_valkey_restart.py``.)
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from serving.repository import prepare
from serving.settings import ServingSettings
from streamrec import artifacts as art
from streamrec.pipeline_client import BLOOM_UNAVAILABLE, FEATURES_UNAVAILABLE, POPULARITY_FALLBACK
from streamrec.settings import BloomSettings, FeastSettings, PathsSettings, RedisSettings, StackSettings, TritonSettings
from streamrec.stack.base import Component
from streamrec.stack.triton import TritonComponent
from streamrec.stack.valkey import ValkeyComponent
from streams.feast_store import apply_repo
from tests.conftest import StackHandle
from tests.faults.api_load import Answer, ApiProcess, Load, keep_calling, wait_for
from tests.faults.conftest import FAULT_RUN_ROOT, kill_9
from tests.serving.conftest import train_version
from tests.streams.conftest import free_port
from trainer.data import synthetic

pytestmark = [pytest.mark.integration, pytest.mark.slow]

K = 10
STORE_DOWN = {BLOOM_UNAVAILABLE, FEATURES_UNAVAILABLE}


@dataclass
class ServingStack:
    valkey: ValkeyComponent
    triton: TritonComponent
    api: ApiProcess
    users: list[str]
    export_version: str


@pytest.fixture(scope="module")
def serving_stack(stack: StackHandle) -> Iterator[ServingStack]:
    """Valkey (+bf, AOF) and Triton (fused layout, the tiny export) of this module, and the API in front."""
    if stack.redis.external or stack.triton.external:
        pytest.skip("these fault tests start their own Valkey and Triton; REDIS_URL or TRITON_URL is set")
    run_dir = FAULT_RUN_ROOT / f"serving-{uuid.uuid4().hex[:10]}"
    run_dir.mkdir(parents=True)
    started: list[Component] = []
    api: ApiProcess | None = None
    try:
        data_root, export_root = run_dir / "data", run_dir / "exports"
        config = synthetic.SyntheticConfig.preset("tiny", seed=13).with_sizes(users=200, items=120, events=3000, days=3)
        synthetic.prepare(data_root, config)
        version = train_version(data_root, export_root, run_dir, seed=3)
        valkey = ValkeyComponent(run_dir, RedisSettings(local_port=free_port()))
        valkey.start(stack.stack.stack.start_timeout_s, lambda _: None)
        started.append(valkey)
        feast = FeastSettings(project=f"fault{uuid.uuid4().hex[:8]}", registry=run_dir / "feast" / "registry.db")
        apply_repo(feast, valkey.settings, PathsSettings(archive_root=run_dir / "archive"))
        triton_settings = TritonSettings(
            http_port=free_port(),
            grpc_port=free_port(),
            metrics_port=free_port(),
            model_repository=run_dir / "models",
            request_timeout_s=2.0,
        )
        prepare(
            triton_settings.model_repository,
            export_root,
            ensemble=triton_settings.ensemble_model,
            serving=ServingSettings(layout="fused"),
            bloom=BloomSettings(),
            feast=feast,
            redis_url=valkey.settings.effective_url,
        )
        triton = TritonComponent(run_dir, StackSettings.load(), triton_settings)
        triton.start(180.0, lambda _: None)
        started.append(triton)
        api = ApiProcess(
            {
                "STREAMREC_TRITON_HTTP_PORT": str(triton_settings.http_port),
                "STREAMREC_TRITON_GRPC_PORT": str(triton_settings.grpc_port),
                # Twice the default: on a loaded 2-core box a slow answer is not what these tests are about.
                "STREAMREC_TRITON_REQUEST_TIMEOUT_S": "2",
                "STREAMREC_REDIS_LOCAL_PORT": str(valkey.settings.local_port),
                "STREAMREC_PATHS_EXPORT_ROOT": str(export_root),
                "STREAMREC_FEAST_PROJECT": feast.project,
                "STREAMREC_FEAST_REGISTRY": str(feast.registry),
            },
            run_dir / "api.log",
        )
        api.start()
        users = art.load_id_maps(art.current_dir(export_root)).user_ids[:50]
        yield ServingStack(valkey, triton, api, users, version)
    finally:
        if api is not None:
            api.stop()
        for component in reversed(started):
            component.stop()
        shutil.rmtree(run_dir, ignore_errors=True)


def recommend_for(users: list[str]) -> Callable[[httpx.Client, int], tuple[httpx.Response, Any]]:
    def call(client: httpx.Client, n: int) -> tuple[httpx.Response, Any]:
        user = users[n % len(users)]
        return client.get("/v1/recommendations", params={"user_id": user, "k": str(K)}), user

    return call


def normal(answer: Answer) -> bool:
    body = answer.body
    return answer.status == 200 and body["source"] == "triton" and not STORE_DOWN & set(body["flags"])


def assert_every_call_answered_200_with_k_items(load: Load) -> None:
    answers = load.snapshot()
    assert not load.server_errors(), load.server_errors()[:3]
    assert {a.status for a in answers} == {200}, [a for a in answers if a.status != 200][:3]
    assert all(len(a.body["items"]) == K for a in answers), [a.body for a in answers if len(a.body["items"]) != K][:2]


def answers_after(load: Load, at: float) -> list[Answer]:
    return [a for a in load.snapshot() if a.sent >= at]


def timeline(load: Load, outage: dict[str, float]) -> str:
    """Per second from the kill: calls sent, how many flagged store-down / answered by the fallback, slowest."""
    start = outage["killed"]
    marks = ", ".join(f"{name} at {at - start:+.1f}s" for name, at in outage.items())
    rows = [f"{marks}; per second sent: calls, store-down flagged, fallback, slowest answer"]
    by_second: dict[int, list[Answer]] = {}
    for answer in load.snapshot():
        by_second.setdefault(int((answer.sent - start) // 1), []).append(answer)
    for second in sorted(s for s in by_second if -3 <= s <= 30):
        got = by_second[second]
        ok = [a for a in got if a.status == 200]
        down = sum(bool(STORE_DOWN & set(a.body["flags"])) for a in ok)
        fallback = sum(a.body["source"] == "fallback" for a in ok)
        slowest = max(a.at - a.sent for a in got)
        rows.append(f"  {second:+3d}s: {len(got)}, {down}, {fallback}, {slowest:.2f}s")
    return "\n".join(rows)


@pytest.mark.timeout(240)
def test_valkey_killed_under_api_load_answers_pass_through_flagged_then_normal_answers(
    serving_stack: ServingStack,
) -> None:
    valkey, api = serving_stack.valkey, serving_stack.api
    outage: dict[str, float] = {}
    with keep_calling(api, recommend_for(serving_stack.users), threads=3, rate_per_thread=8.0) as load:
        wait_for(lambda: sum(map(normal, load.snapshot())) >= 20, "20 normal answers before the fault", 90)
        outage["killed"] = time.monotonic()
        kill_9(valkey)
        time.sleep(10.0)
        outage["restarting"] = time.monotonic()
        valkey.start(60.0, lambda _: None)  # replays its append-only file
        outage["back"] = time.monotonic()
        # Back to normal once the stages' pass-through period (store_retry_s) has ended.
        wait_for(lambda: sum(map(normal, answers_after(load, outage["back"] + 3.0))) >= 20, "normal answers again", 60)
    print(timeline(load, outage))
    assert api.alive(), api.tail()
    assert_every_call_answered_200_with_k_items(load)
    answers = load.snapshot()
    flagged = [a for a in answers if BLOOM_UNAVAILABLE in a.body["flags"]]
    assert all(a.sent >= outage["killed"] - 0.5 for a in flagged), "an answer was flagged before the kill"
    # Pass-through: Triton still ranks (no popular-items fallback) and flags that the seen-item exclusion and
    # the user features could not be used.
    fallback = [a for a in answers if a.body["source"] != "triton"]
    assert not fallback, f"{len(fallback)} answers were the fallback: {fallback[0].body['fallback_reason']}"
    sent_during = [a for a in answers if outage["killed"] + 0.5 <= a.sent <= outage["restarting"] - 0.5]
    assert sent_during, "no call was sent while Valkey was down"
    assert all(set(a.body["flags"]) >= STORE_DOWN for a in sent_during), [a.body["flags"] for a in sent_during]


@pytest.mark.timeout(300)
def test_triton_killed_under_api_load_answers_flagged_fallback_then_normal_answers_once_it_is_back(
    serving_stack: ServingStack,
) -> None:
    triton, api = serving_stack.triton, serving_stack.api
    outage: dict[str, float] = {}
    with keep_calling(api, recommend_for(serving_stack.users), threads=3, rate_per_thread=8.0) as load:
        wait_for(lambda: sum(map(normal, load.snapshot())) >= 20, "20 normal answers before the fault", 90)
        outage["killed"] = time.monotonic()
        kill_9(triton)
        wait_for(
            lambda: any(a.body.get("source") == "fallback" for a in answers_after(load, outage["killed"])),
            "a fallback answer after the kill",
            30,
        )
        time.sleep(3.0)
        outage["restarting"] = time.monotonic()
        triton.start(180.0, lambda _: None)
        outage["back"] = time.monotonic()
        first_normal = wait_for(
            lambda: any(map(normal, answers_after(load, outage["back"]))), "a normal answer after the restart", 60
        )
        time.sleep(2.0)
    print(timeline(load, outage))
    down, restart = outage["back"] - outage["killed"], outage["back"] - outage["restarting"]
    print(f"Triton down {down:.1f}s (restart {restart:.1f}s); normal again {first_normal - outage['back']:.1f}s later")
    assert_every_call_answered_200_with_k_items(load)
    during = load.between(outage["killed"] + 1.0, outage["restarting"])
    assert during, "no call was answered while Triton was down"
    for answer in during:
        body = answer.body
        assert body["source"] == "fallback" and POPULARITY_FALLBACK in body["flags"], body
        assert body["fallback_reason"] and body["model_version"] == serving_stack.export_version, body
    # Once a normal answer came back, every later one is normal too (the client does not flap).
    settled = answers_after(load, first_normal + 0.5)
    assert settled and all(map(normal, settled)), [a.body for a in settled if not normal(a)][:2]
    assert api.alive(), api.tail()
