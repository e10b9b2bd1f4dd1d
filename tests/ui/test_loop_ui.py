"""The notebook loop's buttons in a real JupyterLab and Chromium (issue 22): the sidebar shows "following lr", a
shadow's comparison side by side, and its Promote and Rollback act (diabetes regression); in a notebook, a
followed pipeline over the mixed rentals frame is refit in a later cell, then the panel's Promote and Rollback
change what answers at the instance's URL.

Reuses the `lab` and `page` fixtures of test_sidebar.py."""

import json
import re
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from loop_families import FAMILIES
from test_panel_ui import command, notebook
from test_sidebar import lab, open_sidebar_from_the_palette, page  # noqa: F401  (fixtures)

import nbserve

pytestmark = pytest.mark.browser
MODELS = Path(__file__).resolve().parents[1] / "models"


def model_of(url) -> str:
    with urllib.request.urlopen(url + "/health", timeout=10) as resp:
        return json.loads(resp.read())["model"]


def test_the_sidebar_follows_compares_promotes_and_rolls_back(lab, page, workspace):  # noqa: F811
    from playwright.sync_api import expect

    f = FAMILIES["diabetes"]()
    inst = nbserve.serve(f.v1, name="diabetes", sample=f.sample, runtime="process", progress=False)
    workspace.set_follow(inst.id, "lr")
    inst.shadow(f.nudged(f.v1), sample=f.sample, progress=False)
    client = inst.client(timeout=30)
    rows = f.sample[:40]
    for i in range(len(rows)):
        client.predict(rows[i : i + 1])
    deadline = time.monotonic() + 30
    while len(inst.comparison()) < len(rows) and time.monotonic() < deadline:
        time.sleep(0.2)
    agreement = 1.0 - float(np.mean(f.differs(rows)))

    page.goto(lab.url("lab?reset"))
    expect(page.get_by_role("tab", name="Model serving")).to_be_visible(timeout=60_000)
    sidebar = open_sidebar_from_the_palette(page)
    item = sidebar.get_by_role("listitem", name=f"Instance diabetes:1 {inst.id}")
    expect(item).to_contain_text("following lr", timeout=15_000)
    expect(item).to_contain_text("shadowed by diabetes:2 (100% of requests)")
    table = item.get_by_role("table", name="comparison of diabetes:2 with diabetes:1")
    expect(table).to_contain_text(f"{agreement * 100:.1f}%", timeout=15_000)
    expect(table).to_contain_text("latency p99")
    expect(item.get_by_role("img", name=re.compile("answers: diabetes:2 .* against diabetes:1"))).to_be_visible()

    item.get_by_role("button", name="Promote").click()
    promoted = sidebar.get_by_role("listitem", name=f"Instance diabetes:2 {inst.id}")
    expect(promoted).to_contain_text("served before: diabetes:1", timeout=30_000)
    assert model_of(inst.url) == "diabetes:2" and inst.reload().shadowed_by is None

    promoted.get_by_role("button", name="Rollback").click()
    expect(sidebar.get_by_role("listitem", name=f"Instance diabetes:1 {inst.id}")).to_be_visible(timeout=30_000)
    assert model_of(inst.url) == "diabetes:1" and inst.reload().history == []


CELLS = [
    f"%load_ext nbserve\nimport sys\nsys.path.insert(0, {str(MODELS)!r})\nfrom frames import rentals, mixed_pipeline\n"
    "frame, target = rentals()\nmodel = mixed_pipeline(frame, target)",
    "inst = %serve model --sample frame --runtime process --follow",
    "model = mixed_pipeline(frame, target.where(frame['season'] != 'summer', 0))",  # refit: followed
    "import nbserve\np = nbserve.panel(refresh_seconds=2)\np",
]


def test_the_panel_in_a_notebook_promotes_and_rolls_back_a_followed_pipeline(lab, page, workspace, tmp_path):  # noqa: F811
    from playwright.sync_api import expect

    (tmp_path / "root" / "loop.ipynb").write_text(notebook(CELLS))
    page.goto(lab.url("lab/tree/loop.ipynb?reset"))
    expect(page.get_by_text("| Idle")).to_be_visible(timeout=90_000)
    page.locator(".jp-Notebook").click()
    command(page, "Run All Cells")
    cells = page.locator(".jp-Notebook .jp-Cell")
    expect(cells.nth(1).locator(".jp-OutputArea")).to_contain_text("following model", timeout=120_000)
    refit = cells.nth(2).locator(".jp-OutputArea")
    expect(refit).to_contain_text(
        re.compile(r"model:2 now answers at http://127\.0\.0\.1:\d+, was model:1"), timeout=120_000
    )
    [inst] = workspace.instances()
    assert model_of(inst.url) == "model:2"

    # a candidate of the first fit shadows it, from Python; the panel shows both side by side
    sys.path.insert(0, str(MODELS))
    from frames import mixed_pipeline, rentals

    frame, target = rentals()
    inst.shadow("model:1", progress=False)
    client = inst.client(timeout=60)
    for i in range(0, 40, 4):
        client.predict(frame.iloc[i : i + 4])
    panel = cells.nth(3).locator(".jp-OutputArea")
    expect(panel.get_by_text("following model").first).to_be_visible(timeout=30_000)
    table = panel.get_by_role("table", name="comparison of model:1 with model:2")
    expect(table).to_contain_text("agreement", timeout=30_000)
    promote = panel.get_by_role("button", name="Promote")
    expect(promote).to_be_enabled()
    promote.click()
    expect(panel.get_by_text("served before: model:1, model:2", exact=True)).to_be_visible(timeout=60_000)
    assert model_of(inst.url) == "model:1"
    np.testing.assert_array_equal(
        client.predict(frame.iloc[:20]), mixed_pipeline(frame, target).predict(frame.iloc[:20])
    )

    panel.get_by_role("button", name="Rollback").click()
    expect(panel.get_by_text("served before: model:1", exact=True)).to_be_visible(timeout=60_000)
    assert model_of(inst.url) == "model:2"
