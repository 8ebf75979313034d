"""Build the spoolship image with podman, exactly from deploy/Containerfile: `make image`.

Why this script and not a bare `podman build`: on a host without registry access the
Containerfile's `FROM` image cannot be pulled, podman's defaults do not run on every host,
and pip inside the build must trust the host's certificate authorities. This does only what
that needs, and nothing system-wide:

- podman runs with deploy/podman/containers.conf (through CONTAINERS_CONF) and with its own
  storage under .tools/image/ (ignored by git; `make clean` removes it);
- the base is pulled. Only when that fails, a **stand-in** is made from Debian's packages
  (mmdebstrap; the root file system is cached under .tools/image/), tagged as the name the
  Containerfile's FROM uses and labelled `io.spoolship.stand-in`, and every build on it says so
  loudly. The stand-in runs Debian's Python 3.11 from /usr/bin, not the official image's;
- builds and runs use the host's network (`--network host`: podman's bridge would rewrite the
  host's firewall rules), and the host's CA bundle is bind-mounted read-only into RUN steps
  (it is not part of any layer).

Exit status: 0 built; 1 the Containerfile failed to build (a defect: see the log); 2 this host
cannot build images (the reason is printed). `prepare` (what `make test` runs) always exits 0
and leaves the outcome to tests/integration/test_image.py.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

__all__ = ["BuildFailed", "BuiltImage", "CannotBuildHere", "ImageError", "Podman", "base_images",
           "build", "clean", "default_tag", "ensure_base"]

ROOT = Path(__file__).resolve().parents[2]
CONTAINERFILE = ROOT / "deploy" / "Containerfile"
CONTAINERS_CONF = Path(__file__).with_name("containers.conf")
WORK = ROOT / ".tools" / "image"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
STAND_IN_LABEL = "io.spoolship.stand-in"
STAND_IN_SUITE = "bookworm"  # python:3.11-slim is Debian bookworm with Python 3.11; so is this
STAND_IN_PACKAGES = ("python3", "python3-venv", "python-is-python3", "ca-certificates")
# What Debian's own slim images leave out: documentation, manual pages, translations.
STAND_IN_EXCLUDES = ("path-exclude=/usr/share/man/*", "path-exclude=/usr/share/doc/*",
                     "path-include=/usr/share/doc/*/copyright", "path-exclude=/usr/share/locale/*",
                     "path-exclude=/usr/share/info/*")
PULL_TIMEOUT_SECONDS = 120
STAND_IN_TIMEOUT_SECONDS = 900
BUILD_TIMEOUT_SECONDS = 1800


class ImageError(Exception):
    """Base of this script's errors.

        ImageError
        ├── CannotBuildHere   the host lacks something (podman, runc, a mirror, the package index)
        └── BuildFailed       the Containerfile itself failed: a defect to fix
    """


class CannotBuildHere(ImageError):
    pass


class BuildFailed(ImageError):
    pass


@dataclass(frozen=True)
class BuiltImage:
    tag: str
    id: str
    size_bytes: int
    base_size_bytes: int
    stand_in: str | None  # what the stand-in base is, None on the real one

    @property
    def added_bytes(self) -> int:
        """What the Containerfile adds over its base: the part this project controls."""
        return self.size_bytes - self.base_size_bytes


class Podman:
    """podman with this project's containers.conf and its own storage, never the host's defaults."""

    def __init__(self, work: Path = WORK) -> None:
        self.work = work
        self.binary = shutil.which("podman")
        self.env = {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}

    def argv(self, *args: str) -> list[str]:
        run = self.work / "run"
        return [self.binary or "podman", "--root", str(self.work / "storage"), "--runroot", str(run),
                "--tmpdir", str(run / "libpod"), "--storage-driver", "overlay", *args]

    def run(self, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(self.argv(*args), env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise ImageError(f"podman {' '.join(args[:2])} failed ({result.returncode}): {result.stderr.strip()[-2000:]}")
        return result

    def why_not_usable(self) -> str | None:
        """None if podman can work here, else the reason (for a skip message)."""
        if self.binary is None:
            return "podman is not installed (make test installs it: apt-get install podman runc mmdebstrap)"
        if shutil.which("runc") is None:
            return "runc is not installed (apt-get install runc); deploy/podman/containers.conf selects it"
        self.work.mkdir(parents=True, exist_ok=True)
        try:
            info = self.run("info", "--format", "{{.Store.GraphDriverName}}", timeout=120, check=False)
        except subprocess.TimeoutExpired:
            return "podman info did not answer within 120 s"
        if info.returncode != 0:
            return f"podman cannot run here: {info.stderr.strip()[-500:]}"
        return None

    def inspect(self, ref: str) -> dict | None:
        result = self.run("image", "inspect", ref, check=False)
        return json.loads(result.stdout)[0] if result.returncode == 0 else None


def normalize(ref: str) -> str:
    """The fully qualified name podman resolves a Docker Hub short name to (`python:3.11-slim`)."""
    first = ref.split("/", 1)[0]
    if "/" in ref and ("." in first or ":" in first or first == "localhost"):
        return ref
    return f"docker.io/{ref}" if "/" in ref else f"docker.io/library/{ref}"


def base_images(containerfile: Path = CONTAINERFILE) -> list[str]:
    """Every image a FROM names that is not an earlier stage, fully qualified, in order."""
    stages: set[str] = set()
    bases: list[str] = []
    for image, stage in re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", containerfile.read_text(), flags=re.M | re.I):
        if image not in stages and normalize(image) not in bases:
            bases.append(normalize(image))
        if stage:
            stages.add(stage)
    return bases


def default_tag() -> str:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    return f"spoolship:{version}"


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def ensure_base(podman: Podman, ref: str, *, allow_pull: bool = True) -> str | None:
    """Make `ref` available: pulled if possible, else the stand-in. Returns what the stand-in is, or None."""
    why_no_pull = "pulling was not asked for (--base stand-in)"
    if allow_pull:
        try:
            pulled = podman.run("pull", "--quiet", ref, timeout=PULL_TIMEOUT_SECONDS, check=False)
            why_no_pull = (pulled.stderr.strip().splitlines() or ["no reason given"])[-1]
        except subprocess.TimeoutExpired:
            pulled, why_no_pull = None, f"no answer within {PULL_TIMEOUT_SECONDS} s"
        if pulled is not None and pulled.returncode == 0:
            return None
    image = podman.inspect(ref)
    stand_in = ((image or {}).get("Labels") or {}).get(STAND_IN_LABEL)
    if image is not None and not stand_in:
        return None  # the real image, loaded earlier (podman load) or pulled before
    if image is None:
        stand_in = make_stand_in(podman, ref)
    say("\n".join([
        "*" * 100,
        f"*** STAND-IN BASE IMAGE: {ref} could not be pulled ({why_no_pull}).",
        f"*** Building on {stand_in}, tagged {ref} and labelled {STAND_IN_LABEL}.",
        "*** It is NOT the official image (Debian's Python in /usr/bin). Push nothing built on it.",
        "*" * 100,
    ]))
    return stand_in


def make_stand_in(podman: Podman, ref: str) -> str:
    """A root file system from Debian's packages (cached), imported as `ref`."""
    description = f"debian-{STAND_IN_SUITE}-{'+'.join(STAND_IN_PACKAGES)}"
    tar = podman.work / f"stand-in-{STAND_IN_SUITE}.tar"
    if not tar.exists():
        if shutil.which("mmdebstrap") is None:
            raise CannotBuildHere(f"{ref} cannot be pulled and mmdebstrap (to make a stand-in) is not installed")
        say(f"making the stand-in base with mmdebstrap ({STAND_IN_SUITE}, ~1 min), cached at {tar}")
        partial = tar.with_suffix(".partial.tar")
        cmd = ["mmdebstrap", "--quiet", "--format=tar", "--variant=minbase", f"--include={','.join(STAND_IN_PACKAGES)}",
               *(f"--dpkgopt={opt}" for opt in STAND_IN_EXCLUDES), STAND_IN_SUITE, str(partial)]
        try:
            made = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                  timeout=STAND_IN_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired as timeout:
            partial.unlink(missing_ok=True)
            raise CannotBuildHere(f"mmdebstrap did not finish within {STAND_IN_TIMEOUT_SECONDS} s") from timeout
        if made.returncode != 0:
            partial.unlink(missing_ok=True)
            raise CannotBuildHere(f"mmdebstrap could not make a stand-in base: {made.stderr.strip()[-800:]}")
        partial.rename(tar)
    podman.run("import", "--change", f"LABEL {STAND_IN_LABEL}={description}", str(tar), ref, timeout=600)
    return description


