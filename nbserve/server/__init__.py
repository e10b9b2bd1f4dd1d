"""The served side of nbserve: a Flask app that answers for one model artifact.

This package imports nothing from the rest of nbserve (only flask, cloudpickle, numpy and optionally
orjson and pandas), so the very same code runs in a local process and, copied as it is, in an image.
"""
