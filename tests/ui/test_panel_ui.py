"""The notebook faces in a real JupyterLab and Chromium: `%serve` in a notebook, then the ipywidgets panel,
whose Stop and Start buttons really stop and start the server; the panel follows a server killed from
outside by itself, and its refresh thread ends once no view shows it (ipywidgets' _view_count).

Reuses the `lab` and `page` fixtures of test_sidebar.py (a `jupyter lab` per test with its own registry,
and Debian's Chromium driven by Python Playwright)."""

import json
import os
import re
import signal
import urllib.error
import urllib.request

import pytest
from test_sidebar import lab, page  # noqa: F401  (fixtures)

pytestmark = pytest.mark.browser

CELLS = [
    "%load_ext nbserve\ndef double(xs):\n    return [2 * x for x in xs]\nsample = [1, 2]",
    "inst = %serve double --sample sample --runtime process",
    "import nbserve\np = nbserve.panel(refresh_seconds=1)\np",
    "print(f'views={p._view_count} refreshing={p.auto_refreshing}')",
]


def notebook(cells) -> str:
    return json.dumps(
        {
            "nbformat": 4,
            "nbformat_minor": 5,
            "metadata": {
                "kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
            },
            "cells": [
                {
                    "cell_type": "code",
                    "id": f"cell{i}",
                    "source": src,
                    "metadata": {},
                    "outputs": [],
                    "execution_count": None,
                }
                for i, src in enumerate(cells)
            ],
        }
    )


def health(url) -> int:
    try:
        with urllib.request.urlopen(url + "/health", timeout=5) as resp:
            return resp.status
    except (urllib.error.URLError, OSError):
        return 0


def command(tab, label):
    tab.keyboard.press("Control+Shift+C")
    tab.locator(".lm-CommandPalette-input").fill(label)
    tab.locator(".lm-CommandPalette-item", has_text=re.compile(f"^{re.escape(label)}")).first.click()


def test_serve_in_a_notebook_then_stop_and_start_from_the_panel(lab, page, workspace, tmp_path):  # noqa: F811
    from playwright.sync_api import expect

    (tmp_path / "root" / "panel.ipynb").write_text(notebook(CELLS))
    page.goto(lab.url("lab/tree/panel.ipynb?reset"))
    expect(page.get_by_text("| Idle")).to_be_visible(timeout=90_000)
    page.locator(".jp-Notebook").click()
    command(page, "Run All Cells")

    # %serve: the progress view ends green with the instance, the text ends with the URL
    cells = page.locator(".jp-Notebook .jp-Cell")
    serve_out = cells.nth(1).locator(".jp-OutputArea")
    expect(serve_out.locator(".progress-bar-success")).to_be_visible(timeout=90_000)
    expect(serve_out).to_contain_text(re.compile(r"instance double-\w+ is serving double:1 at http://127\.0\.0\.1:\d+"))
    [inst] = workspace.instances()
    assert health(inst.url) == 200

    # the panel: a model row and an instance row, with real buttons
    panel = cells.nth(2).locator(".jp-OutputArea")
    expect(panel.get_by_text(inst.id).first).to_be_visible(timeout=30_000)  # the table, and the plots' title
    expect(panel.get_by_role("link", name=inst.url)).to_have_attribute("href", inst.url)
    stop = panel.get_by_role("button", name="Stop")
    start_instance = panel.get_by_role("button", name="Start").nth(1)  # the first is the model row's
    expect(stop).to_be_enabled()
    expect(start_instance).to_be_disabled()
    page.screenshot(path=str(tmp_path / "panel.png"), full_page=True)

    stop.click()
    expect(panel.get_by_text("stopped", exact=True)).to_be_visible(timeout=30_000)
    assert health(inst.url) == 0 and inst.reload().status == "stopped"

    expect(start_instance).to_be_enabled()
    start_instance.click()
    expect(panel.get_by_text("running", exact=True)).to_be_visible(timeout=60_000)
    inst.reload()
    assert inst.status == "running" and health(inst.url) == 200

    # killed from outside nbserve: the panel's own refresh shows it, no click
    os.killpg(workspace.registry.get_instance(inst.id).handle["pid"], signal.SIGKILL)
    expect(panel.get_by_text("exited", exact=True)).to_be_visible(timeout=30_000)

    # the frontend counts the panel's views; once its output is cleared, the refresh thread ends
    check = cells.nth(3)
    check.click()
    page.keyboard.press("Control+Enter")
    expect(check.locator(".jp-OutputArea")).to_contain_text("views=1 refreshing=True", timeout=30_000)
    cells.nth(2).click()
    command(page, "Clear Cell Output")
    expect(panel.get_by_text(inst.id)).to_have_count(0)
    check.click()
    for _ in range(20):
        page.keyboard.press("Control+Enter")
        try:
            expect(check.locator(".jp-OutputArea")).to_contain_text("views=0 refreshing=False", timeout=1_500)
            break
        except AssertionError:
            continue
    expect(check.locator(".jp-OutputArea")).to_contain_text("views=0 refreshing=False")
