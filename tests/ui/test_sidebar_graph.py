"""A graph of stages in the sidebar, in a real `jupyter lab` (Chromium via Playwright): under a running graph
instance the stages are drawn with the version each runs, its p50 latency and its error count (a stage that
raised is marked), and the Update stage form serves another registered version of one stage in place."""

import os
import re

import numpy as np
import pytest
import requests
from test_sidebar import DOCS, lab, open_sidebar_from_the_palette, page  # noqa: F401  (fixtures)

import nbserve

pytestmark = pytest.mark.browser
X = np.arange(12, dtype="float64").reshape(4, 3)


def scale(x):
    if (x < 0).any():
        raise ValueError("negative readings cannot be scaled")
    return x * 2.0


def total(x):
    return x.sum(axis=1)


def total_plus(x):
    return x.sum(axis=1) + 1000.0


def test_the_sidebar_draws_a_graphs_stages_and_updates_one(lab, page, workspace):  # noqa: F811
    from playwright.sync_api import expect

    inst = workspace.serve(nbserve.chain(scale, total), name="arith", sample=X, runtime="process", progress=False)
    for _ in range(3):
        assert requests.post(inst.url + "/predict", json={"data": X.tolist()}, timeout=10).status_code == 200
    failed = requests.post(inst.url + "/predict", json={"data": (-X).tolist()}, timeout=10)
    assert failed.status_code == 500 and "stage 'scale'" in failed.json()["error"]["message"]
    workspace.register(total_plus, name="plus", sample=X * 2.0, progress=False)

    page.goto(lab.url("lab?reset"))
    expect(page.get_by_role("tab", name="Model serving")).to_be_visible(timeout=60_000)
    sidebar = open_sidebar_from_the_palette(page)
    stages = sidebar.get_by_label(f"Stages of {inst.id}")
    drawing = stages.get_by_role("img")
    expect(drawing).to_have_attribute(
        "aria-label", re.compile(r"^graph arith:1: scale \(arith\.scale:1, p50 \d"), timeout=30_000
    )
    label = drawing.get_attribute("aria-label")
    assert "scale (arith.scale:1, p50 " in label and "ms · 1 error)" in label
    assert "total (arith.total:1, p50 " in label and "ms · 0 errors) after scale" in label
    expect(stages.locator("[data-stage='scale'][data-errors='1']")).to_have_count(1)
    expect(stages.locator("[data-stage='total'][data-errors='0']")).to_have_count(1)
    expect(stages.locator("text.nbserve-graph-error")).to_have_count(1)  # the failing stage's line is marked
    shot = DOCS / "sidebar-graph.png"
    if not shot.exists() or os.environ.get("NBSERVE_UPDATE_SCREENSHOT"):
        stages.screenshot(path=str(shot))

    stages.get_by_role("combobox", name=f"Stage of {inst.id} to update").select_option("total")
    stages.get_by_role("textbox", name=f"Version the stage of {inst.id} runs next").fill("plus:1")
    stages.get_by_role("button", name="Update stage").click()
    expect(drawing).to_have_attribute("aria-label", re.compile(r"^graph arith:2: "), timeout=60_000)
    assert "total (plus:1, " in drawing.get_attribute("aria-label")
    assert workspace.get_instance(inst.id).model == "arith:2"
    answer = requests.post(inst.url + "/predict", json={"data": X.tolist()}, timeout=10).json()["data"]
    assert answer == total_plus(scale(X)).tolist()
    # a version that is not registered: the form says why, the graph serves on
    stages.get_by_role("textbox", name=f"Version the stage of {inst.id} runs next").fill("nowhere:7")
    stages.get_by_role("button", name="Update stage").click()
    expect(stages.get_by_role("alert")).to_contain_text("nowhere", timeout=30_000)
    assert workspace.get_instance(inst.id).model == "arith:2"
    inst.remove()
