"""Run by tests/test_protocols.py with MLflow's own interpreter (.venv-mlflow, .ci/setup-mlflow), not ours:
writes the bodies MLflow's own serialisation code makes of one input, for each format its scoring server
takes, so the test can send them to nbserve and compare the answers with the kernel's.

    .venv-mlflow/bin/python tests/mlflow_payloads.py INPUT.json OUTDIR [URL]

INPUT.json: {"array": [[...]]} or {"frame": <orient="split" without index>, "dtypes": {column: dtype}}.
OUTDIR/index.json: {format: {"content_type", "file"}}. With URL, MLflow's own scoring client
(ScoringServerClient.invoke) also sends the input there: its predictions go to OUTDIR/client.json.
"""

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from mlflow.models.python_api import _serialize_input_data
from mlflow.models.utils import convert_input_example_to_serving_input
from mlflow.utils.proto_json_utils import NumpyEncoder, _get_jsonable_obj, dump_input_data

JSON, CSV = "application/json", "text/csv"


def main(src, outdir, url=None):
    spec = json.loads(Path(src).read_text())
    if "array" in spec:
        value = np.asarray(spec["array"])
        frame = pd.DataFrame(value, columns=[f"x{i}" for i in range(value.shape[1])])
        instances = dump_input_data(value, inputs_key="instances")
        inputs = convert_input_example_to_serving_input(value)  # {"inputs": [[...]]}
    else:
        frame = pd.DataFrame(**spec["frame"]).astype(spec["dtypes"])
        records = _get_jsonable_obj(frame, pandas_orient="records")
        instances = dump_input_data(records, inputs_key="instances")
        columns = {name: frame[name].to_numpy() for name in frame.columns}
        inputs = convert_input_example_to_serving_input(columns)  # {"inputs": {column: [...]}}
    bodies = {
        "dataframe_split": (JSON, dump_input_data(frame)),
        "dataframe_records": (
            JSON,
            json.dumps({"dataframe_records": _get_jsonable_obj(frame, pandas_orient="records")}, cls=NumpyEncoder),
        ),
        "instances": (JSON, instances),
        "inputs": (JSON, inputs),
        "csv": (CSV, _serialize_input_data(frame, "csv")),  # mlflow.models.predict(..., content_type="csv")
    }
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    index = {}
    for fmt, (content_type, body) in bodies.items():
        (out / fmt).write_text(body)
        index[fmt] = {"content_type": content_type, "file": fmt}
    (out / "index.json").write_text(json.dumps(index))
    if url:
        from urllib.parse import urlsplit

        from mlflow.pyfunc.scoring_server.client import ScoringServerClient

        where = urlsplit(url)
        client = ScoringServerClient(where.hostname, where.port)
        client.wait_server_ready(timeout=30)
        response = client.invoke(frame if "frame" in spec else value)
        (out / "client.json").write_text(json.dumps(response.get_predictions(predictions_format="ndarray").tolist()))


if __name__ == "__main__":
    main(*sys.argv[1:])
