"""REST handlers under ``<base_url>/nbserve/api/``: thin translations of HTTP into workspace calls.

    GET    overview                  {"models", "instances", "runtimes", "hint"}: what the sidebar shows, in one
                                      reading shared by every sidebar for a second or two (overview.py)
    GET    models                    latest version of every model, with its version numbers
    GET    models/<name>             every version of one model
    GET    runtimes                  the runtimes ("auto" and each with its capabilities), for the start form
    GET    instances                 every instance (status from its runtime), plus starts in flight
    POST   instances                 {"model", "version"?, "runtime"?, "port"?, "batch"?, "max_batch"?,
                                      "max_latency_ms"?} -> 202 and a job (batching as serve() takes it)
    GET    jobs/<id>                 the state of a start: building, starting, running or failed
    POST   instances/<id>/stop       stop (200, the instance)
    POST   instances/<id>/start      start again (200, the instance)
    POST   instances/<id>/update-stage  {"stage", "model": "NAME:VERSION"}: a graph instance serves that version
                                      of one stage from now on, swapped in place (200, the instance)
    DELETE instances/<id>            remove an instance, or dismiss a finished job
    GET    instances/<id>/logs       {"id", "logs", "entries"}; ?tail=N lines (default 200); entries: the lines as
                                      table rows (monitoring.log_entries: requests, and the server's own lines)
    GET    deployments               every deployment (nbserve.deploy), state from its orchestrator
    POST   deployments/<name>/scale  {"replicas": N}; .../update {"model": "NAME:VERSION"}; .../rollback;
                                     .../split {"weights": {"NAME:1": 90, "NAME:2": 10}} (null ends it)
    DELETE deployments/<name>        remove the deployment (its service and replicas, or its manifests)
    GET    deployments/<name>/logs   {"name", "logs"}
    GET    instances/<id>/metrics    {"id", "snapshot"}: one reading of its /metrics (monitoring.snapshot)
    GET    instances/<id>/drift      {"id", "drift"}: its /drift report
    POST   instances/<id>/rollback   {"to"?: "NAME:VERSION"}: the version served before, in place (the instance)
    POST   instances/<id>/split      {"weights": {"NAME:VERSION": weight, ...} | null}: share its URL, or end that
    POST   instances/<id>/promote    the shadow candidate's version in place; .../discard: remove the candidate
    GET    instances/<id>/comparison {"id", "summary", "points", "latency"}: the shadow's comparison (summary as
                                      Instance.comparison(summary=True)), the (live, candidate, agree) of the last
                                      answers and each side's latency per request, for the sidebar's plot
    GET    instances/<id>/monitor    {"id", "status", "snapshot", "drift", "jobs", "text_kind", "stages"}: for a
                                      running instance, nulls with its status for one that is not (a sidebar that
                                      polls an instance stopped a moment ago gets an answer, not an error); jobs:
                                      the model's jobs (null when it serves none), text_kind: "chat",
                                      "embeddings"; stages: a graph's (version, p50, errors each:
                                      monitoring.stage_summary)
    GET    instances/<id>/jobs       {"id", "jobs"}: the jobs the instance keeps (client.submit, ?async=1)
    DELETE instances/<id>/jobs/<job> cancel a queued or running job, forget a finished one: {"job": its status}

Every verb is ``@tornado.web.authenticated`` (no Jupyter token, 403). Errors are
``{"error": {"type", "message", "status"}}`` with the status from ``errors.STATUS``.
"""

from __future__ import annotations

import json
import logging

import tornado.web
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join

from .. import monitoring, runtimes
from ..browser_links import note_browser, proxy_hint
from ..errors import NbserveError
from ..workspace import default_workspace, quiet
from .errors import BadRequest, Conflict, error_body, status_for
from .jobs import Jobs
from .overview import OverviewCache

API_PREFIX = "nbserve/api"
JOBS_SETTING = "nbserve_jobs"
OVERVIEW_SETTING = "nbserve_overview"
START_FIELDS = {"model", "version", "runtime", "port", "batch", "max_batch", "max_latency_ms"}

log = logging.getLogger(__name__)


