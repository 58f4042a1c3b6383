"""Where MovieLens 100k lives on this machine, and fetching it once when it is not there.

``pipeline.cli``, ``bench`` and the end-to-end tests call :func:`resolve_data_home` with the
environment, then :func:`ensure_ml100k`, and pass the returned directory to the pipeline. The
dataset is never part of the repository: MovieLens' license forbids redistributing it.
"""

import hashlib
import os
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Mapping
from pathlib import Path

GROUPLENS_ML100K_URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
DIRNAME = "ml-100k"
# MD5 of the files GroupLens publishes (they match ml-100k/MD5SUMS inside the zip).
ML100K_MD5 = {
    "u.data": "6e47046882bad158b0efbb84cd5cb987",
    "u.item": "c9e7f390115d79079537301d5204f3f7",
    "u.user": "1b53539edc13caad0282c8500608a319",
}
REQUIRED_FILES = ("u.data", "u.item", "u.user")
_TIMEOUT_SECONDS = 60
_CHUNK_BYTES = 1 << 16


class DatasetUnavailableError(RuntimeError):
    """MovieLens 100k is neither on disk nor downloadable."""


def resolve_data_home(env: Mapping[str, str]) -> Path:
    """The directory that holds (or will hold) ``ml-100k/``.

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


def _has_files(directory: Path) -> bool:
    return all((directory / name).is_file() for name in REQUIRED_FILES)


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _unavailable(home: Path, url: str, why: str) -> DatasetUnavailableError:
    target = home / DIRNAME
    return DatasetUnavailableError(
        f"MovieLens 100k is not at {target} and could not be downloaded from {url} ({why}). "
        f"Place the files at {target}/u.data, u.item, u.user, or set MOVIEREC_DATA_HOME to a "
        f"directory that holds {DIRNAME}/."
    )


def _download(url: str, dest: Path) -> None:
    """Streams ``url`` to ``dest``, printing one progress line on stderr."""
    with urllib.request.urlopen(url, timeout=_TIMEOUT_SECONDS) as response, open(dest, "wb") as f:
        total = int(response.headers.get("Content-Length") or 0)
        done = 0
        while chunk := response.read(_CHUNK_BYTES):
            f.write(chunk)
            done += len(chunk)
            of_total = f" of {total / 1e6:.1f}" if total else ""
            print(f"\rdownloading {url}: {done / 1e6:.1f}{of_total} MB", end="", file=sys.stderr)
        print(file=sys.stderr)


def ensure_ml100k(
    home: Path,
    url: str = GROUPLENS_ML100K_URL,
    checksums: Mapping[str, str] = ML100K_MD5,
) -> Path:
    """Returns ``home/ml-100k``, downloading and verifying it first if it is not there.

    The zip is unpacked into a temporary directory inside ``home`` and only renamed to
    ``home/ml-100k`` once every file in ``checksums`` has the expected MD5, so a failed or
    interrupted download never leaves a partial dataset behind.

    Args:
      home: the data home, usually from :func:`resolve_data_home`.
      url: the ml-100k zip (its members under ``ml-100k/``).
      checksums: file name -> expected MD5 hex digest.

    Returns:
      the directory holding u.data, u.item and u.user.

    Raises:
      DatasetUnavailableError: the download failed, or ``home/ml-100k`` exists without the
        files (it is never overwritten).
      ValueError: the download is not a zip with those files, or a checksum does not match.
    """
    home = Path(home)
    target = home / DIRNAME
    if _has_files(target):
        return target
    if target.exists():
        missing = [n for n in REQUIRED_FILES if not (target / n).is_file()]
        raise DatasetUnavailableError(
            f"{target} exists but lacks {', '.join(missing)}; it is not overwritten. Place the "
            f"files at {target}/u.data, u.item, u.user, or remove {target} to download them."
        )
    home.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=home, prefix=f".{DIRNAME}-download-") as tmp:
        archive = Path(tmp) / f"{DIRNAME}.zip"
        try:
            _download(url, archive)
        except (urllib.error.URLError, OSError) as e:
            raise _unavailable(home, url, str(e)) from e
        try:
            with zipfile.ZipFile(archive) as z:
                z.extractall(tmp)
        except zipfile.BadZipFile as e:
            raise ValueError(f"{url} is not a valid zip file: {e}") from e
        unpacked = Path(tmp) / DIRNAME
        if not _has_files(unpacked):
            raise ValueError(f"{url} has no {DIRNAME}/u.data, u.item and u.user")
        for name, expected in checksums.items():
            actual = _md5(unpacked / name)
            if actual != expected:
                raise ValueError(
                    f"checksum mismatch for {name} from {url}: expected md5 {expected}, "
                    f"got {actual}"
                )
        try:
            os.replace(unpacked, target)
        except OSError:
            # Another process may have put the dataset in place meanwhile.
            if not _has_files(target):
                raise
    return target
