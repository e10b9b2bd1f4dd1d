"""One Settings object for the server (nbserve/server/settings.py): every runtime and deploy target gives a served
model the same settings. The process runtime and the Docker runtime are asked by the servers themselves (the
``serving`` part of /interface.json, what ``Instance.serving()`` reads); the Swarm task template and the
Kubernetes manifests are read back from the environment they give the container."""

import pytest
from nbserve_testing import need_docker

from nbserve.runtimes.limits import check_options, server_settings
from nbserve.server.settings import Settings

# every knob off its default, so that one a target forgot would show
OPTIONS = dict(
    timeout=7,
    max_body=123_456,
    batch=True,
    max_batch=8,
    max_latency_ms=3,
    request_log=False,
    drift=False,
    threads=1,
    extra_columns="ignore",
    default_method="predict",
    url_prefix="/models/d",
)


def expected() -> dict:
    return server_settings(check_options({**OPTIONS, "workers": 2})).public()


def test_from_env_reads_back_what_to_env_wrote_and_refuses_nonsense():
    settings = server_settings(check_options({**OPTIONS, "workers": 2, "auth_token": "t" * 24}), listen_fd=5)
    assert Settings.from_env(settings.to_env()) == settings
    assert Settings.from_env({}) == Settings()  # nothing set: the defaults
    assert (
        Settings.from_env({"NBSERVE_METRICS": "off", "NBSERVE_DRIFT": "no", "NBSERVE_REQUEST_LOG": "0"}).public()[
            "request_log"
        ]
        == "off"
    )
    for env, says in (
        ({"NBSERVE_TIMEOUT": "soon"}, "NBSERVE_TIMEOUT"),
        ({"NBSERVE_MAX_BODY": "10"}, "max_body"),
        ({"NBSERVE_METRICS": "maybe"}, "NBSERVE_METRICS"),
        ({"NBSERVE_EXTRA_COLUMNS": "keep"}, "extra_columns"),
    ):
        with pytest.raises(ValueError, match=says):
            Settings.from_env(env)


def test_the_process_and_the_docker_runtime_serve_with_the_same_settings(workspace, diabetes):
    X, _, lr = diabetes
    process = workspace.serve(lr, name="d", sample=X, runtime="process", workers=2, progress=False, **OPTIONS)
    assert process.serving() == expected()
    need_docker()
    docker = workspace.serve("d", runtime="docker", workers=2, progress=False, **OPTIONS)
    assert docker.serving() == expected()
    assert docker.client(timeout=30).predict(X[:3]).tolist() == process.client(timeout=30).predict(X[:3]).tolist()


def test_swarm_and_kubernetes_give_the_container_the_same_settings(workspace, diabetes):
    from nbserve.deploy import kubernetes
    from nbserve.deploy.swarm import SwarmTarget

    X, _, lr = diabetes
    mv = workspace.register(lr, name="d", sample=X, progress=False)
    options = check_options({**OPTIONS, "workers": 2})
    swarm = SwarmTarget(workspace)
    swarm._healthcheck = lambda image, options: None  # the image's own HEALTHCHECK: not what this test is about
    template = swarm._task_template("d", mv, "r/d:1", options)
    env = dict(e.split("=", 1) for e in template["ContainerSpec"]["Env"])
    assert Settings.from_env(env).public() == expected()
    docs = kubernetes.manifests("d", mv, "r/d@sha256:" + "0" * 64, 2, options)
    container = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    assert Settings.from_env(env).public() == expected()
