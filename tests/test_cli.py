"""The console script, run as a user runs it."""

import json

import requests
from nbserve_testing import run_cli as nbserve


def test_cli_lists_serves_and_stops(workspace, diabetes):
    X, _, lr = diabetes
    home = workspace.home
    assert "no models registered yet" in nbserve(home, "models")[1]
    workspace.register(lr, name="diabetes", sample=X, progress=False)
    code, out, _ = nbserve(home, "models")
    assert code == 0 and "diabetes:1" in out and "predict" in out
    code, out, err = nbserve(home, "serve", "diabetes", "--runtime", "process")
    assert code == 0, err
    url = out.strip().splitlines()[-1]
    assert requests.get(url + "/health", timeout=5).json()["model"] == "diabetes:1"
    code, out, _ = nbserve(home, "--json", "instances")
    [inst] = json.loads(out)
    assert inst["status"] == "running" and inst["url"] == url
    code, out, _ = nbserve(home, "--json", "registry", "running")  # what the registry is told runs where
    [where] = json.loads(out)
    assert (where["model"], where["instance"], where["url"], where["status"]) == (
        "diabetes:1",
        inst["id"],
        url,
        "running",
    )
    code, out, _ = nbserve(home, "models")
    assert "@" in out.splitlines()[1] and out.splitlines()[1].rstrip().endswith("1")  # BY user@host, RUNNING 1
    code, out, _ = nbserve(home, "--json", "registry", "info")
    assert json.loads(out)["metadata"] == f"sqlite:///{home}/registry.db"
    code, out, _ = nbserve(home, "stop", "diabetes")
    assert code == 0 and f"{inst['id']} stopped" in out
    code, _, err = nbserve(home, "stop", "nothing-here")
    assert code == 1 and "no instance or model named 'nothing-here'" in err


def test_versions_of_an_unknown_model_names_it_and_fails(workspace, diabetes):
    X, _, lr = diabetes
    home = workspace.home
    code, out, err = nbserve(home, "versions", "UNKNOWN")
    assert code == 1 and out == "" and "no model named 'UNKNOWN'; no model is registered yet" in err, (code, out, err)
    workspace.register(lr, name="diabetes", sample=X, progress=False)
    code, out, err = nbserve(home, "versions", "UNKNOWN")
    assert code == 1 and "no model named 'UNKNOWN'; registered models: diabetes" in err, (code, out, err)
    code, out, _ = nbserve(home, "versions", "diabetes")
    assert code == 0 and "diabetes:1" in out
    # a version number no registry holds: a clear refusal (it was an OverflowError from SQLite)
    code, out, err = nbserve(home, "serve", "diabetes:100000000000000000000", "--runtime", "process")
    assert code == 1 and "version 100000000000000000000 is out of range" in err, (code, out, err)
    code, out, err = nbserve(home, "serve", "diabetes", "--runtime", "process", "--port", "70000")
    assert code == 1 and "port 70000 is out of range: a TCP port is from 1 to 65535" in err, (code, out, err)


def test_the_live_window_reads_without_contradiction():
    from nbserve.cli import live_window

    assert live_window({"rows": 1014, "size": 1000, "workers": 1}) == (
        "1014 live rows (the worker keeps about its last 1000)"
    )
    assert "each of 2 workers keeps about its last 1000" in live_window({"rows": 1890, "size": 1000, "workers": 2})
