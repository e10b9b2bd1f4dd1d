"""LightGBM, RandomForest and catboost through Docker (issue 26): the slim base image lacks the OpenMP runtime
LightGBM's wheel links (libgomp.so.1); the builder finds it among the locked wheels' libraries and installs its
Debian package in a system layer, and the containers answer like the kernel on the mixed-type table."""

import os

import numpy as np
import pandas as pd
import pytest
from frames import rentals
from nbserve_testing import base_image, need_docker

from nbserve.runtimes.system_libraries import needed_by_distributions

pytestmark = [pytest.mark.docker, pytest.mark.timeout(1500)]  # two image builds (lightgbm; catboost + sklearn)
TIMEOUT = 30


@pytest.fixture(scope="module")
def docker_ws(module_workspace):
    client = need_docker()
    os.environ.setdefault("NBSERVE_BASE_IMAGE", base_image())
    yield module_workspace
    client.close()


@pytest.fixture(scope="module")
def table():
    frame, target = rentals()
    return frame[["temp", "humidity", "holiday", "season", "riders_yesterday"]].astype({"holiday": int}), target


def test_lightgbm_gets_the_openmp_runtime_its_wheel_links(docker_ws, table):
    lightgbm = pytest.importorskip("lightgbm")
    assert "libgomp.so.1" in needed_by_distributions(["lightgbm"])  # what the wheel links from the system
    X, y = table
    model = lightgbm.LGBMClassifier(n_estimators=30, verbose=-1).fit(X, y)
    said = []
    inst = docker_ws.serve(model, name="lgbm_docker", sample=X, runtime="docker", progress=lambda m, *a: said.append(m))
    try:
        assert any("libgomp1" in m for m in said), said
        client = inst.client(timeout=TIMEOUT)
        rows = X.iloc[:40]
        np.testing.assert_array_equal(client.predict(rows), model.predict(rows))
        np.testing.assert_allclose(client.predict_proba(rows), model.predict_proba(rows), rtol=1e-9)
    finally:
        inst.remove()


def test_random_forest_and_catboost_answer_like_the_kernel(docker_ws, table):
    catboost = pytest.importorskip("catboost")
    from sklearn.ensemble import RandomForestClassifier

    X, y = table
    numeric = X.drop(columns="season").fillna(-1)
    forest = RandomForestClassifier(n_estimators=20, n_jobs=-1, random_state=0).fit(numeric, y)
    boosted = catboost.CatBoostClassifier(
        iterations=30, verbose=False, cat_features=["season"], thread_count=2, allow_writing_files=False
    )
    boosted.fit(X.assign(season=X["season"].astype(str)).fillna(-1), y)

    def both(df):
        features = df.fillna(-1)
        forest_p = forest.predict_proba(features.drop(columns="season"))[:, 1]
        boosted_p = boosted.predict_proba(features.assign(season=df["season"].astype(str)))[:, 1]
        return pd.DataFrame({"forest": forest_p, "catboost": boosted_p}, index=df.index)

    inst = docker_ws.serve(both, sample=X, runtime="docker", system_packages=["libgomp1"], progress=False)
    try:
        mv = docker_ws.get_model(inst.model)
        assert mv.system_packages == ["libgomp1"]
        names = {r.split("==")[0].lower() for r in mv.requirements}
        assert {"catboost", "scikit-learn"} <= names
        rows = X.iloc[10:50]
        pd.testing.assert_frame_equal(inst.client(timeout=TIMEOUT).both(rows), both(rows))
    finally:
        inst.remove()
