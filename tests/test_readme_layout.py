"""README's layout section matches the tree: every module it names exists, and every module of
each package is named there."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("pipeline", "components", "data", "evaluation", "trainer", "publish", "serving")


def _layout_rows() -> dict[str, str]:
    """``{package: its row's text}`` from the code block under README's ``## Layout``."""
    text = (REPO / "README.md").read_text()
    section = text.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    block = section.split("```", 2)[1]
    rows, current = {}, None
    for line in block.splitlines():
        match = re.match(r"^([a-z_]+)/\s", line)
        if match:
            current = match.group(1)
            rows[current] = line
        elif current and line.startswith(" "):
            rows[current] += " " + line.strip()
    return rows


def test_every_package_and_module_is_in_the_layout_and_nothing_else():
    rows = _layout_rows()
    assert set(PACKAGES) <= set(rows), sorted(set(PACKAGES) - set(rows))
    for package in PACKAGES:
        named = set(re.findall(r"\b([a-z_0-9]+\.py)\b", rows[package]))
        named_dirs = set(re.findall(r"\b([a-z_]+)/", rows[package])) - set(PACKAGES)
        modules = {p.name for p in (REPO / package).glob("*.py") if p.name != "__init__.py"}
        subpackages = {p.parent.name for p in (REPO / package).glob("*/__init__.py")}
        assert modules <= named, (package, sorted(modules - named))
        in_tree = {p.name for p in (REPO / package).rglob("*.py")}
        assert named <= in_tree, (package, sorted(named - in_tree))
        assert subpackages <= named_dirs, (package, sorted(subpackages - named_dirs))
        assert all((REPO / package / d).is_dir() for d in named_dirs), (package, named_dirs)
    for top in set(rows) - set(PACKAGES):
        assert (REPO / top).is_dir(), top
