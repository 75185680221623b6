"""After publishing, switch a running Triton to the new version through serving's CLI command."""

from __future__ import annotations

import os
import subprocess
import sys

from streamrec.errors import StoreUnavailableError


def switch_serving(triton_url: str, command: list[str], timeout_s: float = 600.0) -> list[str]:
    """Run ``streamrec <command>`` (default ``serve prepare``) against ``triton_url``; returns ``[command]``."""
    env = {**os.environ, "TRITON_URL": triton_url}
    try:
        result = subprocess.run(
            [sys.executable, "-m", "streamrec.cli.main", *command],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise StoreUnavailableError(f"'streamrec {' '.join(command)}' did not finish in {timeout_s:.0f}s") from None
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise StoreUnavailableError(f"'streamrec {' '.join(command)}' failed against {triton_url}: {last}")
    return [" ".join(command)]
