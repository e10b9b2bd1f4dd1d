"""Registry backends: where metadata and artifacts live, chosen by configuration.

=====================  ======================================  =============================================
setting                environment variable / config.json key  values
=====================  ======================================  =============================================
metadata               NBSERVE_REGISTRY_URL / registry_url     ``sqlite:///PATH`` (default
                                                               ``<home>/registry.db``) or
                                                               ``postgresql://USER:PASSWORD@HOST:PORT/DB``
artifacts              NBSERVE_ARTIFACTS / artifacts           a directory (default ``<home>/artifacts``) or
                                                               ``s3://BUCKET/PREFIX`` (endpoint and
                                                               credentials from the standard AWS variables)
=====================  ======================================  =============================================

Instances stay per machine (in ``<home>/registry.db`` whatever the metadata URL); a shared registry is told
which versions run where.
"""

from __future__ import annotations

import os
from pathlib import Path


def locations(home: Path, settings: dict | None = None) -> tuple[str, str]:
    """(metadata URL, artifact store) for a registry home: the environment first, then config.json."""
    if settings is None:
        from ..config import settings as read_settings

        settings = read_settings(home) if (Path(home) / "config.json").exists() else {}
    url = os.environ.get("NBSERVE_REGISTRY_URL") or settings.get("registry_url") or f"sqlite:///{home}/registry.db"
    artifacts = os.environ.get("NBSERVE_ARTIFACTS") or settings.get("artifacts") or str(Path(home) / "artifacts")
    return url, artifacts
