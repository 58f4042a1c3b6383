"""Where datasets live on this machine, and fetching the GroupLens ones once when missing.

``pipeline.cli``, ``bench`` and the end-to-end tests call :func:`resolve_data_home` with the
environment, then :func:`ensure_dataset` (or :func:`ensure_ml100k`), and pass the returned
directory on (``data.sources.dataset_spec`` maps a name to the same directory). Which
datasets live here, the files each needs and which can be downloaded come from the registry
of dataset kinds (``data.sources.registry``). The datasets are never part of the repository:
their licenses forbid redistributing them.
"""

import hashlib
import os
import re
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

from data.sources.registry import DATASET_FILES, DATASETS, DOWNLOADABLE

GROUPLENS_BASE_URL = "https://files.grouplens.org/datasets/movielens"
GROUPLENS_ML100K_URL = f"{GROUPLENS_BASE_URL}/ml-100k.zip"
DIRNAME = "ml-100k"
# DATASET_FILES (the files each dataset needs in <data home>/<name>/) and DOWNLOADABLE (the
# GroupLens ones among them) are the registry's, re-exported here.
REQUIRED_FILES = DATASET_FILES[DIRNAME]
# MD5 of the files GroupLens publishes (they match ml-100k/MD5SUMS inside the zip), and of
# the zip itself (as its ml-100k.zip.md5 says).
ML100K_MD5 = {
    "ml-100k.zip": "0e33842e24a9c977be4e0107933c0723",
    "u.data": "6e47046882bad158b0efbb84cd5cb987",
    "u.item": "c9e7f390115d79079537301d5204f3f7",
    "u.user": "1b53539edc13caad0282c8500608a319",
}
# Known MD5s, file name -> digest, checked on top of the published <name>.zip.md5. The
# ml-latest sets are re-released now and then, so only their published MD5 is checked.
PINNED_MD5 = {
    "ml-100k": ML100K_MD5,
    "ml-20m": {"ml-20m.zip": "cd245b17a1ae2cc31bb14903e1204af3"},
    "ml-25m": {"ml-25m.zip": "6b51fb2759a8657d3bfcbfc42b592ada"},
    "ml-32m": {"ml-32m.zip": "d472be332d4daa821edc399621853b57"},
}
_TIMEOUT_SECONDS = 60
_CHUNK_BYTES = 1 << 16
_MD5_TEXT = re.compile(r"\b([0-9a-fA-F]{32})\b")


class DatasetUnavailableError(RuntimeError):
    """A dataset is neither on disk nor downloadable."""


def resolve_data_home(env: Mapping[str, str]) -> Path:
    """The directory that holds (or will hold) ``ml-100k/`` and the other datasets.

    Args:
      env: environment variables, e.g. ``os.environ``.

    Returns:
      ``$MOVIEREC_DATA_HOME`` if set, else ``$XDG_DATA_HOME/movierec``, else
      ``~/.local/share/movierec`` (``~`` from ``$HOME`` when set).
    """
    if env.get("MOVIEREC_DATA_HOME"):
        return Path(env["MOVIEREC_DATA_HOME"]).expanduser()
    if env.get("XDG_DATA_HOME"):
        return Path(env["XDG_DATA_HOME"]).expanduser() / "movierec"
    home = Path(env["HOME"]) if env.get("HOME") else Path.home()
    return home / ".local" / "share" / "movierec"


def _missing(directory: Path, files) -> list[str]:
    return [name for name in files if not (directory / name).is_file()]


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _placement(target: Path, files) -> str:
    return f"{target}/{', '.join(files)}"


def _unavailable(name: str, home: Path, url: str, why: str) -> DatasetUnavailableError:
    target = home / name
    return DatasetUnavailableError(
        f"{name} is not at {target} and could not be downloaded from {url} ({why}). Place the "
        f"files at {_placement(target, DATASET_FILES[name])} (from {name}.zip), or set "
        f"MOVIEREC_DATA_HOME to a directory that holds {name}/."
    )


