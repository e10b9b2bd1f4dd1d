"""nbserve: serve a model straight from a Jupyter notebook.

    import nbserve
    mv = nbserve.register(lr, name="diabetes", sample=X)
    inst = nbserve.serve("diabetes")
    inst.client().predict(X[:5])

    g = nbserve.chain(clean, pipe, threshold)       # stages, each registered as its own version
    inst = nbserve.serve(g, name="rentals", sample=frame)

Attributes load lazily, so that ``nbserve.server`` (the served side) can be imported without the core.
"""

import importlib

__version__ = "0.1.0"

_API = {
    "register",
    "models",
    "get_model",
    "serve",
    "prepare",
    "unfollow",
    "instances",
    "get_instance",
    "build",
    "stop",
    "logs",
    "push",
    "deploy",
    "deployments",
    "get_deployment",
    "copy_registry",
}
_EXPORTS = {
    "Client": ".client",
    "Workspace": ".workspace",
    "ModelVersion": ".resources",
    "Instance": ".resources",
    "Image": ".resources",
    "Deployment": ".resources",
    "panel": ".widgets",
    "graph": ".graphs",
    "chain": ".graphs",
    "Graph": ".graphs",
}
_ERRORS = {
    "NbserveError",
    "ModelNotFoundError",
    "InstanceNotFoundError",
    "MethodNotFoundError",
    "CaptureError",
    "SampleError",
    "RequirementsError",
    "PortInUseError",
    "RuntimeUnavailableError",
    "DockerUnavailableError",
    "BuildError",
    "InstanceStartError",
    "ArtifactIntegrityError",
    "DiskFullError",
    "ServerError",
    "IncompatibleVersionError",
}

__all__ = sorted(_API | set(_EXPORTS) | _ERRORS)


def __getattr__(name):
    # attributes load on first use: `import nbserve` stays cheap, and nbserve.server needs none of this
    if name in _API:
        from . import api

        return getattr(api, name)
    if name in _ERRORS:
        from . import errors

        return getattr(errors, name)
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module 'nbserve' has no attribute {name!r}")


def __dir__():
    return __all__


def load_ipython_extension(ipython):
    from .magics import load_ipython_extension as load

    load(ipython)


def _jupyter_server_extension_points():
    return [{"module": "nbserve.jupyter"}]


def _jupyter_labextension_paths():
    return [{"src": "labextension", "dest": "nbserve"}]
