"""Metrics, the request log and drift (issue 13) on served models: two process-runtime instances with
two gunicorn workers each (a linear model on an array; HistGradientBoosting on a DataFrame with a date,
NaN, NA and None among floats, nullable integers, categories, booleans and strings, with a bearer token),
and the Flask app in process for what needs no server."""

import json
import os
import re
import shutil
import subprocess
import time

import cloudpickle
import numpy as np
import pandas as pd
import pytest
import requests
from nbserve_testing import need
from observability_models import (
    NULLIER_FRAME,
    SHIFTED_ARRAY,
    SHIFTED_FRAME,
    gbm_on_frame,
    mixed_frame,
    nullier_frame,
    records,
    shifted_array,
    shifted_frame,
    unshifted_array,
)

from nbserve.capture import capture
from nbserve.server import metrics as server_metrics
from nbserve.server.app import make_app
from nbserve.server.schema import frame_records

T = 10  # seconds: every HTTP request of these tests has a timeout
PUSH = server_metrics.PUSH_SECONDS + 0.5


@pytest.fixture(scope="module")
def served(tmp_path_factory, diabetes):
    """{"lr": Instance, "gbm": Instance} on the process runtime, 2 workers each; gbm needs a token."""
    from nbserve.workspace import Workspace

    ws = Workspace(tmp_path_factory.mktemp("observability") / "home")
    X, _, lr = diabetes
    frame, gbm = gbm_on_frame()
    insts = {
        "lr": ws.serve(lr, name="lr", sample=X, runtime="process", workers=2, progress=False),
        "gbm": ws.serve(gbm, name="gbm", sample=frame, runtime="process", workers=2, auth_token=True, progress=False),
    }
    yield insts
    for inst in insts.values():
        inst.remove()


def _headers(inst, **extra):
    return {**({"Authorization": f"Bearer {inst.auth_token}"} if inst.auth_token else {}), **extra}


def _post_rows(inst, rows, batch):
    for i in range(0, len(rows), batch):
        r = requests.post(f"{inst.url}/predict", json={"data": rows[i : i + batch]}, headers=_headers(inst), timeout=T)
        assert r.status_code == 200, r.text


