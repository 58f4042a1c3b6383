"""Tests of data.data_home against a local HTTP server serving a fake ml-100k zip."""

import functools
import hashlib
import http.server
import io
import socket
import threading
import zipfile
from pathlib import Path

import pytest

from data import data_home
from data.sources import registry

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
    # A short poll interval: shutdown() waits up to one interval.
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
    )
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


def test_zip_under_another_name_is_checked_as_ml100k(server, tmp_path):
    (tmp_path / "www" / "mirror.zip").write_bytes((tmp_path / "www" / "ml-100k.zip").read_bytes())
    with pytest.raises(
        ValueError, match="ml-100k.zip .*expected md5 0e33842e24a9c977be4e0107933c0723"
    ):
        data_home.ensure_ml100k(tmp_path / "home", url=f"{server}/mirror.zip")


def test_missing_file_on_server_is_unavailable(server, tmp_path):
    with pytest.raises(data_home.DatasetUnavailableError, match="404"):
        data_home.ensure_ml100k(tmp_path, url=f"{server}/nothing-here.zip")


def test_incomplete_existing_directory_is_not_overwritten(server, tmp_path):
    (tmp_path / "ml-100k").mkdir()
    (tmp_path / "ml-100k" / "u.data").write_bytes(b"mine")
    with pytest.raises(data_home.DatasetUnavailableError, match="u.item, u.user"):
        data_home.ensure_ml100k(tmp_path, url=f"{server}/ml-100k.zip", checksums=FAKE_MD5)
    assert (tmp_path / "ml-100k" / "u.data").read_bytes() == b"mine"


LATEST_FILES = {"ratings.csv": b"userId,movieId,rating,timestamp\n1,1,4.0,1\n", "movies.csv": b"m"}


