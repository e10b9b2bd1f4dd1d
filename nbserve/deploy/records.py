"""What was asked for each deployment, one JSON file per deployment under ``$NBSERVE_HOME/deployments/``.

The engine (Swarm) or the manifest directory (Kubernetes) says what is; these records remember what
nbserve asked for (target, model, replicas, image reference, options) so a listing knows where to look.
Files rather than rows in registry.db, whose versioned schema another part of nbserve owns; each file
is written to a temporary name and renamed, so a reader never sees half a record.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from ..errors import DeploymentNotFoundError


def dns_name(name: str) -> str:
    """A name every target accepts (Swarm service, Kubernetes object): lowercase letters, digits, '-'."""
    text = re.sub(r"[^a-z0-9-]+", "-", str(name).lower()).strip("-")
    return text[:47].strip("-") or "model"


class DeploymentRecords:
    def __init__(self, home: Path):
        self.dir = Path(home) / "deployments"

    def _path(self, name: str) -> Path:
        if name != dns_name(name):
            raise DeploymentNotFoundError(
                f"{name!r} is not a deployment name (lowercase letters, digits and '-'); "
                f"`nbserve.deployments()` lists them"
            )
        return self.dir / f"{name}.json"

    def exists(self, name: str) -> bool:
        return self._path(name).exists()

    def save(self, rec: dict) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self._path(rec["name"])
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(rec, indent=1, sort_keys=True))
        os.replace(tmp, path)

    def get(self, name: str) -> dict:
        try:
            return json.loads(self._path(name).read_text())
        except FileNotFoundError:
            known = ", ".join(r["name"] for r in self.list()) or "none yet"
            raise DeploymentNotFoundError(f"no deployment named {name!r} (deployments: {known})") from None

    def list(self) -> list[dict]:
        out = []
        for path in sorted(self.dir.glob("*.json")):
            try:
                out.append(json.loads(path.read_text()))
            except (OSError, ValueError):
                continue
        return sorted(out, key=lambda r: r.get("created", 0))

    def delete(self, name: str) -> None:
        self._path(name).unlink(missing_ok=True)
