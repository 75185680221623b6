"""CLI plugin: ``streamrec serve prepare|status`` and ``streamrec api``. Registration is cheap: heavy imports
(torch, faiss, FastAPI) happen inside the handlers."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from serving.api.settings import UiSettings
from serving.settings import ApiSettings, ServingSettings
from streamrec.cli.plugins import CommandHandler, PluginRegistry
from streamrec.errors import ConfigError
from streamrec.security import refuse_placeholder_secrets
from streamrec.settings import KafkaSettings, RedisSettings


def _progress(message: str) -> None:
    print(f"  {message}", file=sys.stderr, flush=True)


def _prepare(args: argparse.Namespace) -> int:
    from serving.repository import ModelControl, prepare
    from streamrec.settings import BloomSettings, FeastSettings, PathsSettings, RedisSettings, TritonSettings

    triton = TritonSettings.load()
    overrides = {}
    if args.device:
        overrides["instance_kind"] = args.device
    serving = ServingSettings.load(**overrides)
    export_root = Path(args.export_root) if args.export_root else PathsSettings.load().export_root
    repo = Path(args.repository) if args.repository else triton.model_repository
    control = None if args.no_load else ModelControl(triton.http_url, serving.load_timeout_s)
    try:
        result = prepare(
            repo,
            export_root,
            ensemble=triton.ensemble_model,
            serving=serving,
            bloom=BloomSettings.load(),
            feast=FeastSettings.load(),
            redis_url=RedisSettings.load().effective_url,
            control=control,
            version=args.version,
            force=args.force,
            progress=_progress,
        )
    finally:
        if control is not None:
            control.close()
    print(result.line())
    return 0


def _status(args: argparse.Namespace) -> int:
    from serving.repository import ModelControl, RepositoryState
    from streamrec import artifacts as art
    from streamrec.errors import ArtifactError
    from streamrec.settings import PathsSettings, TritonSettings

    triton = TritonSettings.load()
    state = RepositoryState.read(triton.model_repository.resolve())
    try:
        current = art.read_current(PathsSettings.load().export_root)
    except ArtifactError as exc:
        current = f"none ({exc})"
    print(f"export CURRENT: {current}")
    print(
        f"repository {triton.model_repository}: {state.layout} layout, slot {state.slot}, "
        f"export {state.export_version or '-'}"
    )
    control = ModelControl(triton.http_url)
    try:
        if not control.live():
            print(f"Triton at {triton.http_url}: not reachable")
            return 1
        for model in sorted(control.index(), key=lambda m: (m.get("name", ""), m.get("version", ""))):
            name, version = model.get("name"), model.get("version", "-")
            print(f"  {name} v{version}: {model.get('state', '?')} {model.get('reason', '')}")
        ready = control.ready(triton.ensemble_model)
    finally:
        control.close()
    print(f"ensemble {triton.ensemble_model}: {'ready' if ready else 'NOT ready'}")
    return 0 if ready and state.export_version == current else 1


def _serve_setup(parser: argparse.ArgumentParser) -> CommandHandler:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", parser_class=type(parser))
    actions.required = True
    prep = actions.add_parser("prepare", help="materialise the model repository for the CURRENT export and (re)load it")
    prep.add_argument("--export-root", help="export root (default: STREAMREC_PATHS_EXPORT_ROOT)")
    prep.add_argument("--version", help="serve this published version instead of CURRENT (rollback)")
    prep.add_argument("--repository", help="model repository (default: STREAMREC_TRITON_MODEL_REPOSITORY)")
    prep.add_argument(
        "--device",
        choices=("cpu", "gpu"),
        help="instance kind of the model stages (default: STREAMREC_SERVING_INSTANCE_KIND)",
    )
    prep.add_argument("--no-load", action="store_true", help="only write files; do not call Triton's model control")
    prep.add_argument("--force", action="store_true", help="write a new slot even if the version is unchanged")
    prep.set_defaults(_action=_prepare)
    actions.add_parser("status", help="CURRENT export, repository slot and Triton model states").set_defaults(
        _action=_status
    )
    return lambda args: int(args._action(args))


def _api_setup(parser: argparse.ArgumentParser) -> CommandHandler:
    parser.add_argument("--host", help="bind address (default: STREAMREC_API_HOST)")
    parser.add_argument("--port", type=int, help="port (default: STREAMREC_API_PORT)")

    def run(args: argparse.Namespace) -> int:
        import uvicorn

        from serving.api.app import create_app

        settings = ApiSettings.load()
        refuse_placeholder_secrets(settings, KafkaSettings.load(), RedisSettings.load())
        if not settings.auth_disabled and not settings.api_keys:
            raise ConfigError(
                "no API keys configured; set STREAMREC_API_API_KEYS='[\"sha256:...\"]' (stored hashes: python -m "
                "streamrec.security hash-api-key --generate) or STREAMREC_API_AUTH_DISABLED=true",
                source="STREAMREC_API_API_KEYS",
            )
        app = create_app(settings)
        uvicorn.run(
            app,
            host=args.host or settings.host,
            port=args.port or settings.port,
            log_level=settings.log_level,
            access_log=False,
            # Open page streams (SSE) never end by themselves: without a bound, stopping the API waits forever.
            timeout_graceful_shutdown=5,
        )
        return 0

    return run


def register(registry: PluginRegistry) -> None:
    registry.add_settings(ServingSettings)
    registry.add_settings(ApiSettings)
    registry.add_settings(UiSettings)
    registry.add_command("serve", "Triton model repository of the recommendation pipeline", _serve_setup)
    registry.add_command("api", "run the recommendation HTTP API (uvicorn)", _api_setup)