def build(podman: Podman, tag: str | None = None, *, extras: str = "", allow_pull: bool = True,
          log: Path | None = None) -> BuiltImage:
    """Build deploy/Containerfile as `tag`; the full build log goes to `log`."""
    why = podman.why_not_usable()
    if why:
        raise CannotBuildHere(why)
    tag = tag or default_tag() + (f"-{extras}" if extras else "")
    stand_ins = [s for s in (ensure_base(podman, ref, allow_pull=allow_pull) for ref in base_images()) if s]
    log = log or podman.work / "build.log"
    mounts = ["-v", f"{CA_BUNDLE}:{CA_BUNDLE}:ro"] if CA_BUNDLE.exists() else []
    cmd = ["build", "--pull=never", "--network", "host", *mounts, "--build-arg", f"EXTRAS={extras}",
           "-f", str(CONTAINERFILE), "-t", tag, str(ROOT)]
    with log.open("w") as out:
        built = subprocess.run(podman.argv(*cmd), env=podman.env, stdout=out, stderr=subprocess.STDOUT,
                               timeout=BUILD_TIMEOUT_SECONDS)
    if built.returncode != 0:
        tail = "".join(log.read_text().splitlines(keepends=True)[-40:])
        if not package_index_reachable():
            raise CannotBuildHere(f"the build failed and the package index cannot be reached from here:\n{tail}")
        raise BuildFailed(f"podman build failed ({built.returncode}); full log {log}:\n{tail}")
    image = podman.inspect(tag)
    base = podman.inspect(base_images()[-1])
    result = BuiltImage(tag=tag, id=image["Id"], size_bytes=image["Size"], base_size_bytes=base["Size"],
                        stand_in=" + ".join(stand_ins) or None)
    say(f"built {tag} ({result.id[:12]}): {result.size_bytes / 1e6:.0f} MB, "
        f"{result.added_bytes / 1e6:.0f} MB over the base" + (f"  [STAND-IN BASE: {result.stand_in}]" if stand_ins else ""))
    return result