class NbserveHandler(APIHandler):
    """The one place where nbserve's exceptions become HTTP statuses and JSON bodies."""

    @property
    def jobs(self) -> Jobs:
        return self.settings[JOBS_SETTING]

    @property
    def overview_cache(self) -> OverviewCache:
        return self.settings[OVERVIEW_SETTING]

    async def prepare(self) -> None:  # type: ignore[override]  # APIHandler's own prepare() is declared so
        done = super().prepare()  # jupyter_server's is a coroutine (it finds the current user)
        if done is not None:
            await done
        # where the browser is (the Host it asked for): the hint about remote access is for a remote one
        self.remote_browser = note_browser(self.request.host)

    def on_finish(self):
        if self.request.method != "GET":
            self.overview_cache.clear()  # a start, stop or remove changed what the sidebars show

    @property
    def workspace(self):
        # Read $NBSERVE_HOME on every request: the registry a kernel writes is the one we list.
        return default_workspace()

    def call(self, fn, *args, **kwargs):
        """Await a workspace call run off the event loop."""
        return self.jobs.call(fn, *args, **kwargs)

    def reply(self, data, status: int = 200) -> None:
        self.set_status(status)
        self.finish(json.dumps(data))

    def json_body(self) -> dict:
        if not self.request.body:
            return {}
        try:
            body = json.loads(self.request.body)
        except ValueError as exc:
            raise BadRequest(f"the request body is not valid JSON ({exc})") from None
        if not isinstance(body, dict):
            raise BadRequest(f"the request body must be a JSON object, got {type(body).__name__}")
        return body

    def send_error(self, status_code: int = 500, **kwargs) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if exc is not None:
            status_code = status_for(exc)
            kwargs.pop("reason", None)
        super().send_error(status_code, **kwargs)

    def write_error(self, status_code: int, **kwargs) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if exc is None:
            exc = tornado.web.HTTPError(status_code)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error": error_body(exc, status_code)}))

    def log_exception(self, typ, value, tb) -> None:
        # A refusal (unknown model, port in use) is the user's business, not a server fault: one line.
        if isinstance(value, NbserveError) and status_for(value) < 500:
            self.log.info("nbserve: %s %s -> %s: %s", self.request.method, self.request.path, status_for(value), value)
        else:
            super().log_exception(typ, value, tb)


class OverviewHandler(NbserveHandler):
    @tornado.web.authenticated
    async def get(self):
        ws = self.workspace
        cache = self.overview_cache
        if cache.jobs_finished != self.jobs.finished:  # a start ended: its instance is in the registry now
            cache.clear()
            cache.jobs_finished = self.jobs.finished
        reading = await cache.get(ws.home, lambda: self.call(_overview, ws))
        running = [i["url"] for i in reading["instances"] if i["status"] == "running" and not i["browser_url"]]
        hint = next((h for h in (proxy_hint(url, self.remote_browser) for url in running) if h), None)
        self.reply(
            {
                "models": reading["models"],
                "instances": [j.to_dict() for j in _unlisted(self.jobs.visible(), reading["instances"])]
                + reading["instances"],
                "runtimes": _runtimes(),
                "hint": hint,
                "time": reading["time"],
            }
        )


class ModelsHandler(NbserveHandler):
    @tornado.web.authenticated
    async def get(self):
        self.reply({"models": await self.call(_models, self.workspace)})


class ModelHandler(NbserveHandler):
    @tornado.web.authenticated
    async def get(self, name):
        versions = await self.call(self.workspace.versions, name)
        if not versions:
            # get_model raises the registry's own ModelNotFoundError (404) with its hint
            mv = await self.call(self.workspace.get_model, name)
            raise BadRequest(f"models/<name> takes a model name, not a reference: use models/{mv.name}")
        self.reply({"name": name, "versions": [mv.to_dict() for mv in versions]})


class RuntimesHandler(NbserveHandler):
    @tornado.web.authenticated
    def get(self):
        self.reply(_runtimes())


