"""The WSGI entry point that gunicorn loads: ``gunicorn nbserve.server.wsgi:app``.

Reads the artifact directory and the model id from the environment (NBSERVE_ARTIFACT, NBSERVE_MODEL_ID).
With NBSERVE_REPLAY set to a staging directory, the server is also the proof of a new registration
(see replay.replay_then_serve). Either way the master never calls the model, and loads it only
where that is safe before a fork (see forksafe.py).
"""

import os

if os.environ.get("NBSERVE_REPLAY"):
    from .replay import replay_then_serve

    app = replay_then_serve(os.environ["NBSERVE_REPLAY"])
else:
    from .forksafe import app_for

    app = app_for(os.environ["NBSERVE_ARTIFACT"], model_id=os.environ.get("NBSERVE_MODEL_ID"))
