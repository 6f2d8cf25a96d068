#!/usr/bin/env python3
"""Image build helper: pyproject's dependencies as a requirements file, and a check that what got
installed is exactly what constraints.txt pins.

    python pins.py requirements pyproject.toml > /tmp/requirements.txt
    pip install -c constraints.txt -r /tmp/requirements.txt
    python pins.py check constraints.txt ray torch mlflow     # fails the build on any drift

`check` compares every installed distribution that constraints.txt names (local version labels such
as +cpu ignored) and requires the named distributions to be installed at all. Standard library only.
"""

from __future__ import annotations

import re
import sys
import tomllib
from importlib import metadata


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_constraints(path: str) -> dict[str, str]:
    pins = {}
    with open(path) as f:
        for raw in f:
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            name, sep, version = line.partition("==")
            if not sep:
                raise SystemExit(f"{path}: {line!r} is not an exact pin (name==version)")
            pins[canonical(name.split("[")[0])] = version.strip()
    return pins


def requirements(pyproject: str, extras: list[str]) -> list[str]:
    with open(pyproject, "rb") as f:
        project = tomllib.load(f)["project"]
    reqs = list(project["dependencies"])
    for extra in extras:
        reqs += project.get("optional-dependencies", {})[extra]
    return reqs


def check(constraints: str, required: list[str]) -> list[str]:
    pins = read_constraints(constraints)
    problems = []
    installed = {canonical(d.metadata["Name"]): d.version for d in metadata.distributions()}
    for name in map(canonical, required):
        if name not in installed:
            problems.append(f"{name}: not installed")
    for name, version in sorted(installed.items()):
        want = pins.get(name)
        if want is not None and version.split("+")[0] != want:
            problems.append(f"{name}: installed {version}, constraints.txt pins {want}")
    return problems


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[0] == "requirements":
        print("\n".join(requirements(argv[1], argv[2:])))
        return 0
    if len(argv) >= 2 and argv[0] == "check":
        problems = check(argv[1], argv[2:])
        for p in problems:
            print(f"pins: {p}", file=sys.stderr)
        if not problems:
            print(f"pins: ok: installed versions match {argv[1]}")
        return 1 if problems else 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
