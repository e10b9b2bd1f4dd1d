"""Where nbserve keeps its state, and the few settings users may change."""

import json
import os
import sys
from pathlib import Path

from .errors import NbserveError


def home() -> Path:
    """The registry directory: $NBSERVE_HOME, default ~/.nbserve."""
    return Path(os.environ.get("NBSERVE_HOME") or Path.home() / ".nbserve").expanduser().resolve()


def settings(home_dir=None) -> dict:
    """Optional user settings from <home>/config.json (for example {"base_image": "..."})."""
    path = Path(home_dir or home()) / "config.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except ValueError as exc:
        raise NbserveError(f"{path} is not valid JSON ({exc}); fix or delete it") from exc


def python_tag() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"
