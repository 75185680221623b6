"""Print the requirements of the package's base install plus the given extras (self-references expanded).

Lets an image install its dependencies in a layer of their own, before the sources are copied, so that a
change to the code rebuilds only the small layer that installs the package itself:

    python3 requirements.py pyproject.toml trainer > requirements.txt
"""

import sys
import tomllib


def requirements(project: dict, extras: list[str]) -> list[str]:
    name = project["name"]
    out = list(project["dependencies"])
    pending, seen = list(extras), set()
    while pending:
        extra = pending.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for line in project["optional-dependencies"][extra]:
            if line.replace(" ", "").startswith(f"{name}["):
                pending += line.split("[", 1)[1].split("]", 1)[0].split(",")
            else:
                out.append(line)
    return sorted(set(out))


if __name__ == "__main__":
    with open(sys.argv[1], "rb") as f:
        project = tomllib.load(f)["project"]
    extras = [e for e in sys.argv[2:] for e in e.split(",") if e]
    print("\n".join(requirements(project, extras)))
