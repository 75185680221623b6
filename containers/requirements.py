"""Print the requirements file of an image's dependency layer: the package's dependencies, never the package.

    python3 requirements.py pyproject.toml [FLAVOUR.txt] > requirements.txt

Without a flavour file: the base install's dependencies. A flavour file (containers/flavours/) is a pip
requirements file that names the package with the extras to install (``streamrec[trainer]``) and may add pip
options (``--extra-index-url``); the package's line is replaced by the dependencies of those extras (nested
self-references expanded), other lines are kept. Lets an image install its dependencies in a layer that only
this list and constraints.txt invalidate, before the sources are copied.
"""

import re
import sys
import tomllib


def requirements(project: dict, extras: list[str]) -> list[str]:
    """The base dependencies plus those of ``extras``, self-references expanded, sorted and unique."""
    name = project["name"]
    out = list(project["dependencies"])
    pending, seen = list(extras), set()
    while pending:
        extra = pending.pop()
        if extra in seen:
            continue
        seen.add(extra)
        if extra not in project["optional-dependencies"]:
            raise SystemExit(f"requirements.py: {name} has no extra {extra!r}")
        for line in project["optional-dependencies"][extra]:
            if line.replace(" ", "").startswith(f"{name}["):
                pending += self_extras(line)
            else:
                out.append(line)
    return sorted(set(out))


def self_extras(line: str) -> list[str]:
    inside = line.split("[", 1)[1].split("]", 1)[0]
    return [e.strip() for e in inside.split(",") if e.strip()]


#: pip's comment rule: from a ``#`` at the start of a line or after whitespace to the end of the line.
COMMENT = re.compile(r"(^|\s)#.*$")


def flavour_lines(project: dict, lines: list[str]) -> list[str]:
    """The flavour file's pip options, then the dependencies of the extras its package line names."""
    own = re.compile(rf"^{re.escape(project['name'])}\s*(\[.*\])?\s*$")
    options, extras, named = [], [], False
    for raw in lines:
        line = COMMENT.sub("", raw).strip()
        if not line:
            continue
        if own.match(line):
            named = True
            extras += self_extras(line) if "[" in line else []
        else:
            options.append(line)
    if not named:
        raise SystemExit(f"requirements.py: the flavour file names no {project['name']} line")
    return options + requirements(project, extras)


if __name__ == "__main__":
    with open(sys.argv[1], "rb") as f:
        project = tomllib.load(f)["project"]
    if len(sys.argv) > 2:
        with open(sys.argv[2]) as f:
            print("\n".join(flavour_lines(project, f.read().splitlines())))
    else:
        print("\n".join(requirements(project, [])))
