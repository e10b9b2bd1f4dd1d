"""xgboost (native categories) and the ColumnTransformer pipeline on the mixed-type table, through Docker:
one image build each, the image's readiness check passes (its answers equal the kernel interpreter's, on
a batch made from the schema's kinds), and the container answers like the kernel; xgboost's image goes
without the GPU runtime (nvidia-nccl-cu12) it declares."""

import os

import numpy as np
import pytest
import requests
from frames import check_native_category_model, mixed_pipeline, rentals
from nbserve_testing import base_image, need_docker

from nbserve.server.schema import frame_split

pytestmark = [pytest.mark.docker, pytest.mark.timeout(1200)]  # two image builds with xgboost, scipy, pandas
TIMEOUT = 20


@pytest.fixture(scope="module")
def docker_ws(module_workspace):
    client = need_docker()
    os.environ.setdefault("NBSERVE_BASE_IMAGE", base_image())
    yield module_workspace
    client.close()


def test_xgboost_on_a_mixed_frame_through_docker(docker_ws):
    xgboost = pytest.importorskip("xgboost")
    frame, target = rentals()
    features = frame[["temp", "humidity", "holiday", "season", "riders_yesterday"]]
    model = xgboost.XGBClassifier(n_estimators=20, max_depth=3, enable_categorical=True).fit(features, target)
    inst = docker_ws.serve(model, name="rentals_xgb", sample=features, runtime="docker", progress=False)
    mv = docker_ws.get_model(inst.model)
    assert not [r for r in mv.requirements if r.lower().startswith("nvidia")], mv.requirements
    check_native_category_model(inst, model, features.iloc[:30], TIMEOUT)
    inst.remove()


def test_the_mixed_pipeline_through_docker(docker_ws):
    frame, target = rentals()
    model = mixed_pipeline(frame, target)
    inst = docker_ws.serve(model, name="rentals", sample=frame, runtime="docker", progress=False)
    client = inst.client(timeout=TIMEOUT)
    rows = frame.iloc[:40]
    np.testing.assert_array_equal(client.predict(rows), model.predict(rows))
    body = frame_split(rows.iloc[:2])
    body["data"][0][body["columns"].index("day")] = 1706688000000
    resp = requests.post(inst.url + "/predict", json={"data": body}, timeout=TIMEOUT)
    assert resp.status_code == 400 and "ISO 8601" in resp.json()["error"]["message"]
    inst.remove()