class InstancesHandler(NbserveHandler):
    @tornado.web.authenticated
    async def get(self):
        # the registry gets an instance's row only once it runs: a start in flight shows as its job
        instances = await self.call(_instance_dicts, self.workspace)
        self.reply({"instances": [j.to_dict() for j in _unlisted(self.jobs.visible(), instances)] + instances})

    @tornado.web.authenticated
    async def post(self):
        body = self.json_body()
        unknown = set(body) - START_FIELDS
        if unknown:
            raise BadRequest(
                f"unknown field(s) {', '.join(sorted(unknown))}; expected {', '.join(sorted(START_FIELDS))}"
            )
        model, version = body.get("model"), body.get("version")
        runtime, port = body.get("runtime") or "auto", body.get("port")
        if not isinstance(model, str) or not model:
            raise BadRequest('"model" is required: the name of a registered model, e.g. "diabetes"')
        if version is not None and (not isinstance(version, int) or isinstance(version, bool)):
            raise BadRequest(f'"version" must be an integer or null, got {version!r}')
        if runtime not in runtimes.CHOICES:
            raise BadRequest(f'"runtime" must be one of {", ".join(runtimes.CHOICES)}, got {runtime!r}')
        if port is not None and (not isinstance(port, int) or isinstance(port, bool)):
            raise BadRequest(f'"port" must be an integer or null, got {port!r}')
        if body.get("batch") not in (None, True, False):
            raise BadRequest(f'"batch" must be true, false or null, got {body["batch"]!r}')
        # (not `in (None, False)`: 0 == False, and max_latency_ms=0 is a setting, max_batch=0 an error to report)
        batching = {k: body[k] for k in ("batch", "max_batch", "max_latency_ms") if body.get(k) is not None}
        if batching.get("batch") is False:
            del batching["batch"]
        ws = self.workspace
        batching = await self.call(ws.check_options, batching)  # its refusal is a 400 now, not a failed job
        # Refuse what is known to fail before answering 202, so the status says why (404, 409, 503).
        mv = await self.call(ws.get_model, model, version)
        chosen = await self.call(ws.choose_runtime, runtime, quiet)
        if not await self.call(runtimes.reachable, chosen):
            raise runtimes.unavailable(chosen)
        if port is not None:
            await self.call(ws.check_port, port)
        job = self.jobs.serve(ws, mv.id, chosen, port, batching)
        self.set_header("Location", url_path_join(self.base_url, API_PREFIX, "jobs", job.id))
        self.reply({"job": job.to_dict()}, status=202)


class JobHandler(NbserveHandler):
    @tornado.web.authenticated
    def get(self, id):
        job = self.jobs.get(id)
        if job is None:
            raise tornado.web.HTTPError(
                404, f"no job {id!r} in this Jupyter server (jobs are kept in memory and forgotten on restart)"
            )
        self.reply({"job": job.to_dict()})


class InstanceHandler(NbserveHandler):
    @tornado.web.authenticated
    async def delete(self, id):
        job = self.jobs.get(id)
        if job is not None:
            if not self.jobs.dismiss(id):
                raise Conflict(f"{id} is still {job.state}; wait until it is running or failed")
            self.reply({"removed": id})
            return
        await self.call(self.workspace.remove, id)
        self.reply({"removed": id})


class InstanceActionHandler(NbserveHandler):
    @tornado.web.authenticated
    async def post(self, id, action):
        ws = self.workspace
        if action == "stop":
            inst = await self.call(ws.stop, id)
        elif action == "update-stage":
            body = self.json_body()
            stage, model = body.get("stage"), body.get("model")
            if not isinstance(stage, str) or not stage or not isinstance(model, str) or not model:
                raise BadRequest('expected {"stage": STAGE, "model": "NAME:VERSION"}: the version that stage runs next')
            inst = await self.call(ws.update_stage, id, stage, model, progress=quiet)
        else:
            inst = await self.call(ws.start, id, progress=quiet)
        self.reply({"instance": await self.call(inst.to_dict)})


class LoopActionHandler(NbserveHandler):
    """The notebook loop's verbs on an instance (issue 22): rollback, promote, discard, split."""

    @tornado.web.authenticated
    async def post(self, id, action):
        ws, body = self.workspace, self.json_body()
        if action == "split":
            weights = body.get("weights")
            if weights is not None and (
                not isinstance(weights, dict)
                or not all(isinstance(w, (int, float)) and not isinstance(w, bool) for w in weights.values())
            ):
                raise BadRequest('"weights" must be {"NAME:VERSION": number, ...} or null (end the split)')
            inst = await self.call(ws.split, id, weights, progress=quiet)
        elif action == "rollback":
            to = body.get("to")
            if to is not None and not isinstance(to, str):
                raise BadRequest(f'"to" must be a version such as "diabetes:1", or null; got {to!r}')
            inst = await self.call(ws.rollback, id, to=to, progress=quiet)
        elif action == "promote":
            inst = await self.call(ws.promote, id, progress=quiet)
        else:
            inst = await self.call(ws.discard, id, progress=quiet)
        self.reply({"instance": await self.call(inst.to_dict)})


class ComparisonHandler(NbserveHandler):
    @tornado.web.authenticated
    async def get(self, id):
        self.reply(await self.call(_comparison, self.workspace, id))