class _Progress:
    """One self-overwriting line on a terminal: percent, a bar, megabytes and rate."""

    _WIDTH = 24
    _EVERY_SECONDS = 0.1

    def __init__(self, label: str, total: int, stream: TextIO | None = None):
        self._label, self._total = label, total
        self._stream = stream or sys.stderr  # looked up now: tests and tools swap sys.stderr
        self._start = self._shown = time.monotonic()

    def update(self, done: int, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self._shown < self._EVERY_SECONDS:
            return
        self._shown = now
        rate = done / max(now - self._start, 1e-9) / 1e6
        if self._total:
            fraction = min(done / self._total, 1.0)
            filled = round(fraction * self._WIDTH)
            bar = "#" * filled + "." * (self._WIDTH - filled)
            text = f"{fraction:4.0%} [{bar}] {done / 1e6:.1f}/{self._total / 1e6:.1f} MB"
        else:
            text = f"{done / 1e6:.1f} MB"
        line = f"\rdownloading {self._label}: {text} {rate:.1f} MB/s"
        self._stream.write(line + ("\n" if final else ""))
        self._stream.flush()


def _download(url: str, dest: Path) -> str:
    """Streams ``url`` to ``dest`` with a progress line on stderr; returns the MD5 hex digest."""
    digest = hashlib.md5()
    with urllib.request.urlopen(url, timeout=_TIMEOUT_SECONDS) as response, open(dest, "wb") as f:
        progress = _Progress(
            url.rsplit("/", 1)[-1], int(response.headers.get("Content-Length") or 0)
        )
        done = 0
        while chunk := response.read(_CHUNK_BYTES):
            f.write(chunk)
            digest.update(chunk)
            done += len(chunk)
            progress.update(done)
        progress.update(done, final=True)
    return digest.hexdigest()


def _published_md5(url: str) -> str | None:
    """The MD5 in GroupLens' ``<zip>.md5`` beside ``url``; None when there is no such file.

    Raises:
      urllib.error.URLError, OSError: the server could not be reached.
      ValueError: the file holds no MD5.
    """
    try:
        with urllib.request.urlopen(url + ".md5", timeout=_TIMEOUT_SECONDS) as response:
            text = response.read(4096).decode("ascii", "replace")
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return None
        raise
    except urllib.error.URLError as e:
        if isinstance(e.reason, FileNotFoundError):  # a file:// URL without a .md5 beside it
            return None
        raise
    match = _MD5_TEXT.search(text)
    if not match:
        raise ValueError(f"{url}.md5 holds no MD5 digest: {text[:100]!r}")
    return match.group(1).lower()


def _check(what: str, url: str, expected: str, actual: str, source: str) -> None:
    if actual != expected.lower():
        raise ValueError(
            f"checksum mismatch for {what} from {url}: expected md5 {expected} ({source}), "
            f"got {actual}"
        )


def _fetch(name: str, home: Path, url: str, pinned: Mapping[str, str]) -> Path:
    """Downloads ``url`` (a zip of ``<name>/...``) into ``home/<name>``, verified.

    The zip's MD5 must match ``<url>.md5`` when the server publishes it, and ``pinned`` for
    the keys it has (``<name>.zip``, or the name of a file inside it); at least one of the
    two must exist. The zip is unpacked in a temporary directory inside ``home`` and renamed to
    ``home/<name>`` only once everything checks out, so a failed or interrupted download
    never leaves a partial dataset behind.
    """
    target = home / name
    zip_name = f"{name}.zip"
    home.mkdir(parents=True, exist_ok=True)
    try:
        published = _published_md5(url)
    except (urllib.error.URLError, OSError) as e:
        raise _unavailable(name, home, url, str(e)) from e
    if published is None and not pinned:
        raise ValueError(f"cannot verify {url}: there is no {url}.md5 and no pinned checksum")
    with tempfile.TemporaryDirectory(dir=home, prefix=f".{name}-download-") as tmp:
        archive = Path(tmp) / url.rsplit("/", 1)[-1]
        try:
            actual = _download(url, archive)
        except (urllib.error.URLError, OSError) as e:
            raise _unavailable(name, home, url, str(e)) from e
        if published is not None:
            _check(zip_name, url, published, actual, f"published in {url}.md5")
        if zip_name in pinned:
            _check(zip_name, url, pinned[zip_name], actual, "pinned")
        try:
            with zipfile.ZipFile(archive) as z:
                z.extractall(tmp)
        except zipfile.BadZipFile as e:
            raise ValueError(f"{url} is not a valid zip file: {e}") from e
        unpacked = Path(tmp) / name
        if _missing(unpacked, DATASET_FILES[name]):
            raise ValueError(f"{url} has no {_placement(Path(name), DATASET_FILES[name])}")
        for file, expected in pinned.items():
            if file != zip_name:
                _check(file, url, expected, _md5(unpacked / file), "pinned")
        try:
            os.replace(unpacked, target)
        except OSError:
            # Another process may have put the dataset in place meanwhile.
            if _missing(target, DATASET_FILES[name]):
                raise
    return target


def ensure_dataset(
    name: str,
    home: Path,
    *,
    base_url: str = GROUPLENS_BASE_URL,
    pinned_md5: Mapping[str, str] | None = None,
) -> Path:
    """Returns ``home/<name>``, downloading and verifying it first if it is not there.

    Args:
      name: a GroupLens set (``DOWNLOADABLE``: ml-100k, ml-latest-small, ml-latest, ml-20m,
        ml-25m, ml-32m) or ``"netflix"``, which is never downloaded (Kaggle needs an
        account): its two CSVs must already be in ``home/netflix``. The names, their files
        and which are downloadable are the registry's (``data.sources.registry``).
      home: the data home, usually from :func:`resolve_data_home`.
      base_url: where ``<name>.zip`` and ``<name>.zip.md5`` are.
      pinned_md5: file name (``<name>.zip`` or a file inside it) -> expected MD5; default
        ``PINNED_MD5[name]``.

    Returns:
      the directory holding the files ``DATASET_FILES[name]``.

    Raises:
      ValueError: an unknown name (listing the known ones); a download that is not a zip
        with those files, or whose checksum does not match.
      DatasetUnavailableError: the download failed, the Netflix files are missing, or
        ``home/<name>`` exists without the files (it is never overwritten). The message says
        which files to place where.
    """
    if name not in DATASET_FILES:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASET_FILES)}")
    home = Path(home)
    target = home / name
    files = DATASET_FILES[name]
    missing = _missing(target, files)
    if not missing:
        return target
    if name not in DOWNLOADABLE:
        raise DatasetUnavailableError(
            f"the {name} data is not at {target} and cannot be downloaded automatically "
            f"({DATASETS[name].no_download}): download it yourself and place the files at "
            f"{_placement(target, files)}, or set MOVIEREC_DATA_HOME to a directory that "
            f"holds {name}/."
        )
    if target.exists():
        raise DatasetUnavailableError(
            f"{target} exists but lacks {', '.join(missing)}; it is not overwritten. Place the "
            f"files at {_placement(target, files)}, or remove {target} to download them."
        )
    pinned = PINNED_MD5.get(name, {}) if pinned_md5 is None else pinned_md5
    return _fetch(name, home, f"{base_url.rstrip('/')}/{name}.zip", pinned)


def ensure_ml100k(
    home: Path,
    url: str = GROUPLENS_ML100K_URL,
    checksums: Mapping[str, str] = ML100K_MD5,
) -> Path:
    """Returns ``home/ml-100k``, downloading and verifying it first if it is not there.

    As :func:`ensure_dataset` for ``"ml-100k"``, with the zip's URL given whole.

    Args:
      home: the data home, usually from :func:`resolve_data_home`.
      url: the ml-100k zip (its members under ``ml-100k/``); ``<url>.md5`` is checked too
        when the server has it.
      checksums: file name (``ml-100k.zip`` or u.data, u.item, u.user) -> expected MD5.

    Returns:
      the directory holding u.data, u.item and u.user.

    Raises:
      DatasetUnavailableError: the download failed, or ``home/ml-100k`` exists without the
        files (it is never overwritten).
      ValueError: the download is not a zip with those files, or a checksum does not match.
    """
    home = Path(home)
    target = home / DIRNAME
    missing = _missing(target, REQUIRED_FILES)
    if missing and not target.exists():
        return _fetch(DIRNAME, home, url, checksums)
    return ensure_dataset(DIRNAME, home, pinned_md5=checksums)
