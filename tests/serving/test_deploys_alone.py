"""The serving runtime deploys alone: a process that serves pushed models (``movierec serve``'s
code: the model store, the product, the HTTP server) loads nothing of the training side."""

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

_SERVE_ONE_REQUEST = """
import json, sys, threading, urllib.request
from serving import commands, server, service

store = service.open_store(sys.argv[1])
store.poll()
httpd = server.make_server(store, "127.0.0.1", 0)
threading.Thread(target=httpd.serve_forever, daemon=True).start()
host, port = httpd.server_address[:2]
body = json.dumps({"user_id": "u4", "k": 5}).encode()
request = urllib.request.Request(f"http://{host}:{port}/v1/recommend", body, method="POST")
with urllib.request.urlopen(request, timeout=60) as response:
    answer = json.load(response)
httpd.shutdown()
loaded = sorted({name.split(".")[0] for name in sys.modules})
print(json.dumps({"answer": answer, "loaded": loaded}))
"""

FORBIDDEN = (
    "pipeline",
    "components",
    "trainer",
    "publish",
    "data",
    "evaluation",
    "tfx",
    "ml_metadata",
    "tensorflow_transform",
    "apache_beam",
    "tensorflow_recommenders",
)


def test_a_serving_process_loads_no_training_side_module(serving_dir):
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, "-c", _SERVE_ONE_REQUEST, str(serving_dir)],
        env=env,
        cwd=str(serving_dir),  # not the repo root, so only PYTHONPATH finds the packages
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(out["answer"]["recommendations"]) == 5
    assert out["answer"]["known_user"] is True
    assert "tensorflow" in out["loaded"] and "serving" in out["loaded"]
    assert sorted(set(out["loaded"]) & set(FORBIDDEN)) == []