def _metric(text, name, **labels):
    """The value of one sample of a Prometheus text exposition (None when absent)."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0])) if "{" in line else {}
        if all(found.get(k) == str(v) for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def _scrape(inst):
    r = requests.get(f"{inst.url}/metrics", headers=_headers(inst), timeout=T)
    assert r.status_code == 200, r.text
    return r.text


def _drift_after(inst, rows, timeout=15.0):
    """/drift once the merged window holds at least ``rows`` rows (workers flush within a second)."""
    deadline = time.monotonic() + timeout
    while True:
        report = requests.get(f"{inst.url}/drift", headers=_headers(inst), timeout=T).json()
        if report["window"]["rows"] >= rows or time.monotonic() > deadline:
            return report
        time.sleep(0.2)


# -- served, under gunicorn ------------------------------------------------------------------------


def test_every_request_is_counted_across_workers_with_buckets_up_to_the_timeout(served, diabetes):
    X = diabetes[0]
    inst = served["lr"]
    before = _metric(_scrape(inst), "nbserve_request_duration_seconds_count", method="predict", status="200") or 0
    ids = []
    for i in range(40):
        r = requests.post(
            f"{inst.url}/predict", json={"data": X[i : i + 1].tolist()}, headers={"X-Request-ID": f"rid-{i}"}, timeout=T
        )
        assert r.status_code == 200
        ids.append(r.headers["X-Request-ID"])
    assert ids == [f"rid-{i}" for i in range(40)]  # echoed back
    generated = requests.post(f"{inst.url}/predict", json={"data": X[:2].tolist()}, timeout=T).headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{16}", generated)
    bad = requests.post(f"{inst.url}/predict", json={"data": [[1, 2]]}, timeout=T)
    assert bad.status_code == 400
    requests.get(f"{inst.url}/no/such/route/{time.time()}", timeout=T)

    time.sleep(PUSH)  # the other worker's tallies reach the shared files within a second
    text = _scrape(inst)
    labels = dict(model="lr", version="1", method="predict")
    assert _metric(text, "nbserve_request_duration_seconds_count", status="200", **labels) == before + 41
    assert _metric(text, "nbserve_requests_total", status="200", **labels) == before + 41
    assert _metric(text, "nbserve_requests_total", status="400", **labels) == 1
    # an odd path is counted as method "other", never as a label of its own
    assert _metric(text, "nbserve_requests_total", method="other", status="404") == 1
    assert "no/such" not in text
    les = [float(x) for x in re.findall(r'nbserve_request_duration_seconds_bucket\{[^}]*le="([^"]+)"', text)]
    finite = sorted({x for x in les if x != float("inf")})
    assert finite[0] == 0.001 and finite[-1] == 60.0  # 1 ms .. the request timeout (60 s by default)
    assert _metric(text, "nbserve_request_rows_count", **labels) == before + 41 + 0  # 400 is refused before the model
    assert _metric(text, "nbserve_request_rows_sum", **labels) >= 42
    assert _metric(text, "nbserve_requests_in_progress", model="lr", version="1") == 0


@pytest.mark.parametrize("which", ["lr", "gbm"])
def test_the_request_log_has_one_json_line_per_request_and_no_payload(served, diabetes, which):
    inst = served[which]
    if which == "lr":
        data, secret = diabetes[0][:3].tolist(), f"{diabetes[0][0, 0]:.6f}"[:8]
    else:  # dates, NaN, NA and None in the rows
        data = records(mixed_frame(3, seed=12))
        data[0]["visits"], data[1]["balance"], data[2]["region"] = None, None, None  # NA, NaN and None
        data[0]["signup"], secret = "2023-04-05T06:07:08", "2023-04-05"
    marker = f"log-{which}-{time.time()}"
    r = requests.post(
        f"{inst.url}/predict", json={"data": data}, headers=_headers(inst, **{"X-Request-ID": marker}), timeout=T
    )
    assert r.status_code == 200, r.text
    deadline = time.monotonic() + 5
    while marker not in inst.logs(tail=500) and time.monotonic() < deadline:
        time.sleep(0.1)
    line = next(ln for ln in inst.logs(tail=500).splitlines() if marker in ln)
    entry = json.loads(line)
    assert entry["request_id"] == marker and entry["status"] == 200 and entry["rows"] == 3
    assert entry["http"] == "POST" and entry["method"] == "predict" and entry["duration_ms"] > 0
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry["time"])
    assert "body" not in entry and secret not in line


def test_metrics_and_drift_need_the_token_when_one_is_set(served):
    inst = served["gbm"]
    for path in ("/metrics", "/drift"):
        assert requests.get(inst.url + path, timeout=T).status_code == 401
        assert requests.get(inst.url + path, headers=_headers(inst), timeout=T).status_code == 200
    assert requests.get(inst.url + "/health", timeout=T).status_code == 200


@pytest.mark.parametrize("which", ["lr", "gbm"])
def test_drift_flags_exactly_the_shifted_features(served, diabetes, which):
    inst = served[which]
    if which == "lr":
        rows, shifted, names = shifted_array(diabetes[0]).tolist(), SHIFTED_ARRAY, [f"x{j}" for j in range(10)]
    else:
        rows, shifted, names = records(shifted_frame()), SHIFTED_FRAME, list(mixed_frame(5).columns)
    _post_rows(inst, rows, batch=5 if which == "lr" else 25)
    report = _drift_after(inst, len(rows))
    assert report["available"] and report["window"]["rows"] >= len(rows)
    assert report["window"]["workers"] >= 1 and report["window"]["size"] == 1000
    inputs = {f["name"]: f for f in report["features"] if f["role"] == "input"}
    assert sorted(inputs) == sorted(names)
    assert set(report["drifted_features"]) == shifted
    assert {n for n, f in inputs.items() if f["status"] == "alert"} == shifted
    assert all(inputs[n]["psi"] < 0.1 for n in names if n not in shifted)
    assert report["drift"] is False  # fewer than half of the features
    assert report["thresholds"] == {"psi_warn": 0.1, "psi_alert": 0.25, "min_rows": 100, "overall_share": 0.5}
    kinds = {n: (f["kind"], f["test"]) for n, f in inputs.items()}
    if which == "gbm":
        assert kinds["plan"] == ("categorical", "chi2") and kinds["member"] == ("categorical", "chi2")
        assert kinds["region"] == ("categorical", "chi2")  # strings, with None
        assert kinds["age"] == ("numeric", "ks") and kinds["visits"] == ("numeric", "ks")  # visits: Int64 with NA
        assert kinds["signup"] == ("numeric", "ks") and inputs["signup"]["unit"] == "days since 1970-01-01"
        # the sample's signups run over 2022-2023, in days since 1970 (19000 to 19723), the shifted ones later
        assert 18990 < inputs["signup"]["reference"]["edges"][0] < inputs["signup"]["reference"]["edges"][-1] < 19723
        assert inputs["signup"]["live"]["shares"][-2] > 0.95  # past the last decile edge
        # nulls: the sample's shares, and the same again live (unshifted there)
        for name in ("visits", "region", "balance"):
            null = inputs[name]["null"]
            assert 0.05 < null["reference"] < 0.15 and abs(null["live"] - null["reference"]) < 0.05, (name, null)
    assert all(f["p_value"] < 1e-6 for n, f in inputs.items() if n in shifted)

    # the same verdict in /metrics, summed over both workers' windows
    text = _scrape(inst)
    for name in names:
        status = _metric(text, "nbserve_drift_status", model=which, role="input", feature=name)
        assert status == (2 if name in shifted else 0), name
    assert _metric(text, "nbserve_drift_detected", model=which) == 0
    assert _metric(text, "nbserve_drift_window_rows", model=which) >= len(rows)

    # and through the Python face
    frame = inst.drift()
    assert set(frame[(frame.role == "input") & frame.drifted].name) == shifted
    assert frame.attrs["drift"] is False


def test_instance_metrics_summarise_the_methods(served, diabetes):
    """inst.metrics() right after the calls holds every one of them, whichever of the two workers answered
    (each publishes once a second: the reading waits for both to pass the moment it was asked)."""
    inst = served["gbm"]
    before = inst.metrics(raw=True)["methods"].get("predict", {}).get("requests", 0)
    _post_rows(inst, records(mixed_frame(20, seed=9)), batch=1)
    summary = inst.metrics()
    row = summary.set_index("method").loc["predict"]
    assert row.requests == before + 20 and row.errors == 0 and row.error_rate == 0
    assert 0 < row.p50_ms <= row.p99_ms < 60_000
    snap = inst.metrics(raw=True)
    assert snap["methods"]["predict"]["buckets"][-1][0] == float("inf")


# -- in process (Flask's test client) --------------------------------------------------------------


def _app(obj, sample, monkeypatch=None, **env):
    if monkeypatch is not None:
        for k, v in env.items():
            monkeypatch.setenv(k, v)
    cap = capture(obj, label="m", sample=sample, proof=False)
    return make_app(cloudpickle.loads(cap.pickle), cap.manifest, model_id="m:3").test_client(), cap.manifest


def test_reference_is_compact_and_covers_inputs_and_outputs(diabetes):
    frame, gbm = gbm_on_frame()
    ref = capture(gbm, label="g", sample=frame, proof=False).manifest["reference"]
    assert ref["rows"] == len(frame)
    assert [f["name"] for f in ref["input"]] == list(frame.columns)
    by = {f["name"]: f for f in ref["input"]}
    assert by["plan"]["kind"] == "categorical" and set(by["plan"]["values"]) == {"basic", "plus", "pro"}
    assert by["member"]["values"] == ["false", "true"]
    assert by["age"]["kind"] == "numeric" and len(by["age"]["edges"]) == 9
    for name, feature in by.items():
        assert abs(sum(feature["shares"]) + feature["null"] - 1) < 1e-4, name
    # nulls as the sample has them: NaN in a float column, NA in a nullable integer, None among strings
    for name in ("balance", "visits", "region"):
        assert by[name]["null"] == pytest.approx(frame[name].isna().mean(), abs=1e-6), name
    assert by["region"]["kind"] == "categorical" and None not in by["region"]["values"]
    # a date column: deciles in days since 1970, whatever the column's unit (pandas 3 reads these as us)
    days = (frame["signup"] - pd.Timestamp("1970-01-01")) / pd.Timedelta(days=1)
    assert by["signup"]["unit"] == "days since 1970-01-01"
    assert by["signup"]["edges"] == pytest.approx(list(days.quantile([i / 10 for i in range(1, 10)])), abs=1e-3)
    assert [f["name"] for f in ref["outputs"]["predict"]] == ["predict"]
    assert len(json.dumps(ref)) < 8000
    X, _, lr = diabetes
    assert len(json.dumps(capture(lr, label="l", sample=X, proof=False).manifest["reference"])) < 8000


def test_unshifted_traffic_does_not_drift_and_half_the_features_set_the_overall_flag(diabetes):
    X, _, lr = diabetes
    client, _ = _app(lr, X)
    for i in range(0, 500, 5):
        assert client.post("/predict", json={"data": unshifted_array(X)[i : i + 5].tolist()}).status_code == 200
    report = client.get("/drift").get_json()
    assert report["window"]["rows"] == 500 and report["drifted_features"] == [] and report["drift"] is False
    shifted = unshifted_array(X, seed=5)
    shifted[:, :5] += 3 * X[:, :5].std(axis=0)
    for i in range(0, 1000, 10):  # the window (1000 rows) rolls over to the shifted rows only
        client.post("/predict", json={"data": shifted[i % 500 : i % 500 + 10].tolist()})
    report = client.get("/drift").get_json()
    assert set(report["drifted_features"]) == {f"x{j}" for j in range(5)} and report["drift"] is True
    assert 1000 <= report["window"]["rows"] < 1100


def test_a_rise_in_the_null_share_is_drift():
    frame, gbm = gbm_on_frame()
    client, _ = _app(gbm, frame)
    rows = records(nullier_frame())
    for i in range(0, len(rows), 50):
        resp = client.post("/predict", json={"data": rows[i : i + 50]})
        assert resp.status_code == 200, resp.get_json()
    report = client.get("/drift").get_json()
    inputs = {f["name"]: f for f in report["features"] if f["role"] == "input"}
    assert set(report["drifted_features"]) == NULLIER_FRAME and report["drift"] is False
    for name in NULLIER_FRAME:
        assert inputs[name]["null"]["reference"] < 0.15 and inputs[name]["null"]["live"] > 0.4, inputs[name]
    assert inputs["visits"]["status"] == "ok"  # its null share (NA) did not move
    # the KS statistic compares the non-null values: balance's are still the sample's
    assert inputs["balance"]["test"] == "ks" and inputs["balance"]["statistic"] < 0.1


def test_dates_with_a_time_zone_and_durations_are_compared_in_days_and_seconds():
    """A column the reference could not bin used to cost every feature its drift (the reference was
    dropped whole): a date with a time zone was one. Now in days since 1970 (UTC) and durations in seconds."""

    def predict(frame):
        return frame["amount"].to_numpy() * 2

    rng = np.random.default_rng(0)
    n = 400

    def table(start, m, seed):
        r = np.random.default_rng(seed)
        return pd.DataFrame(
            {
                "amount": r.normal(100, 10, m).round(2),
                "at": pd.Timestamp(start, tz="Europe/Paris") + pd.to_timedelta(r.integers(0, 90 * 24, m), unit="h"),
                "wait": pd.to_timedelta(r.integers(0, 600, m), unit="s"),
            }
        )

    sample = table("2024-01-01", n, rng.integers(1000))
    client, manifest = _app(predict, sample)
    ref = {f["name"]: f for f in manifest["reference"]["input"]}
    assert ref["at"]["unit"] == "days since 1970-01-01" and 19723 <= ref["at"]["edges"][0] < 19813
    assert ref["wait"]["unit"] == "seconds" and 0 < ref["wait"]["edges"][0] < ref["wait"]["edges"][-1] < 600
    later = frame_records(table("2024-07-01", 300, 5))
    assert later[0]["at"].endswith("+02:00")  # ISO strings with the offset, as the client writes them
    for i in range(0, 300, 50):
        assert client.post("/predict", json={"data": later[i : i + 50]}).status_code == 200
    report = client.get("/drift").get_json()
    inputs = {f["name"]: f for f in report["features"] if f["role"] == "input"}
    assert report["drifted_features"] == ["at"], inputs
    assert inputs["wait"]["status"] == "ok" and inputs["amount"]["status"] == "ok"


class Opaque:
    """A cell no binning can read (its text raises): stands for any column drift cannot compare."""

    def __str__(self):
        raise TypeError("no text for this cell")


def test_a_column_that_cannot_be_binned_is_reported_not_computed_and_the_others_still_count():
    def predict(frame):
        return frame["amount"].to_numpy()

    rng = np.random.default_rng(0)
    sample = pd.DataFrame({"amount": rng.normal(100, 10, 300), "blob": [Opaque() for _ in range(300)]})
    client, manifest = _app(predict, sample)
    blob = {f["name"]: f for f in manifest["reference"]["input"]}["blob"]
    assert blob["kind"] == "unsupported" and "no text for this cell" in blob["reason"]
    rows = [{"amount": float(a), "blob": "x"} for a in rng.normal(150, 10, 200)]
    assert client.post("/predict", json={"data": rows}).status_code == 200
    resp = client.get("/drift")
    assert resp.status_code == 200
    report = resp.get_json()
    inputs = {f["name"]: f for f in report["features"] if f["role"] == "input"}
    assert inputs["blob"]["status"] == "not_computed" and inputs["blob"]["psi"] is None
    assert "cannot be binned" in inputs["blob"]["reason"] and inputs["blob"]["drifted"] is False
    assert inputs["amount"]["status"] == "alert" and report["drifted_features"] == ["amount"]
    assert report["drift"] is True  # the one feature that can be judged drifts
    text = client.get("/metrics").data.decode()
    assert _metric(text, "nbserve_drift_status", feature="blob") == -2
    assert _metric(text, "nbserve_drift_status", feature="amount") == 2

    # live values that will not bin (the server decodes by the schema, so only odd models get here)
    from nbserve.capture.reference import reference
    from nbserve.server.drift import Monitor

    monitor = Monitor(reference(pd.DataFrame({"amount": sample["amount"], "code": np.arange(300.0)}), {}))
    monitor.add("predict", pd.DataFrame({"amount": rng.normal(100, 10, 200), "code": ["a7"] * 200}), None)
    live = {f["name"]: f for f in monitor.report("m:1")["features"]}
    assert live["code"]["status"] == "not_computed" and "live values cannot be binned" in live["code"]["reason"]
    assert live["amount"]["status"] == "ok" and live["amount"]["rows"] == 200


def test_few_rows_are_still_collecting_and_no_sample_means_no_reference(diabetes):
    X, _, lr = diabetes
    client, _ = _app(lr, X)
    client.post("/predict", json={"data": X[:10].tolist()})
    report = client.get("/drift").get_json()
    assert {f["status"] for f in report["features"]} == {"collecting"} and report["drift"] is False

    def double(x):
        return x * 2

    cap = capture(double, label="d", proof=False)
    bare = make_app(cloudpickle.loads(cap.pickle), cap.manifest, model_id="d:1").test_client()
    report = bare.get("/drift").get_json()
    assert report["available"] is False and "sample" in report["reason"]


def test_model_errors_are_counted_by_exception_type(diabetes):
    X = diabetes[0]

    def fragile(x):
        if x[0, 0] > 0:
            raise ZeroDivisionError("boom")
        return x.sum(axis=1)

    client, _ = _app(fragile, X[X[:, 0] <= 0])
    positive = X[X[:, 0] > 0][:3]
    for row in positive:
        assert client.post("/fragile", json={"data": [row.tolist()]}).status_code == 500
    text = client.get("/metrics").data.decode()
    assert _metric(text, "nbserve_model_errors_total", method="fragile", exception="ZeroDivisionError") == 3
    assert _metric(text, "nbserve_requests_total", method="fragile", status="500") == 3


def test_buckets_run_from_one_millisecond_to_the_timeout():
    assert server_metrics.buckets(60)[0] == 0.001 and server_metrics.buckets(60)[-1] == 60
    assert server_metrics.buckets(2.5)[-2:] == [1, 2.5]
    assert max(server_metrics.buckets(0)) == 600  # no timeout: up to ten minutes


def test_bodies_are_logged_only_when_asked_and_each_of_the_three_has_its_own_switch(diabetes, monkeypatch, capfd):
    X, _, lr = diabetes
    client, _ = _app(lr, X, monkeypatch, NBSERVE_REQUEST_LOG="bodies")
    client.post("/predict", json={"data": X[:1].tolist()}, headers={"X-Request-ID": "with-body"})
    time.sleep(1.5)  # lines are written in batches, at the latest a second later
    line = next(ln for ln in capfd.readouterr().err.splitlines() if "with-body" in ln)
    assert json.loads(json.loads(line)["body"])["data"] == X[:1].tolist()
    # metrics off: /metrics is a 404 saying how to turn them on; the log and drift go on
    client, _ = _app(lr, X, monkeypatch, NBSERVE_REQUEST_LOG="1", NBSERVE_METRICS="0")
    resp = client.get("/metrics")
    assert resp.status_code == 404 and "metrics=True" in resp.get_json()["error"]["message"]
    client.post("/predict", json={"data": X[:1].tolist()}, headers={"X-Request-ID": "metrics-off"})
    assert client.get("/drift").status_code == 200
    time.sleep(1.5)
    assert "metrics-off" in capfd.readouterr().err
    # the log off: no line; drift off: /drift is a 404; metrics go on
    client, _ = _app(lr, X, monkeypatch, NBSERVE_REQUEST_LOG="0", NBSERVE_METRICS="1", NBSERVE_DRIFT="0")
    client.post("/predict", json={"data": X[:1].tolist()}, headers={"X-Request-ID": "log-off"})
    resp = client.get("/drift")
    assert resp.status_code == 404 and "drift=True" in resp.get_json()["error"]["message"]
    assert 'method="predict"' in client.get("/metrics").get_data(as_text=True)
    time.sleep(1.5)
    assert "log-off" not in capfd.readouterr().err


# -- faces: the panel, the CLI; a real Prometheus ----------------------------------------------------


def test_panel_plots_traffic_and_shows_exactly_the_drifting_features(served, diabetes):
    from nbserve.widgets import Panel

    inst = served["lr"]
    panel = Panel(inst._workspace, refresh_seconds=3600)
    try:
        _post_rows(inst, shifted_array(diabetes[0], seed=7).tolist(), batch=25)
        _drift_after(inst, 500)
        time.sleep(PUSH)
        panel.refresh()
        _post_rows(inst, diabetes[0][:20].tolist(), batch=1)
        time.sleep(PUSH)
        panel.refresh()
        view = panel.monitor(inst.id)
        assert view.error is None, view.error
        last = view.points[-1]  # between the last two refreshes: the 20 one-row requests
        assert last["requests"] == 20 and last["rate"] > 0 and last["error_rate"] == 0
        assert 0 < last["p50_ms"] <= last["p99_ms"]
        assert view.traffic_plot.png[:8] == b"\x89PNG\r\n\x1a\n" and view.drift_plot.png[:8] == b"\x89PNG\r\n\x1a\n"
        assert "requests / s" in view.traffic_plot.description and "% of rows" in view.drift_plot.description
        assert set(view.drifted) == SHIFTED_ARRAY
        caption = view.caption.value
        assert all(name in caption for name in SHIFTED_ARRAY) and "x3" not in caption
        assert view.box in panel.monitoring.box.children
        assert set(panel.monitoring.views) == {i.id for i in served.values()}
    finally:
        panel.close()


def test_cli_prints_metrics_drift_and_a_scrape_config(served, monkeypatch, capsys):
    from nbserve.cli import main

    inst = served["gbm"]
    monkeypatch.setenv("NBSERVE_HOME", str(inst._workspace.home))
    _post_rows(inst, records(mixed_frame(5, seed=4)), batch=5)
    time.sleep(PUSH)
    assert main(["metrics", inst.id]) == 0
    out = capsys.readouterr().out
    assert "METHOD" in out and "predict" in out
    assert main(["drift", "gbm"]) == 0
    out = capsys.readouterr().out
    assert "PSI" in out and "plan" in out and "region" in out
    assert main(["prometheus-config"]) == 0
    config = capsys.readouterr().out
    assert config.count("job_name:") == 2 and "credentials_file" in config
    assert inst.auth_token not in config  # the token goes to a 0600 file, never into the printed config
    token_file = re.search(r'credentials_file: "([^"]+)"', config).group(1)
    assert open(token_file).read() == inst.auth_token and (os.stat(token_file).st_mode & 0o077) == 0


def test_prometheus_scrapes_both_instances(served, diabetes, tmp_path):
    prometheus = shutil.which("prometheus")
    need(prometheus is not None, "Prometheus", "bash .ci/setup-prometheus (Debian's prometheus package)")
    from nbserve.runtimes.base import free_port

    ws = served["lr"]._workspace
    _post_rows(served["lr"], shifted_array(diabetes[0], n=200).tolist(), batch=10)
    _post_rows(served["gbm"], records(shifted_frame(200)), batch=10)
    config = tmp_path / "prometheus.yml"
    config.write_text(ws.prometheus_config(interval="1s"))
    port = free_port()
    api = f"http://127.0.0.1:{port}/api/v1"
    with open(tmp_path / "prometheus.log", "wb") as log:
        proc = subprocess.Popen(
            [
                prometheus,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:

        def query(q):
            r = requests.get(f"{api}/query", params={"query": q}, timeout=T)
            r.raise_for_status()
            return r.json()["data"]["result"]

        deadline = time.monotonic() + 90
        up = []
        while time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "prometheus.log").read_text()[-2000:]
            try:
                up = query('up{job=~"nbserve-.*"}')
            except requests.RequestException:
                up = []
            if len(up) == 2 and all(s["value"][1] == "1" for s in up):
                break
            time.sleep(0.5)
        assert sorted(s["metric"]["nbserve_instance"] for s in up) == sorted(i.id for i in served.values())
        assert all(s["value"][1] == "1" for s in up), up  # the gbm one scraped with its bearer token
        for name in ("lr", "gbm"):
            buckets = query(f'nbserve_request_duration_seconds_bucket{{model="{name}",method="predict",status="200"}}')
            assert {s["metric"]["le"] for s in buckets} >= {"0.001", "60.0", "+Inf"}, name
            count = query(f'sum(nbserve_request_duration_seconds_count{{model="{name}",method="predict"}})')
            assert float(count[0]["value"][1]) > 0
            drift = served[name].drift(raw=True)
            shifted = set(drift["drifted_features"])
            gauges = query(f'nbserve_drift_status{{model="{name}",role="input"}}')
            assert len(gauges) == len([f for f in drift["features"] if f["role"] == "input"])
            assert {s["metric"]["feature"] for s in gauges if s["value"][1] == "2"} == shifted
            assert query(f'nbserve_drift_detected{{model="{name}"}}')[0]["value"][1] == "0"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
