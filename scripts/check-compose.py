#!/usr/bin/env python3
"""Checks docker-compose.yml beyond `docker-compose config` (which only checks its shape).

Run as `python3 scripts/check-compose.py` from anywhere (.ci/run does, with no Docker
engine). It needs only PyYAML, which Debian's docker-compose package depends on
(python3-yaml). Exits 1 listing every problem:

- every environment variable a service of ours sets (one built from ./Dockerfile or using
  its image) is one the binaries read: a clap `env = "SUBSIDY_..."` attribute or an
  `env::var("...")` in src/ or devtools/src/. A misspelt or foreign name (`RUST_LOG`: we
  read SUBSIDY_LOG) would otherwise be ignored silently by the container;
- every file or folder a service mounts from the repository exists, and each file there
  parses by its kind (.yml/.yaml, .json, .xml), folders recursively: Grafana's
  provisioning and dashboards, Prometheus' configuration, ClickHouse's profile settings;
- every build context and Dockerfile exists.

The names are read from the source rather than from `--help`, so the check runs before
anything is built.
"""

import json
import pathlib
import re
import sys
import xml.etree.ElementTree as ElementTree

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
SOURCES = [ROOT / "src", ROOT / "devtools" / "src"]

# `env = "NAME"` (clap), `env::var("NAME")`, `var_os("NAME")`, `EnvFilter::try_from_env("NAME")`.
ENV_READ = re.compile(r'(?:\benv\s*=\s*|\benv::var\(\s*|\bvar_os\(\s*|from_env\(\s*)"([A-Z][A-Z0-9_]*)"')


def variables_read() -> set:
    """Every environment variable name the service's and the dev tools' source reads."""
    names = set()
    for folder in SOURCES:
        for path in folder.rglob("*.rs"):
            names.update(ENV_READ.findall(path.read_text(encoding="utf-8")))
    return names


def ours(service: dict, our_images: set) -> bool:
    """True if and only if the service runs our image (built here or the image built here)."""
    return "build" in service or service.get("image") in our_images


def environment(service: dict) -> list:
    """The names a service sets, from either form compose accepts (mapping or list)."""
    env = service.get("environment") or {}
    if isinstance(env, dict):
        return list(env)
    return [entry.split("=", 1)[0] for entry in env]


def parse_file(path: pathlib.Path) -> None:
    """Parses one mounted file by its kind; raises on a file that does not parse."""
    suffix = path.suffix.lower()
    if suffix in (".yml", ".yaml"):
        with path.open(encoding="utf-8") as handle:
            list(yaml.safe_load_all(handle))
    elif suffix == ".json":
        with path.open(encoding="utf-8") as handle:
            json.load(handle)
    elif suffix == ".xml":
        ElementTree.parse(path)
    else:
        path.read_bytes()


def mounts(service: dict) -> list:
    """The repository paths (./…) a service mounts, short or long volume syntax."""
    sources = []
    for volume in service.get("volumes") or []:
        source = volume.get("source", "") if isinstance(volume, dict) else volume.split(":", 1)[0]
        if source.startswith("./") or source.startswith("../"):
            sources.append(source)
    return sources


def main() -> int:
    compose = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    services = compose.get("services") or {}
    problems = []
    read = variables_read()
    if not read:
        problems.append(f"no environment variable found in {', '.join(map(str, SOURCES))}")
    our_images = {s["image"] for s in services.values() if "build" in s and "image" in s}

    checked_files = 0
    for name, service in services.items():
        if ours(service, our_images):
            for variable in environment(service):
                if variable not in read:
                    problems.append(
                        f"service {name} sets {variable}, which neither subsidy-ingester nor "
                        "subsidy-dev reads"
                    )
        build = service.get("build")
        if build is not None:
            context = ROOT / (build if isinstance(build, str) else build.get("context", "."))
            dockerfile = context / ("Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile"))
            if not dockerfile.is_file():
                problems.append(f"service {name} builds from {dockerfile}, which does not exist")
        for source in mounts(service):
            path = (ROOT / source).resolve()
            if not path.exists():
                problems.append(f"service {name} mounts {source}, which does not exist")
                continue
            files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
            if not files:
                problems.append(f"service {name} mounts {source}, an empty folder")
            for file in files:
                try:
                    parse_file(file)
                    checked_files += 1
                except (OSError, ValueError, yaml.YAMLError, ElementTree.ParseError) as error:
                    problems.append(f"service {name} mounts {file.relative_to(ROOT)}: {error}")

    for problem in problems:
        print(f"docker-compose.yml: {problem}", file=sys.stderr)
    if problems:
        return 1
    print(
        f"docker-compose.yml: {len(services)} services; every variable our services set is read "
        f"by the binaries; {checked_files} mounted file(s) present and parsed"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