def _zip(name: str, files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for file, body in files.items():
            z.writestr(f"{name}/{file}", body)
    return buf.getvalue()


def _publish(www: Path, name: str, files: dict[str, bytes], md5_text: str | None = None) -> str:
    """Writes ``<name>.zip`` and, md5sum-style unless given, ``<name>.zip.md5``; their MD5."""
    body = _zip(name, files)
    (www / f"{name}.zip").write_bytes(body)
    digest = hashlib.md5(body).hexdigest()
    (www / f"{name}.zip.md5").write_text(md5_text or f"{digest}  {name}.zip\n")
    return digest


def test_ensure_dataset_checks_the_published_md5(server, tmp_path, capsys):
    _publish(tmp_path / "www", "ml-latest-small", LATEST_FILES)
    home = tmp_path / "home"
    got = data_home.ensure_dataset("ml-latest-small", home, base_url=server)
    assert got == home / "ml-latest-small"
    assert {p.name: p.read_bytes() for p in got.iterdir()} == LATEST_FILES
    assert sorted(p.name for p in home.iterdir()) == ["ml-latest-small"]
    err = capsys.readouterr().err
    assert err.startswith("\rdownloading ml-latest-small.zip: ") and err.endswith("MB/s\n")
    assert "100% [########################]" in err
    # Present now: no network needed.
    closed = f"http://127.0.0.1:{_closed_port()}"
    assert data_home.ensure_dataset("ml-latest-small", home, base_url=closed) == got


def test_published_md5_mismatch_leaves_nothing(server, tmp_path):
    wrong = "MD5 (ml-latest.zip) = " + "a" * 32  # the BSD md5 format GroupLens also uses
    digest = hashlib.md5(_zip("ml-latest", LATEST_FILES)).hexdigest()
    _publish(tmp_path / "www", "ml-latest", LATEST_FILES, md5_text=wrong)
    home = tmp_path / "home"
    with pytest.raises(ValueError) as e:
        data_home.ensure_dataset("ml-latest", home, base_url=server)
    assert str(e.value) == (
        f"checksum mismatch for ml-latest.zip from {server}/ml-latest.zip: expected md5 "
        f"{'a' * 32} (published in {server}/ml-latest.zip.md5), got {digest}"
    )
    assert list(home.iterdir()) == []


def test_pinned_md5_is_checked_too(server, tmp_path):
    # The fake zip matches its published .md5 but not GroupLens' real ml-25m.zip.
    _publish(tmp_path / "www", "ml-25m", LATEST_FILES)
    with pytest.raises(ValueError, match="expected md5 6b51fb2759a8657d3bfcbfc42b592ada .pinned"):
        data_home.ensure_dataset("ml-25m", tmp_path / "home", base_url=server)
    assert list((tmp_path / "home").iterdir()) == []


def test_ml100k_through_ensure_dataset_checks_files(server, tmp_path):
    _publish(tmp_path / "www", "ml-100k", FAKE_FILES)
    got = data_home.ensure_dataset("ml-100k", tmp_path / "a", base_url=server, pinned_md5=FAKE_MD5)
    assert (got / "u.item").read_bytes() == FAKE_FILES["u.item"]
    wrong = {**FAKE_MD5, "u.user": "b" * 32}
    with pytest.raises(ValueError, match=f"u.user .* expected md5 {'b' * 32} .pinned."):
        data_home.ensure_dataset("ml-100k", tmp_path / "b", base_url=server, pinned_md5=wrong)


def test_nothing_to_verify_against_refuses(server, tmp_path):
    with pytest.raises(ValueError, match="cannot verify .*ml-100k.zip: there is no .*md5"):
        data_home.ensure_dataset("ml-100k", tmp_path, base_url=server, pinned_md5={})
    assert list(tmp_path.iterdir()) == [tmp_path / "www"]


def test_file_urls_work(tmp_path, capsys):
    www = tmp_path / "www"
    www.mkdir()
    _publish(www, "ml-20m", LATEST_FILES)
    got = data_home.ensure_dataset(
        "ml-20m", tmp_path / "home", base_url=www.as_uri(), pinned_md5={}
    )
    assert (got / "ratings.csv").read_bytes() == LATEST_FILES["ratings.csv"]
    assert "downloading ml-20m.zip: 100%" in capsys.readouterr().err


def test_offline_error_says_where_to_put_the_files(tmp_path):
    base = f"http://127.0.0.1:{_closed_port()}/movielens"
    with pytest.raises(data_home.DatasetUnavailableError) as e:
        data_home.ensure_dataset("ml-32m", tmp_path, base_url=base)
    message = str(e.value)
    assert message.startswith(
        f"ml-32m is not at {tmp_path}/ml-32m and could not be downloaded from "
        f"{base}/ml-32m.zip ("
    )
    assert message.endswith(
        f"Place the files at {tmp_path}/ml-32m/ratings.csv, movies.csv (from ml-32m.zip), or "
        "set MOVIEREC_DATA_HOME to a directory that holds ml-32m/."
    )
    assert list(tmp_path.iterdir()) == []


def test_netflix_is_never_downloaded(tmp_path):
    with pytest.raises(data_home.DatasetUnavailableError) as e:
        data_home.ensure_dataset("netflix", tmp_path)
    assert f"{tmp_path}/netflix/Netflix_Dataset_Rating.csv, Netflix_Dataset_Movie.csv" in str(
        e.value
    )
    assert "Kaggle" in str(e.value)
    (tmp_path / "netflix").mkdir()
    for name in ("Netflix_Dataset_Rating.csv", "Netflix_Dataset_Movie.csv"):
        (tmp_path / "netflix" / name).write_text("x")
    assert data_home.ensure_dataset("netflix", tmp_path) == tmp_path / "netflix"


def test_unknown_dataset_lists_the_known_ones(tmp_path):
    with pytest.raises(ValueError) as e:
        data_home.ensure_dataset("ml-1m", tmp_path)
    assert str(e.value) == (
        "unknown dataset 'ml-1m'; known: ml-100k, ml-latest-small, ml-latest, ml-20m, ml-25m, "
        "ml-32m, netflix"
    )


def test_progress_line():
    out = io.StringIO()
    progress = data_home._Progress("x.zip", 2_000_000, stream=out)
    progress.update(500_000, final=True)
    progress.update(2_000_000, final=True)
    lines = out.getvalue().split("\n")
    assert lines[0].startswith("\rdownloading x.zip:  25% [######..................] 0.5/2.0 MB ")
    assert lines[1].startswith("\rdownloading x.zip: 100% [########################] 2.0/2.0 MB ")
    assert lines[0].endswith(" MB/s") and lines[2] == ""
    unknown = io.StringIO()
    data_home._Progress("y.zip", 0, stream=unknown).update(3_500_000, final=True)
    assert unknown.getvalue().startswith("\rdownloading y.zip: 3.5 MB ")


def test_the_datasets_and_their_files_are_the_registrys():
    assert data_home.DATASET_FILES is registry.DATASET_FILES
    assert data_home.DOWNLOADABLE == registry.DOWNLOADABLE == tuple(data_home.DATASET_FILES)[:-1]
    assert data_home.REQUIRED_FILES == ("u.data", "u.item", "u.user")
    assert "netflix" not in data_home.DOWNLOADABLE
