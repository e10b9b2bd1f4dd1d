"""Property-based fuzzing of the served app, in process (Flask's test client, so thousands of inputs
run in seconds): malformed JSON, wrong types and shapes, NaN and infinities as bare tokens and as
strings, huge numbers, deep nesting, empty batches, unicode, wrong content types, every route and verb.

The property, for every input: the answer is a 4xx whose JSON error says what was expected, or a 200
that is right (checked against the model called in this process); never a 5xx; and the next good
request is answered correctly. test_fuzz_http.py sends the same kind of traffic to a real gunicorn.
"""

import json

import pytest
from fuzz_strategies import CONTENT_TYPES, bodies
from hypothesis import given, settings
from hypothesis import strategies as st
from reliability_tools import TALLY, assert_error_form, record
from served_models import build

# per model and test: twice the hypothesis profile's budget (conftest.py: "ci" by default, "long" with
# --hypothesis-profile=long), as an input in process costs a fraction of one over HTTP
EXAMPLES = 2 * settings.default.max_examples
FUZZ = settings(max_examples=EXAMPLES)  # deadline, database, derandomize, health checks: from the profile


@pytest.fixture(scope="module")
def models(diabetes, iris):
    import cloudpickle

    from nbserve.capture import capture
    from nbserve.server.app import make_app

    out = {}
    for name, entry in build(diabetes, iris).items():
        cap = capture(entry["obj"], label=name, sample=entry["sample"], proof=False)
        app = make_app(cloudpickle.loads(cap.pickle), cap.manifest, model_id=f"{name}:1", max_body=200_000)
        out[name] = dict(entry, client=app.test_client(), app=app)
    return out


TEXT_ROUTES = ("/static", "/metrics", "/version", "/ping")  # /ping: an empty answer, as MLflow gives


def check_answer(models, name, path, verb, body, resp):
    record(resp.status_code)
    assert resp.status_code < 500, f"{verb} {path} {body[:200]!r} -> {resp.status_code} {resp.data[:300]!r}"
    if resp.status_code >= 400:
        assert_error_form(path, resp.get_json(silent=True), resp.data)
        return
    method = path.strip("/")
    if verb == "POST" and method in models[name]["checks"]:
        data = json.loads(body)["data"]
        models[name]["checks"][method](data, resp.get_json()["data"])


def still_serving(models, name):
    entry = models[name]
    method, data = entry["good"]
    resp = entry["client"].post(f"/{method}", data=json.dumps({"data": data}), content_type="application/json")
    assert resp.status_code == 200, resp.data[:300]
    entry["checks"][method](data, resp.get_json()["data"])


# -- the properties -----------------------------------------------------------------------------------

MODEL_NAMES = ["diabetes", "iris", "score", "parity", "halve32", "squares"]


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_any_body_to_a_method_is_a_4xx_that_explains_or_a_correct_200(models, name):
    methods = list(models[name]["checks"])

    @FUZZ
    @given(body=bodies(name), method=st.sampled_from(methods), ctype=CONTENT_TYPES)
    def prop(body, method, ctype):
        raw = body.encode(errors="surrogatepass") if isinstance(body, str) else body
        resp = models[name]["client"].post(f"/{method}", data=raw, content_type=ctype)
        check_answer(models, name, f"/{method}", "POST", body if isinstance(body, str) else "", resp)
        still_serving(models, name)

    prop()


@pytest.mark.parametrize("name", ["diabetes", "iris"])
def test_every_route_and_verb_with_any_body(models, name):
    app = models[name]["app"]
    routes = sorted({r.rule for r in app.url_map.iter_rules() if "<" not in r.rule}) + ["/static/x.js"]
    paths = st.one_of(
        st.sampled_from(routes),
        # "//x" would be a network-path reference to host "x" (werkzeug's test client then encodes "x" as a host
        # name), not a path: a path's first segment never starts with "/"
        st.builds(
            lambda s: "/" + s.lstrip("/"),
            st.text(st.characters(codec="utf-8", exclude_characters="?#%\r\n"), max_size=30),
        ),
    )

    @FUZZ
    @given(
        path=paths,
        verb=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]),
        body=st.one_of(bodies(name), st.just("")),
        ctype=CONTENT_TYPES,
    )
    def prop(path, verb, body, ctype):
        resp = models[name]["client"].open(
            path,
            method=verb,
            data=body.encode(errors="surrogatepass") if isinstance(body, str) else body,
            content_type=ctype,
        )
        if verb in ("HEAD", "OPTIONS") or path in ("/docs",) and resp.status_code == 200:
            record(resp.status_code)
            assert resp.status_code < 500
        elif resp.status_code == 200 and verb == "GET":
            record(resp.status_code)
            # JSON, but for the pages and texts some routes are: Swagger's assets, Prometheus' format, MLflow's
            assert resp.get_json(silent=True) is not None or path.startswith(TEXT_ROUTES)
        else:
            check_answer(models, name, path, verb, body if isinstance(body, str) else "", resp)
        still_serving(models, name)

    prop()


def test_counted_inputs():
    """The in-process fuzzing above ran; its inputs are counted (the closing line prints them)."""
    assert TALLY["in-process"] >= EXAMPLES, TALLY
    assert TALLY["5xx"] == 0
