"""The Triton model repository: rendered for one export version, switched to a new one without downtime.

Ensemble layout (``STREAMREC_SERVING_LAYOUT=ensemble``; under ``TritonSettings().model_repository``)::

    recommend/config.pbtxt                 ensemble; each step pins ``model_version: <slot>``
    recommend/1/                           (empty version dir the ensemble needs)
    recommend_<stage>/config.pbtxt         python backend, version_policy all
    recommend_<stage>/<slot>/model.py      the one generic model (serving/model_repository/model.py)
    recommend_<stage>/<slot>/stage.json    StageConfig: export dir and version, settings, Redis URL
    .streamrec-serving.json                state: current slot and export version

Publishing export version v as slot s+1 (hot reload): write every stage's ``<s+1>/`` dir and load each
stage (Triton adds version s+1 while s keeps serving); write the ensemble pinned to s+1 and load it (Triton
swaps the ensemble only once it is ready; in-flight requests finish on slot s); after a grace period delete
slot s and load the stages again, which unloads it. No request sees two export versions.

The fused layout (the default, ``STREAMREC_SERVING_LAYOUT=fused``) serves the same stages from one
python-backend model under the ensemble's name, so clients do not change::

    recommend/config.pbtxt                 python backend, the ensemble's inputs and outputs, latest version
    recommend/<slot>/model.py, stage.json  the whole pipeline in one stub process

There a new slot is loaded as the model's newest version: Triton serves the old version until the new one is
ready, then unloads it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import shutil
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from serving.pipeline import model_config
from serving.pipeline.config import STAGE_CONFIG_FILE, StageConfig
from serving.pipeline.stages import STAGES, stage_model_name
from serving.settings import ServingSettings
from streamrec import artifacts as art
from streamrec.errors import ConfigError, StoreUnavailableError
from streamrec.settings import BloomSettings, FeastSettings

#: The one python-backend model.py every model version gets (it takes its stage from the model's name).
MODEL_TEMPLATE = Path(__file__).parent / "model_repository" / "model.py"
STATE_FILE = ".streamrec-serving.json"


def _differs(path: Path, stage_config: StageConfig) -> bool:
    """The slot's stage.json is not this config. One this version cannot read (written by another version of
    the settings, say) differs too: a new slot is written rather than the old one read."""
    try:
        return StageConfig.read(path) != stage_config
    except (ValueError, OSError):  # pydantic's ValidationError is a ValueError; a torn or missing file
        return True


def render_stage_config(stage: str, serving: ServingSettings) -> str:
    return model_config.render(model_config.stage_model(stage, serving))


def render_fused_config(name: str, serving: ServingSettings) -> str:
    return model_config.render(model_config.fused_model(name, serving))


def render_ensemble_config(name: str, slot: int, serving: ServingSettings) -> str:
    return model_config.render(model_config.ensemble_model(name, slot, serving))


@dataclass
class RepositoryState:
    slot: int = 0
    export_version: str = ""
    export_dir: str = ""
    layout: str = "ensemble"

    @classmethod
    def read(cls, repo: Path) -> RepositoryState:
        try:
            return cls(**json.loads((repo / STATE_FILE).read_text()))
        except (FileNotFoundError, json.JSONDecodeError, TypeError):
            return cls()

    def write(self, repo: Path) -> None:
        tmp = repo / f".{STATE_FILE}.tmp"
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        tmp.replace(repo / STATE_FILE)


class ModelControl:
    """Triton's model-control and health endpoints over HTTP."""

    def __init__(self, base_url: str, timeout_s: float = 180.0) -> None:
        import httpx

        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(timeout=timeout_s)
        self._httpx = httpx

    def live(self) -> bool:
        try:
            return self._http.get(f"{self.base_url}/v2/health/live", timeout=2.0).status_code == 200
        except self._httpx.HTTPError:
            return False

    def load(self, name: str) -> None:
        try:
            response = self._http.post(f"{self.base_url}/v2/repository/models/{name}/load", json={})
        except self._httpx.HTTPError as exc:
            raise StoreUnavailableError(f"Triton at {self.base_url} unreachable while loading {name}: {exc}") from None
        if response.status_code != 200:
            detail = response.text[:500]
            raise StoreUnavailableError(f"Triton could not load {name}: HTTP {response.status_code} {detail}")

    def unload(self, name: str) -> None:
        try:
            self._http.post(f"{self.base_url}/v2/repository/models/{name}/unload", json={})
        except self._httpx.HTTPError as exc:
            raise StoreUnavailableError(
                f"Triton at {self.base_url} unreachable while unloading {name}: {exc}"
            ) from None

    def index(self) -> list[dict[str, str]]:
        try:
            response = self._http.post(f"{self.base_url}/v2/repository/index", json={}, timeout=5.0)
        except self._httpx.HTTPError:
            return []
        return list(response.json()) if response.status_code == 200 else []

    def ready(self, name: str) -> bool:
        try:
            return self._http.get(f"{self.base_url}/v2/models/{name}/ready", timeout=2.0).status_code == 200
        except self._httpx.HTTPError:
            return False

    def close(self) -> None:
        self._http.close()


