"""Streams and jobs in every face: the panel (a streaming method marked, a text function's OpenAI route, the
Jobs section with Cancel, the time to the first item and items per second), the CLI (``nbserve jobs``,
``--cancel``, the metrics' stream columns), the magics (``%nbserve jobs``, ``%serve --kind``), and the
Jupyter server's REST routes the sidebar reads (tests/ui/test_streaming_ui.py drives the sidebar itself)."""

from __future__ import annotations

import json
import time

import pytest
from long_calls import simulate, ticks
from nbserve_testing import run_cli

from nbserve.widgets import Panel

pytest_plugins = ("pytest_jupyter.jupyter_server",)
TIMEOUT = 30


def wait_for(predicate, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, "not within the time"
        time.sleep(0.05)


def reply(messages):
    for word in ("hello", "from", "a", "chat", "function"):
        yield word + " "


@pytest.fixture(scope="module")
def served(module_workspace):
    ws = module_workspace
    streaming = ws.serve(ticks, runtime="process", progress=False)
    long = ws.serve(simulate, runtime="process", progress=False)
    chat = ws.serve(reply, kind="chat", runtime="process", progress=False)
    list(streaming.client(timeout=TIMEOUT).stream("ticks", {"n": 6, "every": 0.05}))
    list(chat.client(timeout=TIMEOUT).stream("reply", [{"role": "user", "content": "hi"}]))
    return ws, streaming, long, chat


@pytest.fixture
def running_job(served):
    ws, _, long, _ = served
    job = long.client(timeout=TIMEOUT).submit("simulate", {"seconds": 60, "steps": 600})
    wait_for(lambda: (job.progress or {}).get("fraction"))
    yield job
    if not job.done():
        job.cancel()


def test_the_panel_marks_streams_shows_jobs_with_cancel_and_stream_speed(served, running_job):
    ws, streaming, long, chat = served
    panel = Panel(ws, refresh_seconds=0)
    try:
        methods = panel.model_row("ticks").cells[1].value
        assert "ticks" in methods and "(streams)" in methods
        chat_methods = panel.model_row("reply").cells[1].value
        assert "OpenAI chat" in chat_methods and "/v1/chat/completions" in chat_methods
        assert panel.model_row("simulate").cells[1].value == "simulate"  # a plain function: nothing added
        # the running job, with its progress and a Cancel button that cancels it
        row = panel.jobs.rows[(long.id, running_job.id)]
        status, progress = row.cells[2].value, row.cells[3].value
        assert ">running<" in status and "step " in progress and "%" in progress
        assert row.cancel.layout.visibility == "visible"
        row.cancel.click()
        wait_for(lambda: running_job.cancelled())
        panel.refresh()
        row = panel.jobs.rows[(long.id, running_job.id)]
        assert ">cancelled<" in row.cells[2].value and row.cancel.layout.visibility == "hidden"
        assert "the job was cancelled" in row.cells[3].value
        # a streaming method's time to its first item and items per second; a chat function's tokens per second
        text = panel.monitoring.views[streaming.id].streams.value
        assert "<b>ticks</b> streams: first item (p50)" in text and "items/s" in text and "6 items" in text
        assert "tokens/s" in panel.monitoring.views[chat.id].streams.value
        assert panel.monitoring.views[long.id].streams.value == ""  # it streamed nothing
    finally:
        panel.close()


def test_the_cli_lists_and_cancels_jobs_and_shows_stream_columns(served, running_job):
    ws, streaming, long, _ = served
    code, out, err = run_cli(ws.home, "jobs", long.id)
    assert code == 0, err
    assert running_job.id in out and "running" in out and "step " in out
    assert out.splitlines()[1].split() == ["JOB", "METHOD", "STATUS", "PROGRESS", "TIME", "ERROR"]
    code, out, err = run_cli(ws.home, "jobs", long.id, "--cancel", running_job.id)
    assert (code, out.strip()) == (0, f"{running_job.id} cancelling"), err
    wait_for(lambda: running_job.cancelled())
    code, out, _ = run_cli(ws.home, "--json", "jobs", long.id)
    found = {j["id"]: j for j in json.loads(out)["jobs"]}
    assert found[running_job.id]["status"] == "cancelled"
    code, out, _ = run_cli(ws.home, "metrics", streaming.id)
    header = out.splitlines()[1]
    assert "FIRST ITEM MS" in header and "ITEMS/S" in header
    line = next(line for line in out.splitlines() if line.startswith("ticks"))
    assert line.split()[-1] != "-"  # items per second


def test_the_magics_serve_a_chat_function_and_list_jobs(ipython, workspace, capsys):
    ipython.user_ns["answer"] = reply
    inst = ipython.run_line_magic("serve", "answer --kind chat --runtime process")
    assert inst.status == "running" and workspace.get_model("answer").text_kind == "chat"
    interface = inst.client(timeout=TIMEOUT).interface
    assert any(p["name"] == "openai" for p in interface["protocols"])
    job = inst.client(timeout=TIMEOUT).submit("reply", [{"role": "user", "content": "hi"}])  # its own name
    assert "".join(job.result(timeout=TIMEOUT)) == "hello from a chat function "
    capsys.readouterr()
    ipython.run_line_magic("nbserve", f"jobs {inst.id}")
    out = capsys.readouterr().out
    assert inst.id in out and job.id in out and "succeeded" in out


@pytest.fixture
def jp_server_config(served, monkeypatch):
    monkeypatch.setenv("NBSERVE_HOME", str(served[0].home))  # the server's workspace: the module's registry
    return {"ServerApp": {"jpserver_extensions": {"nbserve": True}}}


async def test_the_rest_routes_give_jobs_and_cancel_them(served, jp_fetch, running_job):
    ws, streaming, long, chat = served
    resp = await jp_fetch("nbserve", "api", "instances", long.id, "jobs")
    jobs = json.loads(resp.body)["jobs"]
    assert running_job.id in [j["id"] for j in jobs]
    resp = await jp_fetch("nbserve", "api", "instances", long.id, "jobs", running_job.id, method="DELETE")
    assert json.loads(resp.body)["job"]["id"] == running_job.id
    wait_for(lambda: running_job.cancelled())
    resp = await jp_fetch("nbserve", "api", "instances", chat.id, "monitor")
    body = json.loads(resp.body)
    assert body["text_kind"] == "chat" and body["snapshot"]["methods"]["reply"]["items"] >= 5
    assert body["jobs"] == [] or all(j["method"] == "reply" for j in body["jobs"])
