"""Tests of components.data_home against a local HTTP server serving a fake ml-100k zip."""

import functools
import hashlib
import http.server
import io
import socket
import threading
import zipfile
from pathlib import Path

import pytest

from components import data_home

FAKE_FILES = {
    "u.data": b"1\t1\t5\t881250949\n",
    "u.item": b"1|Toy Story (1995)|01-Jan-1995||url|0|0|0|1|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0\n",
    "u.user": b"1|24|M|technician|85711\n",
}
FAKE_MD5 = {name: hashlib.md5(body).hexdigest() for name, body in FAKE_FILES.items()}


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002  (the base class's signature)
        pass


@pytest.fixture
def server(tmp_path):
    """Serves tmp_path/www over HTTP on 127.0.0.1; yields the base URL."""
    www = tmp_path / "www"
    www.mkdir()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, body in FAKE_FILES.items():
            z.writestr(f"ml-100k/{name}", body)
        z.writestr("ml-100k/README", b"fake")
    (www / "ml-100k.zip").write_bytes(buf.getvalue())
    handler = functools.partial(_QuietHandler, directory=str(www))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    "env, expected",
    [
        ({"MOVIEREC_DATA_HOME": "/d", "XDG_DATA_HOME": "/x", "HOME": "/h"}, "/d"),
        ({"XDG_DATA_HOME": "/x", "HOME": "/h"}, "/x/movierec"),
        ({"MOVIEREC_DATA_HOME": "", "XDG_DATA_HOME": "/x", "HOME": "/h"}, "/x/movierec"),
        ({"HOME": "/h"}, "/h/.local/share/movierec"),
    ],
)
def test_resolve_data_home(env, expected):
    assert data_home.resolve_data_home(env) == Path(expected)


def test_downloads_verifies_and_unpacks(server, tmp_path, capsys):
    home = tmp_path / "home"
    got = data_home.ensure_ml100k(home, url=f"{server}/ml-100k.zip", checksums=FAKE_MD5)
    assert got == home / "ml-100k"
    for name, body in FAKE_FILES.items():
        assert (got / name).read_bytes() == body
    assert sorted(p.name for p in home.iterdir()) == ["ml-100k"]  # no temp dir left
    assert "downloading" in capsys.readouterr().err


def test_existing_files_are_used_without_network(tmp_path):
    target = tmp_path / "ml-100k"
    target.mkdir()
    for name, body in FAKE_FILES.items():
        (target / name).write_bytes(body)
    url = f"http://127.0.0.1:{_closed_port()}/ml-100k.zip"
    assert data_home.ensure_ml100k(tmp_path, url=url) == target


def test_checksum_mismatch_leaves_nothing(server, tmp_path):
    home = tmp_path / "home"
    wrong = {**FAKE_MD5, "u.item": "0" * 32}
    with pytest.raises(ValueError) as e:
        data_home.ensure_ml100k(home, url=f"{server}/ml-100k.zip", checksums=wrong)
    message = str(e.value)
    assert "u.item" in message and "0" * 32 in message and FAKE_MD5["u.item"] in message
    assert list(home.iterdir()) == []


def test_unreachable_url_says_url_and_where_to_put_files(tmp_path):
    home = tmp_path / "home"
    url = f"http://127.0.0.1:{_closed_port()}/ml-100k.zip"
    with pytest.raises(data_home.DatasetUnavailableError) as e:
        data_home.ensure_ml100k(home, url=url)
    message = str(e.value)
    assert url in message
    assert f"{home}/ml-100k/u.data, u.item, u.user" in message
    assert "MOVIEREC_DATA_HOME" in message
    assert not (home / "ml-100k").exists()


def test_missing_file_on_server_is_unavailable(server, tmp_path):
    with pytest.raises(data_home.DatasetUnavailableError, match="404"):
        data_home.ensure_ml100k(tmp_path, url=f"{server}/nothing-here.zip")


def test_incomplete_existing_directory_is_not_overwritten(server, tmp_path):
    (tmp_path / "ml-100k").mkdir()
    (tmp_path / "ml-100k" / "u.data").write_bytes(b"mine")
    with pytest.raises(data_home.DatasetUnavailableError, match="u.item, u.user"):
        data_home.ensure_ml100k(tmp_path, url=f"{server}/ml-100k.zip", checksums=FAKE_MD5)
    assert (tmp_path / "ml-100k" / "u.data").read_bytes() == b"mine"
