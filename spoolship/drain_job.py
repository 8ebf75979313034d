"""The drain Job: the StatefulSet's tailer container on one scaled-down spool claim, until the spool is empty.

Built from the StatefulSet as the API returns it, so a drain runs exactly what the ingest pods run (image,
args, resources, security context, ServiceAccount), plus the tail mode that exits 0 once the spool is empty.
Three things make it safe to leave running unattended:

- **No dependency on objects a GitOps prune can delete.** The tailer's ``envFrom``/``configMapKeyRef``
  values are copied into the Job as plain ``env`` (the ConfigMap is hash-named: the next rollout's prune
  deletes the old one, and a drain pod waiting for it would sit in CreateContainerConfigError forever).
- **The image judges its own command line.** ``spoolship tail`` exits 2 only for a usage error (an option or
  setting it refuses); a ``podFailurePolicy`` turns that into an immediate, permanent Job failure instead of
  a crash loop, and ``spoolship.rescue`` keeps such a Job (its alert fires) until the template changes.
  Evictions and node drains (``DisruptionTarget``) do not count against ``backoffLimit``.
- **One pod at a time.** ``podReplacementPolicy: Failed``: a replacement pod starts only after the old one
  has terminated, so two tailers never share the claim.

The Job's name is fixed per claim (``<statefulset>-drain-<ordinal>``): the API server refuses a second Job
of that name, so overlapping rescue passes cannot start two drains of one claim. The pod template's hash
(``TEMPLATE_HASH_ANNOTATION``) tells the rescue when a running or refused drain is out of date.

Thread-safety: pure functions over their arguments.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Mapping, Sequence

__all__ = [
    "CLAIM_LABEL",
    "COMPONENT",
    "DEFAULT_BACKOFF_LIMIT",
    "DEFAULT_TAIL_ARGS",
    "GENERATION_ANNOTATION",
    "TEMPLATE_HASH_ANNOTATION",
    "USAGE_ERROR_EXIT_CODE",
    "DrainJobError",
    "configmaps_referenced",
    "drain_job",
    "drain_job_name",
    "template_hash",
]

CLAIM_LABEL = "spoolship.io/drain-claim"
GENERATION_ANNOTATION = "spoolship.io/statefulset-generation"
TEMPLATE_HASH_ANNOTATION = "spoolship.io/drain-template-hash"
COMPONENT = "drain"
# The tailer mode that ships until the spool is empty, then exits 0 (not `replay`: it ignores the checkpoint).
DEFAULT_TAIL_ARGS = ("--exit-when-empty",)
DEFAULT_BACKOFF_LIMIT = 10
# click's exit code for a usage error: `spoolship tail` uses it for nothing else (docs/tailer.md).
USAGE_ERROR_EXIT_CODE = 2
# Copied from the StatefulSet's pod template into a drain pod: who it runs as and where it may run.
POD_FIELDS = ("serviceAccountName", "automountServiceAccountToken", "securityContext", "nodeSelector",
              "tolerations", "priorityClassName", "imagePullSecrets", "terminationGracePeriodSeconds",
              "dnsPolicy", "dnsConfig", "runtimeClassName")
# Kubernetes skips envFrom keys that are not valid variable names (and records an event): so do we.
ENV_NAME = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")


class DrainJobError(Exception):
    """The StatefulSet does not look like one whose claims this can drain (no such container or claim,
    or a ConfigMap its tailer needs is missing)."""


def drain_job_name(statefulset: str, ordinal: int) -> str:
    return f"{statefulset}-drain-{ordinal}"


def configmaps_referenced(statefulset: dict, container: str) -> list[str]:
    """Names of the ConfigMaps the tailer container reads its environment from (to fetch before planning)."""
    names = []
    for c in _containers(statefulset, container):
        for source in c.get("envFrom", []) or []:
            if source.get("configMapRef"):
                names.append(source["configMapRef"]["name"])
        for item in c.get("env", []) or []:
            ref = (item.get("valueFrom") or {}).get("configMapKeyRef")
            if ref:
                names.append(ref["name"])
    return sorted(set(names))


def drain_job(statefulset: dict, claim: str, ordinal: int, *, claim_template: str, container: str,
              configmaps: Mapping[str, dict] | None = None, tail_args: Sequence[str] = DEFAULT_TAIL_ARGS,
              backoff_limit: int = DEFAULT_BACKOFF_LIMIT) -> dict:
    """A Job that runs the StatefulSet's tailer container on one claim until its spool is empty.

    ``configmaps``: name -> ConfigMap object, for every name ``configmaps_referenced`` returns that exists.
    """
    name = statefulset["metadata"]["name"]
    template = statefulset["spec"]["template"]
    pod = template["spec"]
    found = _containers(statefulset, container)
    if not found:
        raise DrainJobError(f"statefulset {name} has no container {container!r}")
    tailer = copy.deepcopy(found[0])
    tailer["args"] = list(tailer.get("args", [])) + [a for a in tail_args if a not in tailer.get("args", [])]
    _inline_configmap_env(tailer, configmaps or {})
    mounted = {m["name"] for m in tailer.get("volumeMounts", [])}
    if claim_template not in mounted:
        raise DrainJobError(f"container {container!r} does not mount the claim template {claim_template!r}")
    volumes = [copy.deepcopy(v) for v in pod.get("volumes", []) if v["name"] in mounted and v["name"] != claim_template]
    volumes.append({"name": claim_template, "persistentVolumeClaim": {"claimName": claim}})
    spec = {key: copy.deepcopy(pod[key]) for key in POD_FIELDS if key in pod}
    spec.update(containers=[tailer], volumes=volumes, restartPolicy="Never")
    labels = {key: value for key, value in template.get("metadata", {}).get("labels", {}).items()
              if key in ("app.kubernetes.io/name", "app.kubernetes.io/part-of")}
    labels.update({"app.kubernetes.io/component": COMPONENT, CLAIM_LABEL: claim})
    pod_metadata = {"labels": dict(labels)}
    if template.get("metadata", {}).get("annotations"):
        pod_metadata["annotations"] = copy.deepcopy(template["metadata"]["annotations"])
    job_spec = {
        "backoffLimit": backoff_limit,
        "podReplacementPolicy": "Failed",
        "podFailurePolicy": {"rules": [
            {"action": "FailJob", "onExitCodes": {"containerName": tailer["name"], "operator": "In",
                                                  "values": [USAGE_ERROR_EXIT_CODE]}},
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
        ]},
        "template": {"metadata": pod_metadata, "spec": spec},
    }
    annotations = {GENERATION_ANNOTATION: str(int(statefulset["metadata"].get("generation", 0))),
                   TEMPLATE_HASH_ANNOTATION: template_hash(job_spec)}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": drain_job_name(name, ordinal), "labels": labels, "annotations": annotations},
        "spec": job_spec,
    }


def template_hash(job_spec: dict) -> str:
    """A digest of what a drain runs: equal for equal specs, whatever the StatefulSet's generation."""
    return hashlib.sha256(json.dumps(job_spec, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def _containers(statefulset: dict, container: str) -> list[dict]:
    return [c for c in statefulset["spec"]["template"]["spec"].get("containers", []) if c["name"] == container]


def _inline_configmap_env(c: dict, configmaps: Mapping[str, dict]) -> None:
    """Replace envFrom configMapRef and env configMapKeyRef by literal values, as the kubelet would set them."""
    inlined: dict[str, str] = {}
    kept_sources = []
    for source in c.pop("envFrom", []) or []:
        ref = source.get("configMapRef")
        if not ref:
            kept_sources.append(source)  # a secretRef stays a reference: the rescue cannot read Secrets
            continue
        data = _configmap_data(configmaps, ref["name"], bool(ref.get("optional")))
        prefix = source.get("prefix", "")
        for key, value in (data or {}).items():
            if ENV_NAME.fullmatch(prefix + key):
                inlined[prefix + key] = value
    env = []
    for item in c.pop("env", []) or []:
        ref = (item.get("valueFrom") or {}).get("configMapKeyRef")
        if ref:
            data = _configmap_data(configmaps, ref["name"], bool(ref.get("optional")))
            if data is None or ref["key"] not in data:
                if not ref.get("optional"):
                    raise DrainJobError(f"configmap {ref['name']} has no key {ref['key']!r}")
                continue
            item = {"name": item["name"], "value": data[ref["key"]]}
        inlined.pop(item["name"], None)  # env wins over envFrom, as in Kubernetes
        env.append(item)
    c["env"] = [{"name": key, "value": value} for key, value in sorted(inlined.items())] + env
    if kept_sources:
        c["envFrom"] = kept_sources


def _configmap_data(configmaps: Mapping[str, dict], name: str, optional: bool) -> dict | None:
    if name not in configmaps:
        if optional:
            return None
        raise DrainJobError(f"configmap {name} (the tailer's environment) does not exist")
    return dict(configmaps[name].get("data") or {})