def package_index_reachable() -> bool:
    """Whether pip on this host reaches the package index (told apart from a broken Containerfile)."""
    # --isolated: the index the build's pip uses, not this host's configured mirrors or wheel folders.
    cert = ["--cert", str(CA_BUNDLE)] if CA_BUNDLE.exists() else []
    probe = subprocess.run([sys.executable, "-m", "pip", "--isolated", "download", *cert, "--no-deps",
                            "--no-cache-dir", "--quiet", "--dest", str(WORK / "probe"), "--only-binary=:all:",
                            "six==1.17.0"], capture_output=True, text=True, timeout=300)
    shutil.rmtree(WORK / "probe", ignore_errors=True)
    return probe.returncode == 0


def clean(podman: Podman) -> None:
    """Remove every container, image and volume of this storage (unmounting them), then .tools/image/."""
    if podman.binary and (podman.work / "storage").exists():
        podman.run("system", "reset", "--force", timeout=600)
    shutil.rmtree(podman.work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["build", "prepare", "clean"],
                        help="prepare: as build, never fails (make test); clean: remove podman's storage and the cache")
    parser.add_argument("--tag", help=f"default: {default_tag()} (+ -EXTRAS)")
    parser.add_argument("--extras", default="", help="pyproject extras, e.g. local (moto) for the dev overlay")
    parser.add_argument("--base", choices=["auto", "stand-in"], default="auto",
                        help="auto: pull the FROM image, the stand-in only if that fails")
    args = parser.parse_args(argv)
    if args.command == "clean":
        clean(Podman())
        return 0
    try:
        build(Podman(), args.tag, extras=args.extras, allow_pull=args.base == "auto")
    except CannotBuildHere as error:
        say(f"cannot build the image on this host: {error}")
        return 0 if args.command == "prepare" else 2
    except ImageError as error:
        say(str(error))
        return 0 if args.command == "prepare" else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
