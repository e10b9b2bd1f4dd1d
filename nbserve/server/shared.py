"""The one door into the served side: every name the rest of nbserve uses of ``nbserve.server``.

The core (capture, runtimes, deploy, store, the client, resources, the workspace) imports these names from
here and no other module of ``server/`` (the ``core-through-one-door`` contract of pyproject.toml); faces
import nothing of ``server/`` at all. What crosses is what both sides of the seam must agree on:

- the staging protocol with the kernel: the replay's files and report, the control socket of a running
  server, the methods bound on an unpickled artifact, what counts as a streamed answer;
- a graph of stages: its plan (the order, checked) and the runner that calls the stages, the same in the
  kernel (nbserve/graphs.py) as in the server;
- the schema vocabulary: the dtype kinds, and how columns and values are written as JSON (the client
  encodes by it, the signature and the readiness check describe by it);
- the settings every runtime writes and the served side reads, the token and URL prefix rules, the
  interface document and the drift reference a registration carries.

The served side itself never imports this module (it imports its own modules directly), so the image does
not depend on it.
"""

from .artifact import bind_methods
from .auth import ENV_SHA256, mask, token_sha256
from .control import ControlError, Controller
from .control import address as control_address
from .drift import features as drift_features
from .drift import reference_spec, unsupported_spec
from .dtypes import KINDS, OBJECT, column_kind, dtype_is_nullable, kind_of_dtype
from .graph import Runner as GraphRunner
from .graph import plan as graph_plan
from .jsonio import dumps as json_dumps
from .jsonio import loads as json_loads
from .openapi import interface_document
from .prefix import clean as clean_prefix
from .replay import REPORT, SAMPLE, STAGED_ARTIFACT, read_report
from .schema import (
    EXTRA_COLUMNS,
    column_values,
    compile_decoder,
    frame_records,
    frame_split,
    index_values,
    rebuild,
    to_jsonable,
)
from .schema import _cell as json_cell  # one value as the JSON the server writes (NaN, dates, numpy scalars)
from .settings import DEFAULT_MAX_BATCH, DEFAULT_MAX_LATENCY_MS, Settings
from .streaming import is_stream

__all__ = [
    "DEFAULT_MAX_BATCH",
    "DEFAULT_MAX_LATENCY_MS",
    "ENV_SHA256",
    "EXTRA_COLUMNS",
    "KINDS",
    "OBJECT",
    "REPORT",
    "SAMPLE",
    "STAGED_ARTIFACT",
    "ControlError",
    "Controller",
    "GraphRunner",
    "Settings",
    "bind_methods",
    "clean_prefix",
    "column_kind",
    "column_values",
    "compile_decoder",
    "control_address",
    "drift_features",
    "dtype_is_nullable",
    "frame_records",
    "frame_split",
    "graph_plan",
    "index_values",
    "interface_document",
    "is_stream",
    "json_cell",
    "json_dumps",
    "json_loads",
    "kind_of_dtype",
    "mask",
    "read_report",
    "rebuild",
    "reference_spec",
    "to_jsonable",
    "token_sha256",
    "unsupported_spec",
]
