"""The panel's Versions section (issue 22), driven through its buttons (``button.click()`` runs the handlers a click
in the browser does) against real process-runtime instances: "following lr", a shadow's comparison side by side
with Promote and Discard, Rollback and End split; a client loop runs through the clicked changes without a
failure. Two families: the diabetes regression and the rentals pipeline (its labels compared as classes)."""

import time

import numpy as np
from loop_families import FAMILIES
from request_loop import RequestLoop

import nbserve
from nbserve.widgets import Panel


def test_the_versions_card_follows_compares_promotes_and_rolls_back(workspace):
    f = FAMILIES["diabetes"]()
    inst = nbserve.serve(f.v1, name="diabetes", sample=f.sample, runtime="process", progress=False)
    panel = Panel(workspace, refresh_seconds=3600)
    try:
        assert inst.id not in panel.versions.cards  # nothing to say yet: no card
        workspace.set_follow(inst.id, "lr")  # what %serve lr --follow records for the panel
        panel.refresh()
        card = panel.version_card(inst.id)
        assert "following lr" in card.title.value and card.rollback.disabled
        assert "following lr" in panel.instance_row(inst.id).cells[0].value

        candidate = inst.shadow(f.nudged(f.v1), sample=f.sample, progress=False)
        client = inst.client(timeout=30)
        rows = f.sample[:60]
        for i in range(len(rows)):
            client.predict(rows[i : i + 1])
        deadline = time.monotonic() + 30
        while len(inst.comparison()) < len(rows) and time.monotonic() < deadline:
            time.sleep(0.2)
        panel.refresh()
        card = panel.version_card(inst.id)
        expected = 1.0 - float(np.mean(f.differs(rows)))
        assert card.summary["agreement"] == expected
        assert f"{expected:.1%}" in card.table.value and "latency p99" in card.table.value
        assert "<img" in card.plot.value and "answers: diabetes:2 against diabetes:1" in card.plot.value
        assert card.shadow_actions.layout.display == "" and not card.promote.disabled
        assert panel.instance_row(inst.id).stop.layout.display != "none"  # only the card's own boxes hide
        assert "shadow candidate of" in panel.instance_row(candidate.id).cells[0].value

        url = inst.url
        with RequestLoop(lambda: [url], f.body(), path=f.path, key=f.key) as loop:
            time.sleep(0.5)
            card.promote.click()
            assert panel.last_error is None, panel.last_error
            assert inst.reload().model == "diabetes:2" and inst.shadowed_by is None
            card = panel.version_card(inst.id)
            assert not card.rollback.disabled and "served before: diabetes:1" in card.title.value
            card.rollback.click()
            assert panel.last_error is None, panel.last_error
            loop.run_for_at_least(3)
        assert not loop.failures, loop.summary()
        assert inst.reload().model == "diabetes:1" and candidate.id not in {i.id for i in nbserve.instances()}

        nbserve.register(f.v2, name="diabetes", sample=f.sample, progress=False)
        inst.split({"diabetes:1": 50, "diabetes:3": 50}, progress=False)
        panel.refresh()
        card = panel.version_card(inst.id)
        assert "split diabetes:1 50% · diabetes:3 50%" in card.title.value and card.end_split.layout.display == ""
        card.end_split.click()
        assert inst.reload().split_weights is None and inst.model == "diabetes:1"
    finally:
        panel.close()


def test_a_shadowed_pipeline_is_compared_by_its_labels_and_discarded(workspace):
    f = FAMILIES["rentals"]()
    inst = nbserve.serve(f.v1, name="rentals", sample=f.sample, runtime="process", threads=1, progress=False)
    panel = Panel(workspace, refresh_seconds=3600)
    try:
        candidate = inst.shadow(f.nudged(f.v1), sample=f.sample, progress=False)
        rows = f.sample.iloc[:40]
        client = inst.client(timeout=60)
        for i in range(0, len(rows), 4):
            client.predict(rows.iloc[i : i + 4])
        deadline = time.monotonic() + 60
        while len(inst.comparison()) < len(rows) and time.monotonic() < deadline:
            time.sleep(0.2)
        panel.refresh()
        card = panel.version_card(inst.id)
        assert card.summary["agreement"] == 1.0 - float(np.mean(f.differs(rows)))
        assert "<img" in card.plot.value
        card.discard.click()
        assert panel.last_error is None, panel.last_error
        assert inst.reload().shadowed_by is None and inst.model == "rentals:1"
        assert candidate.id not in {i.id for i in nbserve.instances()}
        assert inst.id not in panel.versions.cards  # nothing left to say
    finally:
        panel.close()
