"""The conda env and its lock files, checked statically (no conda here; see tools/lock_envs.py).

- one env file, with no path in it (Snakemake copies env files before conda reads them);
- the conda pins agree with the env file and with the Python the lock was resolved with;
- every locked package is a wheel (or sdist) of that exact version that installs on CPython 3.11
  x86_64 Linux (its file name's tags), with a sha256;
- every pyproject.toml requirement is locked at a version inside its range; torch as the Makefile;
- the post-deploy script is the one generated from the lock.
"""

import importlib.util
import sys

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.tags import compatible_tags, cpython_tags
from packaging.utils import canonicalize_name, parse_sdist_filename, parse_wheel_filename

from tests.conftest import REPO_ROOT

spec = importlib.util.spec_from_file_location("lock_envs", REPO_ROOT / "tools" / "lock_envs.py")
lock_envs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(lock_envs)

PLATFORMS = [f"manylinux_2_{v}_x86_64" for v in range(28, 4, -1)] + [
    "manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64", "linux_x86_64"]
TARGET_TAGS = set(cpython_tags((3, 11), platforms=PLATFORMS)) | set(compatible_tags((3, 11), "cp311", PLATFORMS))


@pytest.fixture(scope="module")
def locked():
    return lock_envs.read_lock()


def test_one_env_file_without_paths():
    assert sorted(p.name for p in lock_envs.ENVS.glob("*.yaml")) == ["pairrel.yaml"]
    env = yaml.safe_load(lock_envs.ENV_FILE.read_text())
    assert env["channels"] == ["conda-forge", "nodefaults"]
    assert env["dependencies"] == ["python=3.11", "pip"]  # no pip: section, so no relative path


def test_conda_pins_match_the_env_file_and_the_lock():
    pins = [line for line in lock_envs.PIN_FILE.read_text().splitlines() if line and not line.startswith("#")]
    assert [p.split("==")[0] for p in pins] == ["python", "pip"]
    python = pins[0].split("==")[1]
    assert python.startswith("3.11.")
    assert "CPython 3.11" in lock_envs.LOCK_FILE.read_text().splitlines()[0]


def test_every_locked_file_installs_on_linux_x86_64_cpython311(locked):
    assert len(locked) > 50
    for name, entry in locked.items():
        file = entry["file"]
        if file.endswith(".whl"):
            wheel_name, version, _, tags = parse_wheel_filename(file)
            assert tags & TARGET_TAGS, f"requirements.lock:{entry['line']}: {file} does not install on linux-64 cp311"
        else:
            wheel_name, version = parse_sdist_filename(file)
        assert canonicalize_name(wheel_name) == canonicalize_name(name), f"line {entry['line']}"
        assert str(version) == entry["version"], f"requirements.lock:{entry['line']}: {file} is not {entry['version']}"


def test_pins_agree_with_pyproject_and_the_makefile(locked):
    for text in [lock_envs.torch_pin(), *lock_envs.project_requirements()]:
        req = Requirement(text)
        name = canonicalize_name(req.name)
        assert name in locked, f"{text}: not in envs/requirements.lock"
        assert req.specifier.contains(locked[name]["version"], prereleases=True), \
            f"{text}: locked {locked[name]['version']} (requirements.lock line {locked[name]['line']})"
    assert lock_envs.torch_pin() == f"torch=={locked['torch']['version']}"
    assert any(n.startswith("nvidia-") for n in locked), "PyPI's linux torch is the CUDA build: its runtime is locked"


def test_post_deploy_script_is_generated_from_the_lock():
    expected = lock_envs.post_deploy_script(lock_envs.LOCK_FILE.read_text())
    assert lock_envs.POST_DEPLOY.read_text() == expected, "run: python tools/lock_envs.py"
    assert "-e ../" not in expected and "--require-hashes" in expected


def test_read_lock_names_a_bad_line(tmp_path):
    bad = tmp_path / "bad.lock"
    bad.write_text("# header\ntorch>=2\n")
    with pytest.raises(SystemExit, match=r"bad.lock:2: not 'name==version"):
        lock_envs.read_lock(bad)


def test_post_deploy_refuses_a_directory_that_is_not_the_checkout(tmp_path):
    import subprocess

    proc = subprocess.run(["bash", str(lock_envs.POST_DEPLOY)], cwd=tmp_path, capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin"})
    assert proc.returncode == 1
    assert f"{tmp_path} is not the pairrel checkout" in proc.stderr
