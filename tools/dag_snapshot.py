"""The planned DAG of a config as text that two checkouts can compare (tests/test_dag_snapshot.py).

A dry run (`snakemake -n -p`) in a scratch copy of the workflow files, so that nothing under
the checkout's results/ changes what is planned; each job becomes one block (rule, inputs,
outputs, log, benchmark, wildcards, threads, resources, shell command), the blocks sorted.
Job ids, reasons and dates are left out: they differ between two runs of the same plan.

    python tools/dag_snapshot.py            # rewrite tests/data/dag/*.txt from this checkout
    python tools/dag_snapshot.py --check    # exit 1 when this checkout plans another DAG
"""

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
WORKFLOW_FILES = ["Snakefile", "config.yaml", "presets", "workflow", "profiles", "envs"]
SNAPSHOT_DIR = REPO_ROOT / "tests" / "data" / "dag"
# snapshot name -> extra snakemake arguments
CONFIGS = {"config": [], "quickstart": ["--configfile", "presets/quickstart.yaml"]}
KEPT = ("input:", "output:", "log:", "benchmark:", "wildcards:", "threads:", "resources:")


def dry_run(extra: list[str]) -> str:
    snakemake = str(Path(sys.executable).with_name("snakemake"))
    with tempfile.TemporaryDirectory() as tmp:
        for name in WORKFLOW_FILES:
            src = REPO_ROOT / name
            (shutil.copytree if src.is_dir() else shutil.copy)(src, Path(tmp) / name)
        proc = subprocess.run([snakemake, "-n", "-p", "--forceall", *extra], cwd=tmp,
                              capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise SystemExit(f"snakemake -n {' '.join(extra)} failed:\n{proc.stderr[-3000:]}")
    return proc.stdout + proc.stderr


def jobs(output: str) -> list[str]:
    """One normalised block per planned job, sorted."""
    blocks, current = [], None
    for line in output.splitlines():
        if line.startswith(("rule ", "localrule ")):
            current = [line.split()[-1]]
            blocks.append(current)
        elif current is None:
            continue
        elif line.strip().startswith(KEPT):
            field = line.strip()
            if field.startswith("resources:"):  # the machine's temp folder is not the plan's
                field = ", ".join(r for r in field.split(", ") if not r.startswith(("resources: tmpdir=", "tmpdir=")))
                field = field if field.startswith("resources:") else "resources: " + field
                if field.strip() == "resources:":
                    continue
            current.append("    " + field)
        elif line.startswith("Shell command:"):
            current.append("    " + line)
        elif not line.strip():
            current = None
    return sorted("\n".join(b) for b in blocks)


def snapshot(extra: list[str]) -> str:
    return "\n\n".join(jobs(dry_run(extra))) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the stored snapshots instead of writing them")
    args = parser.parse_args()
    SNAPSHOT_DIR.mkdir(parents=True, exist_ok=True)
    differs = []
    for name, extra in CONFIGS.items():
        path = SNAPSHOT_DIR / f"{name}.txt"
        text = snapshot(extra)
        if args.check:
            if not path.exists() or path.read_text() != text:
                differs.append(str(path))
        else:
            tmp = path.with_suffix(".tmp")
            tmp.write_text(text)
            tmp.replace(path)
    for path in differs:
        print(f"{path}: this checkout plans another DAG", file=sys.stderr)
    return 1 if differs else 0


if __name__ == "__main__":
    sys.exit(main())
