"""The public functions of ``nbserve``: each calls the workspace of $NBSERVE_HOME."""

from __future__ import annotations

from .workspace import default_workspace


def register(
    obj,
    name=None,
    sample=None,
    methods=None,
    progress=None,
    env=None,
    compare="values",
    tolerance=None,
    system_packages=None,
    kind=None,
):
    """Capture ``obj`` (a model or a function) and record it as the next version of ``name``.

    ``env``: environment variables the model needs besides those captured by themselves (KERAS_BACKEND, thread
    settings: see ModelVersion.environment). ``compare="shapes"`` or ``tolerance=0.05``: for a model that is not
    deterministic (registering one says so), prove only its answers' shapes and dtypes, or its values within 5%.
    ``system_packages=["libfoo1"]``: Debian packages its Docker image installs, besides those nbserve finds the
    locked wheels need (libgomp1 for LightGBM's OpenMP). ``kind="chat"``: a function from a list of
    ``{"role", "content"}`` messages to the reply's text (a str, or a generator of its pieces), served on OpenAI's
    ``/v1/chat/completions`` too; ``kind="embeddings"``: a function from a list of texts to one vector per text,
    on ``/v1/embeddings`` (neither needs a sample).
    """
    return default_workspace().register(
        obj,
        name=name,
        sample=sample,
        methods=methods,
        progress=progress,
        env=env,
        compare=compare,
        tolerance=tolerance,
        system_packages=system_packages,
        kind=kind,
    )


def models():
    """The latest version of every registered model."""
    return default_workspace().models()


def get_model(ref, version=None):
    """``get_model("diabetes")`` (latest), ``get_model("diabetes", version=1)`` or ``get_model("diabetes:1")``."""
    return default_workspace().get_model(ref, version)


def serve(target, name=None, sample=None, runtime="auto", port=None, workers=1, follow=False, **kwargs):
    """Serve a registered model (by name) or a live object (registered first); wait until it is healthy.

    A method that returns a generator streams its items (``inst.client().stream(...)``); any call can run as a
    job (``inst.client().submit(...)``). ``kind="chat"`` or ``"embeddings"`` (with a live text function) adds
    OpenAI's routes; ``jobs=False``, ``job_queue=N``, ``job_retention=SECONDS``, ``job_timeout=SECONDS`` set
    the jobs' limits. The other options: see ``runtimes.limits.check_options``.

    A live object served under the name of a running instance updates it in place (``update=False``: a second
    instance). ``follow=True`` (in a notebook): after every cell that changes the variable bound to ``target``
    (refit, reassigned), it is served again in place, with one line; ``unfollow(name)`` stops that."""
    if follow and (isinstance(target, str) or not _in_ipython()):
        from .errors import NbserveError

        raise NbserveError(
            "follow=True follows a live object of a notebook (after every cell): serve the variable itself, "
            "in an IPython kernel"
        )
    inst = default_workspace().serve(
        target, name=name, sample=sample, runtime=runtime, port=port, workers=workers, **kwargs
    )
    if follow:
        from .follow import follow_in_kernel

        follow_in_kernel(target, inst, sample)
    return inst


def unfollow(variable):
    """Stop re-serving the notebook variable ``variable`` after each cell (``serve(..., follow=True)``)."""
    from IPython import get_ipython

    from .follow import follower

    shell = get_ipython()
    return shell is not None and follower(shell, default_workspace).unfollow(variable)


def _in_ipython() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    return get_ipython() is not None


def prepare(target, name=None, sample=None, runtime="auto", **kwargs):
    """Everything serve() does but the start: register (a live object), and build the image on Docker."""
    return default_workspace().prepare(target, name=name, sample=sample, runtime=runtime, **kwargs)


def instances(model=None):
    """Every instance, with the status its runtime reports now."""
    return default_workspace().instances(model)


def get_instance(id):
    return default_workspace().get_instance(id)


def stop(id):
    return default_workspace().stop(id)


def logs(id, tail=200):
    return default_workspace().logs(id, tail)


def build(ref, base_image=None, progress=None):
    """Build the Docker image of a registered model."""
    return default_workspace().build(ref, base_image=base_image, progress=progress)


def push(ref, registry=None, progress=None):
    """Push the model's image to ``registry`` ("HOST:PORT/PREFIX", default $NBSERVE_REGISTRY) -> PushedImage."""
    return default_workspace().push(ref, registry=registry, progress=progress)


def deploy(ref, target="swarm", replicas=1, **kwargs):
    """Run ``ref`` as ``replicas`` replicas on Docker Swarm (live) or as Kubernetes manifests -> Deployment."""
    return default_workspace().deploy(ref, target=target, replicas=replicas, **kwargs)


def deployments():
    """Every deployment, with the state its orchestrator reports now."""
    return default_workspace().deployments()


def get_deployment(name):
    return default_workspace().get_deployment(name)


def copy_registry(to, artifacts, progress=None):
    """Copy this registry into a team's (``to="postgresql://..."``, ``artifacts="s3://bucket/prefix"``)."""
    return default_workspace().copy_registry(to, artifacts, progress=progress)
