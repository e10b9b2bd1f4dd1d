"""Beyond one machine: push a model's image to a registry and run it as a deployment of N replicas.

push.py        tag and push the image, name it by digest
deployer.py    the verbs (deploy, scale, update, rollback, remove, logs) and the images they run
swarm.py       Docker Swarm services, live on the local engine
kubernetes.py  Kubernetes manifests (Deployment, Service, HPA, PDB, Secret, KServe InferenceService)
records.py     what was asked for each deployment
engine.py      the seam to the Docker runtime's engine client

The words of `nbserve deploy` and `%nbserve deploy` (a face) are nbserve/deploy_commands.py.
"""

import sys
import types


class _CallableModule(types.ModuleType):
    """``nbserve.deploy(...)`` is the public function and ``nbserve/deploy/`` this package: once the package
    is imported, Python binds the attribute ``nbserve.deploy`` to it, so the package answers the call."""

    def __call__(self, ref, target="swarm", replicas=1, **kwargs):
        from ..workspace import default_workspace  # the core, as nbserve.deploy() in api.py calls it

        return default_workspace().deploy(ref, target=target, replicas=replicas, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
