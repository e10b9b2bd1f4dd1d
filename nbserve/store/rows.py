"""The rows the registry hands out: a version of a model, and an instance (per machine)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class VersionRow:
    name: str
    version: int
    sha256: str
    created: float
    python: str
    registered_by: str = ""  # user and host of the register (empty for versions made before schema 2)
    registered_host: str = ""


@dataclass
class InstanceRow:
    id: str
    name: str
    version: int
    runtime: str
    host: str
    port: int | None
    desired: str
    created: float
    started: float | None
    handle: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict, repr=False)  # may hold the auth token: never in a repr

    @property
    def model(self) -> str:
        return f"{self.name}:{self.version}"
