"""Lock the conda environment that `snakemake --use-conda` builds (linux-64, Python 3.11).

    python tools/lock_envs.py            # resolve against PyPI, rewrite the lock files below
    python tools/lock_envs.py --check    # static check only (what tests/test_envs.py runs)

One environment serves every rule (they need the same install: torch, transformers, mteb, ...):

- ``envs/pairrel.yaml``: the conda part, only Python and pip from conda-forge;
- ``envs/pairrel.linux-64.pin.txt``: that conda part pinned to exact versions (conda's
  ``--file`` spec format; Snakemake creates the env from it when present);
- ``envs/requirements.lock``: every Python package, ``name==version --hash=sha256:...``,
  resolved by pip for CPython 3.11 on x86_64 Linux from pyproject.toml's dependencies (and the
  ``test`` extra) with torch pinned as in the Makefile (``TORCH ?= torch==X``); PyPI's linux
  torch wheel is the CUDA build, so the NVIDIA runtime wheels are locked too;
- ``envs/pairrel.post-deploy.sh``: generated from the lock; Snakemake runs it inside the new env.
  It installs the locked packages (``--no-deps --require-hashes``) and then this checkout,
  editable, from Snakemake's working directory (or ``$PAIRREL_ROOT``).

Why a post-deploy script: Snakemake copies an env file into ``.snakemake/conda/`` before conda
reads it, so a relative path in its ``pip:`` section (``-e ../``) points nowhere, and a pin file
has no pip section at all. The post-deploy script runs in the working directory of the
Snakemake run, which is the checkout.

Resolution needs PyPI (``pip install --dry-run --report``, run from CPython 3.11 on x86_64
Linux, where environment markers evaluate as on the target). The conda part cannot be resolved
here (no conda channel is reachable): its pins are the Python version the lock was resolved with
and a pip release; on a machine with conda, ``snakedeploy pin-conda-env envs/pairrel.yaml``
turns it into a fully explicit (URL + checksum) pin file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENVS = ROOT / "envs"
ENV_FILE = ENVS / "pairrel.yaml"
PIN_FILE = ENVS / "pairrel.linux-64.pin.txt"
LOCK_FILE = ENVS / "requirements.lock"
POST_DEPLOY = ENVS / "pairrel.post-deploy.sh"
PIP_VERSION = "24.0"          # the conda-forge pip the env gets (any recent pip installs the lock)
TARGET = ("CPython", "3.11", "Linux", "x86_64")
COMMAND = "python tools/lock_envs.py"


def torch_pin(makefile: Path = ROOT / "Makefile") -> str:
    """The torch requirement the Makefile installs (``TORCH ?= torch==X``): the one owner of it."""
    match = re.search(r"^TORCH\s*\?=\s*(\S+)", makefile.read_text(), re.M)
    if not match:
        raise SystemExit(f"{makefile}: no 'TORCH ?= torch==X' line")
    return match.group(1)


def project_requirements(pyproject: Path = ROOT / "pyproject.toml") -> list[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    return list(project["dependencies"]) + list(project.get("optional-dependencies", {}).get("test", []))


def resolve(requirements: list[str]) -> list[dict]:
    """pip's install report for ``requirements`` from PyPI alone (no local wheels or indexes)."""
    here = (platform.python_implementation(), ".".join(platform.python_version_tuple()[:2]),
            platform.system(), platform.machine())
    if here != TARGET:
        raise SystemExit(f"resolve on {' '.join(TARGET)} (markers must evaluate as on the target); this is {here}")
    with tempfile.TemporaryDirectory() as tmp:
        reqs, report = Path(tmp) / "in.txt", Path(tmp) / "report.json"
        reqs.write_text("\n".join(requirements) + "\n")
        env = {**os.environ, "PIP_CONFIG_FILE": os.devnull, "PIP_FIND_LINKS": "", "PIP_CONSTRAINT": ""}
        subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
                        "--index-url", "https://pypi.org/simple", "--report", str(report), "-r", str(reqs)],
                       check=True, env=env)
        return json.loads(report.read_text())["install"]


