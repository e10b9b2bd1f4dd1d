"""Serve a model and call it: the main job of nbserve, from a plain script.

Trains a regression on scikit-learn's bundled diabetes data, registers it, serves it (Docker when an
engine answers, a local process otherwise), calls it over HTTP and checks the answer against the model.

    python examples/serve_diabetes.py          # then stops and removes the server it started
    python examples/serve_diabetes.py --keep   # leaves it serving, and prints the command that stops it

Run it again and it adds nothing: the same model is the same registered version (diabetes:1), and with
--keep a server of that version that still runs is used again rather than a second one started.
"""

import argparse
import shlex
import sys
from pathlib import Path

import numpy as np
from sklearn.datasets import load_diabetes
from sklearn.linear_model import LinearRegression

import nbserve


def console_command() -> str:
    """The `nbserve` command as it can be typed here: the console script beside this interpreter (a venv's
    bin/ need not be on PATH), else this interpreter running the module."""
    script = Path(sys.executable).with_name("nbserve")
    if script.exists():
        return shlex.quote(str(script))
    return f"{shlex.quote(sys.executable)} -m nbserve.cli"


parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--keep", action="store_true", help="leave the server running (and print how to stop it)")
args = parser.parse_args()

X, y = load_diabetes(return_X_y=True)
lr = LinearRegression().fit(X, y)

mv = nbserve.register(lr, name="diabetes", sample=X)  # the same model again is the same version
running = [i for i in nbserve.instances(mv.id) if i.status == "running"] if args.keep else []
inst = running[0] if running else nbserve.serve(mv.id)
try:
    pred = inst.client().predict(X[:5])
    assert np.allclose(pred, lr.predict(X[:5]))
    print(f"{inst.model} at {inst.url} ({inst.runtime}) predicts {np.round(pred, 1).tolist()}")
finally:
    if not args.keep:
        inst.remove()
if args.keep:
    again = " (already running: used again)" if running else ""
    print(f"left running: {inst.id}{again}; stop it with: {console_command()} stop {inst.id}")
else:
    print(f"stopped and removed {inst.id} (--keep leaves it running)")
