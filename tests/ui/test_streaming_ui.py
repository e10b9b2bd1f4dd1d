"""Streams, jobs and the OpenAI routes in a real browser and through a real Jupyter server's proxy.

A `jupyter lab` runs under JupyterHub's kind of base URL (/user/alice/) with jupyter-server-proxy. Chromium's
``EventSource`` reads a streaming method's server-sent events, from the model directly and through
``{base_url}proxy/{port}/`` behind the Jupyter login, item by item; the official ``openai`` client and
``curl -N`` talk to a chat function through the same proxy; the sidebar marks the streaming method, shows its
time to the first item and items per second, lists a running job and cancels it.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time

import pytest
from long_calls import simulate, ticks
from nbserve_testing import need
from test_remote_jupyter import proxy_installed
from test_sidebar import chromium, open_sidebar_from_the_palette, running_lab

pytestmark = pytest.mark.browser

BASE_URL = "/user/alice/"
TIMEOUT = 30

# collects a stream's events with the time each arrived (ms since it was opened); resolves on "end"
EVENT_SOURCE = """
async (url) => await new Promise((resolve, reject) => {
  const source = new EventSource(url);
  const start = performance.now();
  const got = [];
  source.onmessage = e => got.push([performance.now() - start, JSON.parse(e.data)]);
  source.addEventListener('end', () => { source.close(); resolve(got); });
  source.onerror = () => { source.close(); reject(new Error('the event stream failed after ' + got.length)); };
})
"""


def reply(messages):
    for word in ("one", "two", "three", "four", "five"):
        yield word + " "


@pytest.fixture(scope="module")
def remote(module_workspace, tmp_path_factory):
    need(proxy_installed(), "jupyter-server-proxy", "pip install -e '.[dev]' (it is in the jupyter extra)")
    ws = module_workspace
    streaming = ws.serve(ticks, runtime="process", progress=False)
    long = ws.serve(simulate, runtime="process", progress=False)
    chat = ws.serve(reply, name="assistant", kind="chat", runtime="process", progress=False)
    with running_lab(ws.home, tmp_path_factory.mktemp("lab"), base_url=BASE_URL) as lab:
        yield lab, ws, streaming, long, chat


def proxied(lab, inst, path: str) -> str:
    return f"{lab.base}proxy/{inst.port}/{path}"


def test_eventsource_reads_items_as_they_come_directly_and_through_the_jupyter_proxy(remote):
    lab, _, streaming, _, _ = remote
    query = "ticks?data=" + json.dumps({"n": 5, "every": 0.3})
    with chromium() as browser:
        page = browser.new_page()
        page.set_default_timeout(30_000)
        page.goto(streaming.url + "/health")  # the model's own origin
        events = page.evaluate(EVENT_SOURCE, streaming.url + "/" + query)
        assert [e[1] for e in events] == [{"data": {"i": i}} for i in range(5)]
        assert events[-1][0] - events[0][0] > 900  # four more items 0.3 s apart: they came one by one
        # through the Jupyter server: the login cookie from ?token=, then the proxied stream (progressive: the
        # proxy streams an answer to an EventSource's Accept: text/event-stream)
        page.goto(lab.url(f"proxy/{streaming.port}/health"))
        events = page.evaluate(EVENT_SOURCE, proxied(lab, streaming, query))
        assert [e[1] for e in events] == [{"data": {"i": i}} for i in range(5)]
        assert events[-1][0] - events[0][0] > 900


def test_the_openai_client_and_curl_through_the_jupyter_proxy(remote):
    import openai

    lab, _, _, _, chat = remote
    client = openai.OpenAI(
        base_url=proxied(lab, chat, "v1"),
        api_key="the-model-needs-none",  # the Jupyter login is the token in the query
        default_query={"token": lab.token},
        timeout=TIMEOUT,
        max_retries=0,
    )
    messages = [{"role": "user", "content": "count"}]
    done = client.chat.completions.create(model="assistant", messages=messages)
    assert done.choices[0].message.content == "one two three four five "
    assert [m.id for m in client.models.list()] == ["assistant"]
    # the proxy streams what an event stream's Accept asks for; the client's own Accept gets it whole at the end
    for headers in ({"Accept": "text/event-stream"}, {}):
        stream = client.chat.completions.create(
            model="assistant", messages=messages, stream=True, extra_headers=headers
        )
        assert "".join(c.choices[0].delta.content or "" for c in stream) == "one two three four five "
    without_login = openai.OpenAI(base_url=proxied(lab, chat, "v1"), api_key="x", timeout=TIMEOUT, max_retries=0)
    with pytest.raises(openai.APIStatusError):
        without_login.chat.completions.create(model="assistant", messages=messages)

    curl = shutil.which("curl")
    need(curl is not None, "curl", "apt-get install curl (.ci/run does)")
    streaming = remote[2]
    url = proxied(lab, streaming, "ticks") + f"?token={lab.token}"
    cmd = [curl, "-sN", "--max-time", "20", "-H", "Accept: text/event-stream", "-H", "Content-Type: application/json"]
    start = time.monotonic()
    proc = subprocess.Popen(
        [*cmd, "-d", json.dumps({"data": {"n": 4, "every": 0.4}}), url], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    arrivals = [(time.monotonic() - start, line.strip()) for line in proc.stdout if line.strip()]
    assert proc.wait(20) == 0
    assert [text for _, text in arrivals][-2:] == ["event: end", "data: {}"]
    assert arrivals[-1][0] - arrivals[0][0] > 0.9  # item by item through the proxy, not all at once


def test_the_sidebar_shows_streams_and_cancels_a_running_job(remote):
    from playwright.sync_api import expect

    lab, ws, streaming, long, chat = remote
    list(streaming.client(timeout=TIMEOUT).stream("ticks", {"n": 6, "every": 0.05}))
    list(chat.client(timeout=TIMEOUT).stream("reply", [{"role": "user", "content": "hi"}]))
    job = long.client(timeout=TIMEOUT).submit("simulate", {"seconds": 60, "steps": 600})
    with chromium() as browser:
        page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
        page.set_default_timeout(30_000)
        page.goto(lab.url("lab?reset"))
        expect(page.get_by_role("tab", name="Model serving")).to_be_visible(timeout=60_000)
        sidebar = open_sidebar_from_the_palette(page)
        expect(sidebar.get_by_role("listitem", name="Model ticks")).to_contain_text("methods: ticks (streams)")
        expect(sidebar.get_by_role("listitem", name="Model assistant")).to_contain_text(
            "OpenAI chat (/v1/chat/completions)"
        )
        stats = sidebar.get_by_label(f"Monitoring of {streaming.id}").locator(".nbserve-stream-stats")
        expect(stats).to_contain_text("ticks streams: first item", timeout=30_000)
        expect(stats).to_contain_text(re.compile(r"\(p50\) · [\d.k]+ items/s · \d+ items"))
        tokens = sidebar.get_by_label(f"Monitoring of {chat.id}").locator(".nbserve-stream-stats")
        expect(tokens).to_contain_text("tokens/s", timeout=30_000)
        jobs = sidebar.get_by_role("table", name=f"Jobs of {long.id}")
        row = jobs.locator(f"[data-job='{job.id}']")
        expect(row).to_contain_text("running", timeout=30_000)
        expect(row).to_contain_text("step ")
        row.get_by_role("button", name="Cancel").click()
        expect(row).to_contain_text("cancelled", timeout=15_000)
        assert job.cancelled()
