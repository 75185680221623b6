"""Ask a Triton server to (re)load models after a new version is published (model-control API)."""

from __future__ import annotations

from streamrec.errors import StoreUnavailableError


def reload_models(base_url: str, models: list[str], timeout_s: float = 30.0) -> list[str]:
    """POST /v2/repository/models/<name>/load for each model; returns the names reloaded."""
    if not models:
        return []
    import httpx

    done = []
    for name in models:
        url = f"{base_url.rstrip('/')}/v2/repository/models/{name}/load"
        try:
            response = httpx.post(url, timeout=timeout_s)
        except httpx.HTTPError as exc:
            raise StoreUnavailableError(f"Triton at {base_url} unreachable while reloading {name}: {exc}") from None
        if response.status_code != 200:
            raise StoreUnavailableError(
                f"Triton refused to load {name}: HTTP {response.status_code} {response.text[:200]}"
            )
        done.append(name)
    return done
