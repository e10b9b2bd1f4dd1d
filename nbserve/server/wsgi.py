"""The WSGI entry point that gunicorn loads: ``gunicorn nbserve.server.wsgi:app``.

Reads the artifact directory and the model id from the environment (NBSERVE_ARTIFACT, NBSERVE_MODEL_ID).
"""

import os

from .app import create_app

app = create_app(os.environ["NBSERVE_ARTIFACT"], model_id=os.environ.get("NBSERVE_MODEL_ID"))
