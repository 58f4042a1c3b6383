"""data.fileio: local files through Python, URIs through TensorFlow's filesystems.

TensorFlow's ``ram://`` filesystem stands in for Cloud Storage: the same GFile code path.
"""

import tensorflow as tf

from data import fileio
from data.sources import DatasetSpec, make_source


def test_local_and_remote_files_read_alike(tmp_path):
    local = tmp_path / "a.csv"
    local.write_bytes("userId,movieId\r\nÄ,2\r\n".encode("latin-1"))
    remote = "ram://fileio-test/a.csv"
    with tf.io.gfile.GFile(remote, "wb") as f:
        f.write(local.read_bytes())
    for path in (str(local), remote):
        assert fileio.is_file(path)
        with fileio.open_binary(path) as f:
            assert f.read() == local.read_bytes()
        with fileio.open_text(path, "latin-1") as f:
            assert list(f) == ["userId,movieId\r\n", "Ä,2\r\n"]
    assert fileio.is_remote(remote) and not fileio.is_remote(str(local))
    assert not fileio.is_file("ram://fileio-test/missing.csv")
    assert not fileio.is_file(str(tmp_path))


def test_a_latest_layout_dataset_reads_from_a_uri():
    root = "ram://fileio-test/ml-latest-small"
    files = {
        "ratings.csv": "userId,movieId,rating,timestamp\n1,10,4.5,100\n1,11,x,101\n",
        "movies.csv": (
            'movieId,title,genres\n10,"Heat, The (1995)",Crime\n11,Up (2009),Children|Comedy\n'
        ),
    }
    for name, text in files.items():
        with tf.io.gfile.GFile(f"{root}/{name}", "w") as f:
            f.write(text)
    source = make_source(DatasetSpec(kind="movielens-latest", path=root))
    rejects = []
    movies = source.read_movies(rejects)
    assert [(m.movie_id, m.title, m.genres, m.release_year) for m in movies.values()] == [
        ("10", "Heat, The (1995)", ("Crime",), 1995),
        ("11", "Up (2009)", ("Children", "Comedy"), 2009),
    ]
    assert rejects == []
    (shard,) = source.rating_shards()
    records = list(source.read_ratings(shard, movies, None))
    assert [(r.user_id, r.movie_id, r.rating) for r in records[:1]] == [("1", "10", 4.5)]
    assert records[1].reason == "bad_rating" and records[1].line_number == 3