@dataclass
class PrepareResult:
    export_version: str
    slot: int
    changed: bool
    loaded: bool
    repository: Path

    def line(self) -> str:
        what = "switched to" if self.changed else "already serving"
        where = "loaded in Triton" if self.loaded else "Triton not reachable: loads at its next start"
        return f"{what} export {self.export_version} (slot {self.slot}) in {self.repository}; {where}"


def remove(repo: Path, ensemble: str = "recommend", control: ModelControl | None = None) -> None:
    """Unload (if Triton is reachable) and delete the ensemble and its stages from the repository."""
    repo = Path(repo)
    names = [ensemble, *(stage_model_name(s) for s in STAGES)]
    if control is not None and control.live():
        for name in names:
            control.unload(name)
    for name in names:
        shutil.rmtree(repo / name, ignore_errors=True)
    (repo / STATE_FILE).unlink(missing_ok=True)


@contextlib.contextmanager
def _locked(repo: Path) -> Iterator[None]:
    repo.mkdir(parents=True, exist_ok=True)
    with open(repo / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _write_if_changed(path: Path, text: str) -> bool:
    if path.is_file() and path.read_text() == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return True


def _slot_export_exists(repo: Path, stage: str, slot: int) -> bool:
    try:
        config = json.loads((repo / stage_model_name(stage) / str(slot) / STAGE_CONFIG_FILE).read_text())
        return (Path(config["export_dir"]) / art.METADATA_FILE).is_file()
    except (OSError, ValueError, KeyError):
        return False


def _versions(model_dir: Path) -> list[int]:
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


def _stage_versions(repo: Path, stage: str) -> list[int]:
    return _versions(repo / stage_model_name(stage))


def prepare(
    repo: Path,
    export_root: Path,
    *,
    ensemble: str = "recommend",
    serving: ServingSettings | None = None,
    bloom: BloomSettings | None = None,
    feast: FeastSettings | None = None,
    redis_url: str,
    control: ModelControl | None = None,
    version: str | None = None,
    force: bool = False,
    progress: Callable[[str], None] = lambda _: None,
) -> PrepareResult:
    """Materialise the repository for ``version`` (default: CURRENT) and, if Triton is reachable, switch to it."""
    serving = serving or ServingSettings.load()
    # Stages run with Triton's working directory: every path they read must be absolute.
    feast = (feast or FeastSettings.load()).resolved()
    bloom = bloom or BloomSettings.load()
    repo = Path(repo).resolve()
    version = version or art.read_current(export_root)
    export_dir = art.version_dir(export_root, version).resolve()
    art.check_version_dir(export_dir)
    if serving.instance_kind == "gpu" and serving.instance_count < 1:
        raise ConfigError("needs at least one instance", source="STREAMREC_SERVING_INSTANCE_COUNT")
    stage_config = StageConfig(
        export_dir=export_dir, export_version=version, serving=serving, bloom=bloom, feast=feast, redis_url=redis_url
    )
    live_control = control if control is not None and control.live() else None
    with _locked(repo):
        state = RepositoryState.read(repo)
        switch = _prepare_fused if serving.layout == "fused" else _prepare_ensemble
        slot, changed = switch(_Switch(repo, ensemble, stage_config, state, live_control, force, progress))
        RepositoryState(slot=slot, export_version=version, export_dir=str(export_dir), layout=serving.layout).write(
            repo
        )
    return PrepareResult(version, slot, changed, live_control is not None, repo)


@dataclass(frozen=True)
class _Switch:
    """One ``prepare`` call as the layout functions see it (``control`` only when Triton is live)."""

    repo: Path
    model: str
    stage_config: StageConfig
    state: RepositoryState
    control: ModelControl | None
    force: bool
    progress: Callable[[str], None]


def _prepare_ensemble(job: _Switch) -> tuple[int, bool]:
    repo, ensemble, stage_config, state = job.repo, job.model, job.stage_config, job.state
    control, force, progress = job.control, job.force, job.progress
    serving = stage_config.serving
    config_changed = False
    for stage in STAGES:
        config_changed |= _write_if_changed(
            repo / stage_model_name(stage) / "config.pbtxt", render_stage_config(stage, serving)
        )
    complete = state.slot > 0 and all(
        (repo / stage_model_name(s) / str(state.slot) / STAGE_CONFIG_FILE).is_file() for s in STAGES
    )
    # A new slot also when only the stage settings changed (another Redis URL, Feast repo, ...): a slot's
    # stage.json is read once, when Triton loads it.
    settings_changed = complete and any(
        _differs(repo / stage_model_name(s) / str(state.slot) / STAGE_CONFIG_FILE, stage_config) for s in STAGES
    )
    changed = force or not complete or state.export_version != stage_config.export_version or settings_changed
    slot = state.slot + 1 if changed else state.slot
    if changed:
        progress(f"writing slot {slot} for export {stage_config.export_version}")
        for stage in STAGES:
            target = repo / stage_model_name(stage) / str(slot)
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy2(MODEL_TEMPLATE, target / "model.py")
            stage_config.write(target / STAGE_CONFIG_FILE)
    ensemble_dir = repo / ensemble
    if state.layout == "fused":
        # The fused model's version dirs would be read as ensemble versions; it keeps serving until the
        # ensemble replaces it.
        shutil.rmtree(ensemble_dir, ignore_errors=True)
    (ensemble_dir / "1").mkdir(parents=True, exist_ok=True)
    ensemble_text = render_ensemble_config(ensemble, slot, serving)
    serving_now = control is not None and control.ready(ensemble) and state.layout != "fused"
    # Slots that cannot be serving anything (the ensemble is down, or their export is gone) are removed
    # before loading, so that Triton does not try (and fail) to load them again.
    for stage in STAGES:
        for v in _stage_versions(repo, stage):
            if v != slot and (not serving_now or not _slot_export_exists(repo, stage, v)):
                shutil.rmtree(repo / stage_model_name(stage) / str(v), ignore_errors=True)
    if control is not None and (changed or config_changed or not serving_now):
        progress(f"loading {len(STAGES)} stage models (slot {slot}) in Triton")
        with ThreadPoolExecutor(max_workers=3) as pool:
            list(pool.map(control.load, [stage_model_name(s) for s in STAGES]))
        _write_if_changed(ensemble_dir / "config.pbtxt", ensemble_text)
        progress(f"switching ensemble {ensemble} to slot {slot}")
        control.load(ensemble)
    else:
        _write_if_changed(ensemble_dir / "config.pbtxt", ensemble_text)
    old = {s: [v for v in _stage_versions(repo, s) if v != slot] for s in STAGES}
    if any(old.values()):
        if control is not None:
            time.sleep(serving.reload_grace_s)
        for stage, versions in old.items():
            for v in versions:
                shutil.rmtree(repo / stage_model_name(stage) / str(v), ignore_errors=True)
        if control is not None:
            progress("unloading the previous slot")
            with ThreadPoolExecutor(max_workers=3) as pool:
                list(pool.map(control.load, [stage_model_name(s) for s, versions in old.items() if versions]))
    return slot, changed


def _prepare_fused(job: _Switch) -> tuple[int, bool]:
    repo, name, stage_config, state = job.repo, job.model, job.stage_config, job.state
    control, force, progress = job.control, job.force, job.progress
    model_dir = repo / name
    if state.layout != "fused":
        # The ensemble (and its empty version dir) is replaced by the fused model under the same name; its stage
        # models are unloaded once the fused model serves.
        shutil.rmtree(model_dir, ignore_errors=True)
    current = model_dir / str(state.slot) / STAGE_CONFIG_FILE
    complete = state.layout == "fused" and state.slot > 0 and current.is_file()
    changed = force or not complete or _differs(current, stage_config)
    slot = state.slot + 1 if changed else state.slot
    if changed:
        progress(f"writing slot {slot} for export {stage_config.export_version} (fused layout)")
        target = model_dir / str(slot)
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy2(MODEL_TEMPLATE, target / "model.py")
        stage_config.write(target / STAGE_CONFIG_FILE)
    config_changed = _write_if_changed(model_dir / "config.pbtxt", render_fused_config(name, stage_config.serving))
    old = [v for v in _versions(model_dir) if v != slot]
    if control is not None and (changed or config_changed or not control.ready(name)):
        progress(f"loading {name} slot {slot} in Triton (one model, every stage)")
        control.load(name)  # version policy "latest 1": the new slot serves once ready, then the old unloads
    if old:
        if control is not None:
            time.sleep(stage_config.serving.reload_grace_s)
        for v in old:
            shutil.rmtree(model_dir / str(v), ignore_errors=True)
    stage_dirs = [repo / stage_model_name(s) for s in STAGES if (repo / stage_model_name(s)).is_dir()]
    if stage_dirs:
        progress("removing the ensemble layout's stage models")
        for path in stage_dirs:
            if control is not None:
                control.unload(path.name)
            shutil.rmtree(path, ignore_errors=True)
    return slot, changed
