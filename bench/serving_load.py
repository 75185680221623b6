"""Load generator for the recommendation pipeline: open loop (fixed arrival rate) or closed loop (N clients),
against Triton's gRPC ensemble directly or the HTTP API; latency p50/p95/p99, throughput, per-stage breakdown.

    # 1. stack with Triton, and the model repository for an export (this script can prepare it):
    .venv/bin/python bench/serving_load.py --export-root EXPORTS --prepare
    # 2. runs (each prints JSON; --out writes it):
    .venv/bin/python bench/serving_load.py --target triton --mode open --rate 200 --duration 30
    .venv/bin/python bench/serving_load.py --target triton --mode closed --concurrency 8 --duration 30
    .venv/bin/python bench/serving_load.py --target api --url http://127.0.0.1:8080 --api-key KEY --mode open --rate 200

Open loop: request i is due at t0 + i / rate and its latency counts from that due time, so a server that falls
behind is charged for the queueing (no coordinated omission). Users: ids of the export (a share anonymous).
``--prepare`` writes a throwaway Feast project with a stream row for every user (so the one Feast read per
request hits real data) and switches Triton's repository to the CURRENT export.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from serving_common import dump, feast_repo, git_rev, machine, percentiles

from serving.pipeline.export import ExportReader
from serving.settings import ServingSettings
from streamrec.pipeline_client import AsyncPipelineClient, RecommendRequest, RecommendResult
from streamrec.settings import BloomSettings, FeastSettings, PathsSettings, RedisSettings, TritonSettings

DEVICES = ("mobile", "desktop", "tablet")


def prepare(export_root: Path, work: Path) -> None:
    from serving.repository import ModelControl
    from serving.repository import prepare as prepare_repository

    export = ExportReader.current(export_root)
    redis_url = RedisSettings.load().effective_url
    project = f"bench_{uuid.uuid4().hex[:8]}"
    repo = feast_repo(work, redis_url, project, export)
    triton = TritonSettings.load()
    control = ModelControl(triton.http_url)
    result = prepare_repository(
        triton.model_repository,
        export_root,
        ensemble=triton.ensemble_model,
        serving=ServingSettings.load(),
        bloom=BloomSettings.load(),
        feast=FeastSettings.load(repo=repo, project=project),
        redis_url=redis_url,
        control=control,
        progress=print,
    )
    print(result.line())
    print(f"API and later prepares: STREAMREC_FEAST_REPO={repo} STREAMREC_FEAST_PROJECT={project}")


class Target:
    async def call(self, request: RecommendRequest) -> tuple[bool, dict[str, float], list[str]]:
        raise NotImplementedError

    async def close(self) -> None:
        return None


class TritonTarget(Target):
    def __init__(self, export_root: Path) -> None:
        self.client = AsyncPipelineClient(TritonSettings.load(), export_root=export_root)

    async def call(self, request: RecommendRequest) -> tuple[bool, dict[str, float], list[str]]:
        result: RecommendResult = await self.client.recommend(request)
        return result.source == "triton", result.timings_ms, result.flags

    async def close(self) -> None:
        await self.client.close()


class ApiTarget(Target):
    """GET /v1/recommendations over keep-alive connections. aiohttp by default: httpx costs the load generator
    about twice the CPU per request, which on a 2-core box is taken from the server under test."""

    def __init__(self, url: str, api_key: str | None, client: str = "aiohttp") -> None:
        self.url = url.rstrip("/")
        self.headers = {"X-API-Key": api_key} if api_key else {}
        self.client = client
        self.session: Any = None

    async def _get(self, params: dict[str, Any]) -> tuple[int, Any]:
        if self.session is None:
            if self.client == "aiohttp":
                import aiohttp

                self.session = aiohttp.ClientSession(
                    headers=self.headers,
                    connector=aiohttp.TCPConnector(limit=256),
                    timeout=aiohttp.ClientTimeout(total=5.0),
                )
            else:
                import httpx

                limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
                self.session = httpx.AsyncClient(headers=self.headers, limits=limits, timeout=5.0)
        if self.client == "aiohttp":
            async with self.session.get(f"{self.url}/v1/recommendations", params=params) as response:
                return response.status, await response.json() if response.status == 200 else None
        response = await self.session.get(f"{self.url}/v1/recommendations", params=params)
        return response.status_code, response.json() if response.status_code == 200 else None

    async def call(self, request: RecommendRequest) -> tuple[bool, dict[str, float], list[str]]:
        params: dict[str, Any] = {"k": request.k, "device": request.device}
        if request.user_id:
            params["user_id"] = request.user_id
        if request.timings:
            params["timings"] = "true"
        status, body = await self._get(params)
        if status != 200:
            return False, {}, []
        return body["source"] == "triton", body.get("timings_ms") or {}, body["flags"]

    async def close(self) -> None:
        if self.session is not None:
            await (self.session.close() if self.client == "aiohttp" else self.session.aclose())


def make_requests(
    export: ExportReader, n: int, k: int, anonymous: float, timings: bool, seed: int
) -> list[RecommendRequest]:
    rng = np.random.default_rng(seed)
    users = export.id_maps.user_ids
    out = []
    for i in range(n):
        user = None if rng.random() < anonymous else users[int(rng.integers(len(users)))]
        out.append(RecommendRequest(user_id=user, k=k, device=DEVICES[i % 3], timings=timings))
    return out


async def run(
    target: Target, requests: list[RecommendRequest], mode: str, rate: float, concurrency: int
) -> dict[str, Any]:
    latencies: list[float] = []
    stage_times: dict[str, list[float]] = {}
    failures = 0
    flags: dict[str, int] = {}

    async def one(request: RecommendRequest, due: float) -> None:
        nonlocal failures
        try:
            ok, timings, got_flags = await target.call(request)
        except Exception:
            ok, timings, got_flags = False, {}, []
        latencies.append((time.perf_counter() - due) * 1000)
        if not ok:
            failures += 1
        for name, value in timings.items():
            stage_times.setdefault(name, []).append(value)
        for flag in got_flags:
            flags[flag] = flags.get(flag, 0) + 1

    start = time.perf_counter()
    cpu_start = time.process_time()
    if mode == "open":
        tasks = []
        for i, request in enumerate(requests):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(request, due)))
        await asyncio.gather(*tasks)
    else:
        queue = list(reversed(requests))

        async def worker() -> None:
            while queue:
                request = queue.pop()
                await one(request, time.perf_counter())

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    worst = sorted(range(len(latencies)), key=latencies.__getitem__)[-5:]
    return {
        "_latencies": latencies,
        "requests": len(requests),
        "seconds": round(elapsed, 2),
        "throughput_rps": round(len(requests) / elapsed, 1),
        "failures_or_fallbacks": failures,
        "latency_ms": percentiles(latencies),
        # Completion order index of the five slowest requests: clustered at the start = warm-up, spread = noise.
        "slowest_at": [round(i / max(len(latencies), 1), 3) for i in sorted(worst)],
        "load_generator_cpu_ms_per_request": round((time.process_time() - cpu_start) * 1000 / len(requests), 3),
        "flags": flags,
        "stage_mean_ms": {k: round(float(np.mean(v)), 3) for k, v in stage_times.items()},
        "stage_p99_ms": {k: round(float(np.percentile(v, 99)), 3) for k, v in stage_times.items()},
    }


async def amain(args: argparse.Namespace) -> dict[str, Any]:
    export = ExportReader.current(args.export_root)
    target: Target = (
        TritonTarget(args.export_root)
        if args.target == "triton"
        else ApiTarget(args.url, args.api_key, args.http_client)
    )
    n = int(args.rate * args.duration) if args.mode == "open" else args.requests
    warm = make_requests(export, 200, args.k, args.anonymous, False, seed=99)
    await run(target, warm, "closed", 0, 4)
    result = await run(
        target,
        make_requests(export, n, args.k, args.anonymous, args.timings, args.seed),
        args.mode,
        args.rate,
        args.concurrency,
    )
    await target.close()
    return {
        "bench": "serving_load",
        "target": args.target,
        "mode": args.mode,
        "rate": args.rate if args.mode == "open" else None,
        "concurrency": args.concurrency if args.mode == "closed" else None,
        "k": args.k,
        "anonymous_share": args.anonymous,
        "export": export.version,
        "n_items": export.metadata.n_items,
        "machine": machine(),
        "git": git_rev(),
        **result,
    }


def run_processes(args: argparse.Namespace) -> dict[str, Any]:
    """Run N copies of this script at rate / N each (different seeds) and merge their raw latencies."""
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        children = []
        for i in range(args.processes):
            argv = list(sys.argv[1:])
            for flag in ("--processes", "--out", "--rate", "--seed"):
                if flag in argv:
                    at = argv.index(flag)
                    del argv[at : at + 2]
            argv += ["--rate", str(args.rate / args.processes), "--seed", str(args.seed + i)]
            argv += ["--raw-out", f"{tmp}/{i}.json"]
            children.append(subprocess.Popen([sys.executable, __file__, *argv], stdout=subprocess.DEVNULL))
        for child in children:
            if child.wait() != 0:
                raise SystemExit(f"a load process exited with {child.returncode}")
        parts = [json.loads(Path(f"{tmp}/{i}.json").read_text()) for i in range(args.processes)]
    latencies = [v for part in parts for v in part["_latencies"]]
    flags: dict[str, int] = {}
    for part in parts:
        for name, count in part["flags"].items():
            flags[name] = flags.get(name, 0) + count
    merged = {k: v for k, v in parts[0].items() if k not in ("_latencies", "slowest_at")}
    merged.update(
        processes=args.processes,
        rate=args.rate,
        requests=len(latencies),
        throughput_rps=round(sum(part["throughput_rps"] for part in parts), 1),
        failures_or_fallbacks=sum(part["failures_or_fallbacks"] for part in parts),
        latency_ms=percentiles(latencies),
        flags=flags,
        load_generator_cpu_ms_per_request=round(
            float(np.mean([part["load_generator_cpu_ms_per_request"] for part in parts])), 3
        ),
    )
    return merged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--export-root", type=Path, default=PathsSettings.load().export_root)
    parser.add_argument("--prepare", action="store_true", help="set up Feast rows and Triton's repository, then exit")
    parser.add_argument("--work", type=Path, default=Path(".streamrec/bench-feast"), help="Feast repo for --prepare")
    parser.add_argument("--target", choices=("triton", "api"), default="triton")
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--api-key")
    parser.add_argument("--http-client", choices=("aiohttp", "httpx"), default="aiohttp", help="API target's client")
    parser.add_argument("--mode", choices=("open", "closed"), default="open")
    parser.add_argument("--rate", type=float, default=200.0, help="open loop: requests per second")
    parser.add_argument("--duration", type=float, default=30.0, help="open loop: seconds")
    parser.add_argument("--concurrency", type=int, default=8, help="closed loop: clients")
    parser.add_argument("--requests", type=int, default=3000, help="closed loop: total requests")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--anonymous", type=float, default=0.1, help="share of anonymous requests")
    parser.add_argument("--timings", action="store_true", help="ask for per-stage timings")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path)
    parser.add_argument(
        "--processes", type=int, default=1, help="open loop: split the rate over N load processes (one is CPU-bound)"
    )
    parser.add_argument("--raw-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.processes > 1:
        dump(run_processes(args), args.out)
        return
    if args.prepare:
        prepare(args.export_root, args.work)
        return
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    result = asyncio.run(amain(args))
    if args.raw_out is not None:
        args.raw_out.write_text(json.dumps(result))
        return
    result.pop("_latencies")
    dump(result, args.out)


if __name__ == "__main__":
    main()