def _comparison(ws, id: str, points: int = 300) -> dict:
    """The shadow's summary and what the sidebar plots: (live, candidate, agree) of the first answer of the
    last ``points`` rows, and each side's latency per request."""
    import math

    frame = ws.comparison(id)
    summary = ws.comparison(id, summary=True)
    first = next((c for c in frame.columns if c == "live" or str(c).startswith(("live[", "live."))), None)
    pairs = []
    if first is not None and len(frame):
        other = "candidate" + first[len("live") :]
        for a, b, ok in zip(frame[first].tail(points), frame[other].tail(points), frame["agree"].tail(points)):
            pairs.append([_number(a), _number(b), bool(ok)])
    requests = frame.drop_duplicates("_request").tail(points) if len(frame) else frame
    latency = {
        side: [v for v in (_number(x) for x in requests[col]) if v is not None] if len(requests) else []
        for side, col in (("live", "_live_ms"), ("candidate", "_candidate_ms"))
    }
    for key in ("agreement",):
        if isinstance(summary.get(key), float) and math.isnan(summary[key]):
            summary[key] = None
    return {"id": id, "summary": summary, "points": pairs, "latency": latency}


def _number(value):
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return None if x != x or x in (float("inf"), float("-inf")) else x


class LogsHandler(NbserveHandler):
    @tornado.web.authenticated
    async def get(self, id):
        try:
            tail = int(self.get_query_argument("tail", "200"))
        except ValueError:
            raise BadRequest("tail must be a whole number of lines") from None
        tail = max(1, min(tail, 10_000))
        job = self.jobs.get(id)
        if job is not None:  # a start in flight or failed: its progress is all there is to read
            lines = job.messages + ([job.error["message"]] if job.error else [])
            text = "\n".join(lines[-tail:]) + "\n"
        else:
            text = await self.call(self.workspace.logs, id, tail=tail)
        self.reply({"id": id, "logs": text, "entries": monitoring.log_entries(text)})


class ObserveHandler(NbserveHandler):
    @tornado.web.authenticated
    async def get(self, id, what):
        ws = self.workspace
        if what == "metrics":
            self.reply({"id": id, "snapshot": _json_snapshot(await self.call(ws.metrics_snapshot, id))})
        elif what == "drift":
            self.reply({"id": id, "drift": await self.call(ws.drift, id)})
        else:
            self.reply(await self.call(_monitor, ws, id))


class ModelJobsHandler(NbserveHandler):
    """The served model's own jobs (server/jobs.py), not the starts this extension runs (JobHandler)."""

    @tornado.web.authenticated
    async def get(self, id):
        self.reply({"id": id, "jobs": await self.call(self.workspace.jobs, id)})

    @tornado.web.authenticated
    async def delete(self, id, job_id):
        self.reply({"job": await self.call(self.workspace.cancel_job, id, job_id)})


def _unlisted(jobs, instances: list[dict]) -> list:
    """The jobs to list beside ``instances``: a start whose instance the registry already holds (it is
    recorded a moment before its job says "running") is listed once, as the instance."""
    taken: set[str] = set()
    shown = []
    for job in sorted(jobs, key=lambda j: j.created):
        mine = job.pending and next(
            (
                i["id"]
                for i in instances
                if i["model"] == job.model and (i.get("created") or 0) >= job.created and i["id"] not in taken
            ),
            None,
        )
        if mine:
            taken.add(mine)
        else:
            shown.append(job)
    return shown


def _json_snapshot(snap: dict) -> dict:
    stages = [e for versions in (snap.get("stages") or {}).values() for e in versions.values()]
    for entry in [*snap["methods"].values(), *stages]:  # JSON has no Infinity: the +Inf bucket's bound is null
        for key in ("buckets", "first"):
            if key in entry:
                entry[key] = [[None if le == float("inf") else le, c] for le, c in entry[key]]
    return snap


def _monitor(ws, id: str) -> dict:
    inst = ws.get_instance(id)  # an unknown id is a 404
    served = ws.get_model(inst.model)
    text_kind = served.text_kind
    if inst.status != "running":
        return {
            "id": id,
            "status": inst.status,
            "snapshot": None,
            "drift": None,
            "jobs": None,
            "text_kind": text_kind,
            "stages": None,
        }
    try:
        jobs = ws.jobs(id)
    except NbserveError:  # jobs off for this instance
        jobs = None
    snapshot = ws.metrics_snapshot(id)
    graph = served.manifest.get("graph")  # a graph's stages: version, p50, errors each
    return {
        "id": id,
        "status": inst.status,
        "snapshot": _json_snapshot(snapshot),
        "drift": ws.drift(id),
        "jobs": jobs,
        "text_kind": text_kind,
        "stages": monitoring.stage_summary(snapshot, graph) if graph else None,
    }