def canonical_name(name: str) -> str:
    """PEP 503 normalised project name (``ir_datasets`` -> ``ir-datasets``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_lines(install: list[dict]) -> list[str]:
    """``name==version --hash=sha256:H  # file`` per package, sorted by name."""
    lines = []
    for item in sorted(install, key=lambda i: i["metadata"]["name"].lower()):
        name, version = canonical_name(item["metadata"]["name"]), item["metadata"]["version"]
        info = item["download_info"]
        sha = info.get("archive_info", {}).get("hashes", {}).get("sha256")
        if not sha:
            raise SystemExit(f"{name}: pip reported no sha256 for {info['url']}")
        lines.append(f"{name}=={version} --hash=sha256:{sha}  # {info['url'].rsplit('/', 1)[-1]}")
    return lines


def read_lock(path: Path = LOCK_FILE) -> dict[str, dict]:
    """{name: {"version", "sha256", "file", "line"}} of a lock file; SystemExit naming a bad line."""
    entries = {}
    pattern = re.compile(r"^([a-z0-9][a-z0-9._-]*)==(\S+) --hash=sha256:([0-9a-f]{64})  # (\S+)$")
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line or line.startswith("#"):
            continue
        match = pattern.match(line)
        if not match:
            raise SystemExit(f"{path}:{number}: not 'name==version --hash=sha256:H  # file': {line!r}")
        name, version, sha, file = match.groups()
        entries[name] = {"version": version, "sha256": sha, "file": file, "line": number}
    return entries


def post_deploy_script(lock_text: str) -> str:
    """The post-deploy script for a lock file's text (the pins inline, so the env hash follows them)."""
    pins = "\n".join(line for line in lock_text.splitlines() if line and not line.startswith("#"))
    return f"""#!/usr/bin/env bash
# Generated by `{COMMAND}` from envs/requirements.lock: do not edit.
# Snakemake runs this inside the new conda env (envs/pairrel.yaml), from the directory it runs
# in. It installs the locked Python packages, then this checkout (editable, so the env follows
# code changes): from $PAIRREL_ROOT, else from the current directory.
set -euo pipefail
root="${{PAIRREL_ROOT:-$PWD}}"
if ! grep -qs '^name = "pairrel"' "$root/pyproject.toml"; then
  echo "pairrel env: $root is not the pairrel checkout; run snakemake from it or set PAIRREL_ROOT" >&2
  exit 1
fi
lock="$(mktemp)"
trap 'rm -f "$lock"' EXIT
cat > "$lock" <<'LOCK'
{pins}
LOCK
python -m pip install --no-deps --require-hashes -r "$lock"
python -m pip install --no-deps -e "$root"
"""


def pin_file_text(python_version: str) -> str:
    return (f"# Generated by `{COMMAND}`: the conda part of envs/pairrel.yaml, pinned (conda --file format).\n"
            f"# Python packages: envs/requirements.lock, installed by envs/pairrel.post-deploy.sh.\n"
            f"python=={python_version}\npip=={PIP_VERSION}\n")


def write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def lock() -> None:
    install = resolve([torch_pin(), *project_requirements()])
    header = (f"# Generated by `{COMMAND}` for CPython 3.11, x86_64 Linux, from pyproject.toml "
              f"(+ test extra) and the Makefile's {torch_pin()}. Do not edit.\n")
    text = header + "\n".join(lock_lines(install)) + "\n"
    write(LOCK_FILE, text)
    write(POST_DEPLOY, post_deploy_script(text))
    POST_DEPLOY.chmod(0o755)
    write(PIN_FILE, pin_file_text(platform.python_version()))
    print(f"locked {len(install)} packages -> {LOCK_FILE.relative_to(ROOT)}", file=sys.stderr)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check the lock files (pytest tests/test_envs.py)")
    args = parser.parse_args(argv)
    if args.check:
        return subprocess.call([sys.executable, "-m", "pytest", "-q", str(ROOT / "tests" / "test_envs.py")])
    lock()
    return 0


if __name__ == "__main__":
    sys.exit(main())
