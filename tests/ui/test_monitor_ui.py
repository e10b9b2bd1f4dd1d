"""The sidebar's monitoring view in a real `jupyter lab` (Chromium via Playwright): a running instance that
received inputs shifted on two features shows its traffic plots and flags exactly those features in red.
Also makes docs/sidebar-monitoring.png (when missing, or with NBSERVE_UPDATE_SCREENSHOT=1)."""

import os
import time

import pytest
import requests
from observability_models import SHIFTED_ARRAY, shifted_array
from test_sidebar import DOCS, lab, open_sidebar_from_the_palette, page  # noqa: F401  (fixtures)

pytestmark = pytest.mark.browser


def test_sidebar_plots_metrics_and_flags_the_drifting_features(lab, page, workspace, diabetes):  # noqa: F811
    from playwright.sync_api import expect

    X, _, lr = diabetes
    inst = workspace.serve(lr, name="diabetes", sample=X, runtime="process", progress=False)
    rows = shifted_array(X).tolist()
    for i in range(0, len(rows), 10):
        assert requests.post(f"{inst.url}/predict", json={"data": rows[i : i + 10]}, timeout=10).status_code == 200
    page.goto(lab.url("lab?reset"))
    expect(page.get_by_role("tab", name="Model serving")).to_be_visible(timeout=60_000)
    sidebar = open_sidebar_from_the_palette(page)
    monitor = sidebar.get_by_label(f"Monitoring of {inst.id}")
    expect(monitor.get_by_role("status")).to_contain_text("drifting: x2, x5", timeout=30_000)
    for i in range(30):  # traffic while the sidebar is shown: the time series get points
        requests.post(f"{inst.url}/predict", json={"data": X[i : i + 1].tolist()}, timeout=10)
        time.sleep(0.2)
    expect(monitor.get_by_role("img", name="requests: x time")).to_be_visible()
    page.wait_for_timeout(6000)  # one more refresh of the sidebar
    alerts = {el.get_attribute("data-feature") for el in monitor.locator("[data-status='alert']").all()}
    assert alerts == SHIFTED_ARRAY | {"predict"}  # the two shifted inputs, and the prediction they move
    oks = monitor.locator("[data-status='ok']").count()
    assert oks == 8
    # every chart says what its axes show
    for label in [el.get_attribute("aria-label") for el in monitor.get_by_role("img").all()]:
        assert " x " in f" {label}" and ", y " in label, label
    assert monitor.locator("polyline").count() >= 3
    shot = DOCS / "sidebar-monitoring.png"
    if not shot.exists() or os.environ.get("NBSERVE_UPDATE_SCREENSHOT"):
        item = sidebar.get_by_role("list", name="Model instances")
        box, top = item.bounding_box(), sidebar.bounding_box()
        page.screenshot(
            path=str(shot),
            clip={"x": 0, "y": box["y"] - 30, "width": top["x"] + top["width"], "height": box["height"] + 40},
        )
    inst.remove()