def _runtimes() -> dict:
    return {"choices": list(runtimes.CHOICES), "runtimes": [s.to_dict() for s in runtimes.RUNTIMES]}


def _overview(ws) -> dict:
    # to_dict asks the runtime for each URL: keep it in the worker thread with the reading
    return ws.overview().to_dict()


def _models(ws) -> list[dict]:
    return ws.overview().to_dict()["models"]


def _instance_dicts(ws) -> list[dict]:
    # to_dict asks the runtime for the URL: keep it in the worker thread with the listing
    return [i.to_dict() for i in ws.instances()]


class DeploymentsHandler(NbserveHandler):
    @tornado.web.authenticated
    async def get(self):
        deployments = await self.call(self.workspace.deployments)
        self.reply({"deployments": [d.to_dict() for d in deployments]})


class DeploymentActionHandler(NbserveHandler):
    @tornado.web.authenticated
    async def post(self, name, action):
        body, ws = self.json_body(), self.workspace
        if action == "scale":
            replicas = body.get("replicas")
            if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
                raise BadRequest(f'"replicas" must be a whole number >= 0, got {replicas!r}')
            dep = await self.call(ws.scale_deployment, name, replicas, progress=quiet)
        elif action == "update":
            model = body.get("model")
            if not isinstance(model, str) or not model:
                raise BadRequest('"model" is required: the version to roll to, e.g. "diabetes:2"')
            dep = await self.call(ws.update_deployment, name, model, progress=quiet)
        elif action == "split":
            weights = body.get("weights")
            if weights is not None and not isinstance(weights, dict):
                raise BadRequest('"weights" is {"NAME:VERSION": weight, ...}, or null to end the split')
            dep = await self.call(ws.split_deployment, name, weights, progress=quiet)
        else:
            dep = await self.call(ws.rollback_deployment, name, progress=quiet)
        self.reply({"deployment": dep.to_dict()})


class DeploymentHandler(NbserveHandler):
    @tornado.web.authenticated
    async def delete(self, name):
        await self.call(self.workspace.remove_deployment, name, progress=quiet)
        self.set_status(204)
        self.finish()


class DeploymentLogsHandler(NbserveHandler):
    @tornado.web.authenticated
    async def get(self, name):
        tail = self.get_argument("tail", "200")
        if not tail.isdigit():
            raise BadRequest(f"tail must be a number of lines, got {tail!r}")
        text = await self.call(self.workspace.deployment_logs, name, int(tail))
        self.reply({"name": name, "logs": text})


def route_handlers(base_url: str) -> list[tuple]:
    def url(*parts):
        return url_path_join(base_url, API_PREFIX, *parts)

    segment = r"([^/]+)"
    return [
        (url("overview"), OverviewHandler),
        (url("runtimes"), RuntimesHandler),
        (url("models"), ModelsHandler),
        (url("models", segment), ModelHandler),
        (url("instances"), InstancesHandler),
        (url("instances", segment, "(stop|start|update-stage)"), InstanceActionHandler),
        (url("instances", segment, "(rollback|promote|discard|split)"), LoopActionHandler),
        (url("instances", segment, "comparison"), ComparisonHandler),
        (url("instances", segment, "logs"), LogsHandler),
        (url("instances", segment, "(metrics|drift|monitor)"), ObserveHandler),
        (url("instances", segment, "jobs"), ModelJobsHandler),
        (url("instances", segment, "jobs", segment), ModelJobsHandler),
        (url("instances", segment), InstanceHandler),
        (url("jobs", segment), JobHandler),
        (url("deployments"), DeploymentsHandler),
        (url("deployments", segment, "(scale|update|rollback|split)"), DeploymentActionHandler),
        (url("deployments", segment, "logs"), DeploymentLogsHandler),
        (url("deployments", segment), DeploymentHandler),
    ]


def setup_handlers(web_app) -> None:
    web_app.settings.setdefault(JOBS_SETTING, Jobs())
    web_app.settings.setdefault(OVERVIEW_SETTING, OverviewCache())
    web_app.add_handlers(".*$", route_handlers(web_app.settings["base_url"]))
