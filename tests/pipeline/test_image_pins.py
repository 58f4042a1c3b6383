"""The pipeline image (Dockerfile) installs exactly what pyproject.toml pins.

The Dockerfile installs the project itself (``pip install .``), so pyproject.toml is the one
list of versions; these tests fail when a version written in the Dockerfile (a pip pin, the
Python base tag, the Beam SDK image tag) contradicts it, or when the image would miss part
of the project. Nothing here builds the image.
"""

import re
import shlex
from pathlib import Path

import pytest
import tomli
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from pipeline import kubeflow_v2_runner

ROOT = Path(__file__).resolve().parents[2]
PYTHON_IMAGE = re.compile(r"^(?:docker\.io/)?(?:library/)?python:(\d+\.\d+)")
BEAM_IMAGE = re.compile(r"^(?:docker\.io/)?apache/beam_python(\d+\.\d+)_sdk:([\w.]+)$")


def instructions(dockerfile: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    lines = [ln for ln in dockerfile.splitlines() if not ln.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    result = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


def pip_install_args(dockerfile: str) -> list[str]:
    """Every argument of every ``pip install`` in RUN instructions."""
    args = []
    for keyword, rest in instructions(dockerfile):
        if keyword != "RUN":
            continue
        for command in re.split(r"&&|;", rest):
            words = shlex.split(command)
            for i in range(len(words) - 1):
                if words[i].endswith("pip") and words[i + 1] == "install":
                    args += words[i + 2 :]
    return args


def pinned(pyproject: dict) -> dict[str, SpecifierSet]:
    """Package -> specifier over dependencies, every extra and the build requirements."""
    reqs = list(pyproject["project"]["dependencies"])
    for extra in pyproject["project"].get("optional-dependencies", {}).values():
        reqs += extra
    reqs += pyproject["build-system"]["requires"]
    specs = {}
    for req in map(Requirement, reqs):
        name = canonicalize_name(req.name)
        specs[name] = specs.get(name, SpecifierSet()) & req.specifier
    return specs


def contradictions(dockerfile: str, pyproject: dict) -> list[str]:
    """Versions in the Dockerfile that pyproject.toml does not allow; [] when in line."""
    specs = pinned(pyproject)
    python = SpecifierSet(pyproject["project"]["requires-python"])
    found = []
    for arg in pip_install_args(dockerfile):
        try:
            req = Requirement(arg)
        except InvalidRequirement:  # ".", ".[extra]", options
            continue
        ours = specs.get(canonicalize_name(req.name))
        if ours is None or not req.specifier:
            continue
        exact = [s.version for s in req.specifier if s.operator == "=="]
        if exact and not ours.contains(exact[0], prereleases=True):
            found.append(f"pip {arg}: pyproject wants {req.name}{ours}")
        elif not exact and req.specifier != ours:
            found.append(f"pip {arg}: pyproject wants {req.name}{ours}")
    for keyword, rest in instructions(dockerfile):
        if keyword != "FROM":
            continue
        image = rest.split()[0]
        m = PYTHON_IMAGE.match(image)
        if m and m.group(1) not in python:
            found.append(f"FROM {image}: requires-python is {python}")
        m = BEAM_IMAGE.match(image)
        if m:
            if m.group(1) not in python:
                found.append(f"FROM {image}: requires-python is {python}")
            if m.group(2) not in specs["apache-beam"]:
                found.append(f"FROM {image}: pyproject wants apache-beam{specs['apache-beam']}")
    return found


@pytest.fixture(scope="module")
def dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text()


@pytest.fixture(scope="module")
def pyproject() -> dict:
    return tomli.loads((ROOT / "pyproject.toml").read_text())


def test_no_version_in_the_dockerfile_contradicts_pyproject(dockerfile, pyproject):
    assert contradictions(dockerfile, pyproject) == []
    # The Beam SDK image supplies the workers' boot binary; its tag is a version to check.
    bases = [rest.split()[0] for k, rest in instructions(dockerfile) if k == "FROM"]
    assert any(BEAM_IMAGE.match(base) for base in bases), bases


def test_the_checker_catches_drift(pyproject):
    drifted = (
        "FROM apache/beam_python3.11_sdk:2.58.0 AS beam\n"
        "FROM python:3.12-slim\n"
        "RUN pip install --upgrade pip && \\\n"
        '    pip install tensorflow==2.15.0 "numpy>=2" scann==1.3.2 tf-keras .\n'
    )
    found = contradictions(drifted, pyproject)
    assert len(found) == 5, found
    for culprit in ("python3.11", "2.58.0", "python:3.12", "tensorflow==2.15.0", "numpy>=2"):
        assert any(culprit in f for f in found), (culprit, found)


def test_the_image_installs_the_project_with_the_kubeflow_extra(dockerfile, pyproject):
    projects = [a for a in pip_install_args(dockerfile) if re.fullmatch(r"\.(\[[\w,-]+\])?", a)]
    assert len(projects) == 1, pip_install_args(dockerfile)
    extras = set(re.findall(r"[\w-]+", projects[0]))
    # The Vertex executor entry point imports kfp.pipeline_spec inside the image.
    assert extras == {"kubeflow"}
    assert extras <= set(pyproject["project"]["optional-dependencies"])


def test_the_image_holds_every_package_and_file_pip_needs(dockerfile, pyproject):
    copied = set()
    for keyword, rest in instructions(dockerfile):
        if keyword == "COPY" and not rest.startswith("--from"):
            copied.update(Path(source) for source in rest.split()[:-1])
    needed = {Path("pyproject.toml"), Path(pyproject["project"]["readme"])}
    needed |= {Path(*p.split(".")) for p in pyproject["tool"]["setuptools"]["packages"]}
    # A copied directory brings its subpackages (components/sources with components).
    missing = {p for p in needed if not any(c == p or c in p.parents for c in copied)}
    assert missing == set()


def test_the_image_matches_the_vertex_runner(dockerfile):
    settings = instructions(dockerfile)
    workdirs = [rest for k, rest in settings if k == "WORKDIR"]
    assert workdirs == [kubeflow_v2_runner.IMAGE_WORKDIR]
    relative = Path(kubeflow_v2_runner.IMAGE_SCHEMA_PATH).relative_to(workdirs[0])
    assert (ROOT / relative).is_file()
    env = " ".join(rest for k, rest in settings if k == "ENV")
    assert re.search(r"(^|\s)TF_USE_LEGACY_KERAS=1(\s|$)", env)
    assert settings[-1] == ("ENTRYPOINT", '["/opt/apache/beam/boot"]')
