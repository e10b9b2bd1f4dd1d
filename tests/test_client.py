"""The client's own manners (no server needed): attribute access does no network I/O, and it closes."""

import socket

import pytest

import nbserve
from nbserve.errors import MethodNotFoundError


@pytest.fixture
def silent_port():
    """A port that accepts connections and never answers: any request the client makes shows up here."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.settimeout(0.3)
        yield listener


def connections(listener) -> int:
    count = 0
    while True:
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            return count
        conn.close()
        count += 1


def test_attribute_access_asks_nothing_of_the_server(silent_port):
    url = f"http://127.0.0.1:{silent_port.getsockname()[1]}"
    with nbserve.Client(url, timeout=1) as client:
        predict = client.predict  # a method proxy, made without a request
        assert callable(predict) and "predict" in repr(predict)
        assert connections(silent_port) == 0
    # once the interface is known, an unknown name is refused at once, still without a request
    known = nbserve.Client(url, interface={"model": "m:1", "methods": [{"name": "predict"}]})
    with pytest.raises(AttributeError, match="no method 'transform'; it serves \\['predict'\\]") as err:
        _ = known.transform
    assert isinstance(err.value, MethodNotFoundError)
    assert connections(silent_port) == 0
    known.close()
    known.close()  # closing twice is harmless
