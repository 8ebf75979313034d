"""Plan the scale-down rescue: which spool claims a StatefulSet left behind, and which drain Jobs to run.

A StatefulSet scaled from N to M pods keeps the claims of ordinals M..N-1 (``whenScaled: Retain``), and
whatever their tailers could not ship before the grace period ended stays on them. The rescue runs, for
each such claim, a *drain Job*: the StatefulSet's own tailer container, mounting that claim, in a mode
that exits 0 once the spool is empty and checkpointed. This module only decides; ``spoolship.kube``
talks to the API and ``spoolship rescue`` joins the two. Everything here is a pure function of the
objects as the API returns them (dicts), so every case is a unit test on fixture JSON.

Rules, per claim ``<template>-<statefulset>-<ordinal>``:

- ordinal served (``start <= ordinal < start + replicas``): the StatefulSet owns it. Any drain Job for it
  is deleted (the ordinal came back: the tailer drains on SIGTERM and the new pod attaches).
- claim being deleted: left alone.
- a drain Job for it is still running (any generation): wait for it. At most one drain per claim.
- a pod still mounts it (a scaled-down pod in its grace period, a drain pod still terminating): wait.
- a drain Job that succeeded at the StatefulSet's current ``metadata.generation``: drained, nothing to
  do. The generation changes with every change of ``spec.replicas``, so an ordinal that came back and
  left again (between two runs) is drained again; on an empty spool that takes seconds.
- a finished drain Job of another generation, or a failed one: deleted; a new one is started once no
  Job for the claim is left.
- otherwise: start a drain Job named ``<statefulset>-drain-<ordinal>-g<generation>``.

Thread-safety: pure functions over their arguments.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

__all__ = [
    "CLAIM_LABEL",
    "COMPONENT",
    "DEFAULT_BACKOFF_LIMIT",
    "DEFAULT_TAIL_ARGS",
    "GENERATION_ANNOTATION",
    "RescueError",
    "RescuePlan",
    "drain_job",
    "drain_job_name",
    "plan_rescue",
]

CLAIM_LABEL = "spoolship.io/drain-claim"
GENERATION_ANNOTATION = "spoolship.io/statefulset-generation"
COMPONENT = "drain"
# The tailer mode that ships until the spool is empty, then exits 0 (not `replay`: it ignores the checkpoint).
DEFAULT_TAIL_ARGS = ("--exit-when-empty",)
DEFAULT_BACKOFF_LIMIT = 10
# Copied from the StatefulSet's pod template into a drain pod: who it runs as and where it may run.
POD_FIELDS = ("serviceAccountName", "automountServiceAccountToken", "securityContext", "nodeSelector",
              "tolerations", "priorityClassName", "imagePullSecrets", "terminationGracePeriodSeconds",
              "dnsPolicy", "dnsConfig", "runtimeClassName")


class RescueError(Exception):
    """The StatefulSet does not look like one whose claims this can drain (no such container or claim)."""


@dataclass(frozen=True)
class RescuePlan:
    """What one pass decided: Jobs to create (manifests), Jobs to delete (names), each claim's state."""

    create: tuple[dict, ...] = ()
    delete: tuple[str, ...] = ()
    claims: dict[str, str] = field(default_factory=dict)


def drain_job_name(statefulset: str, ordinal: int, generation: int) -> str:
    return f"{statefulset}-drain-{ordinal}-g{generation}"


def plan_rescue(statefulset: dict, claims: Iterable[dict], pods: Iterable[dict], jobs: Iterable[dict], *,
                claim_template: str, container: str, tail_args: Sequence[str] = DEFAULT_TAIL_ARGS,
                backoff_limit: int = DEFAULT_BACKOFF_LIMIT) -> RescuePlan:
    """Decide one pass of the rescue from the API's objects (see the module docstring for the rules)."""
    name = statefulset["metadata"]["name"]
    generation = int(statefulset["metadata"].get("generation", 0))
    served = _served_ordinals(statefulset["spec"])
    pattern = re.compile(rf"{re.escape(claim_template)}-{re.escape(name)}-(0|[1-9][0-9]*)")
    users = _claim_users(pods)
    drains: dict[str, list[dict]] = {}
    for job in jobs:
        claim = job["metadata"].get("labels", {}).get(CLAIM_LABEL)
        if claim is not None:
            drains.setdefault(claim, []).append(job)
    create, delete, states = [], [], {}
    for claim in claims:
        claim_name = claim["metadata"]["name"]
        match = pattern.fullmatch(claim_name)
        if match is None:
            continue
        ordinal = int(match.group(1))
        claim_jobs = drains.pop(claim_name, [])
        state, to_delete, start = _decide(ordinal in served, claim, claim_jobs, users.get(claim_name, ()),
                                          generation)
        states[claim_name] = state
        delete.extend(to_delete)
        if start:
            create.append(drain_job(statefulset, claim_name, ordinal, claim_template=claim_template,
                                    container=container, tail_args=tail_args, backoff_limit=backoff_limit))
    for leftover in drains.values():  # drain Jobs whose claim is gone
        delete.extend(j["metadata"]["name"] for j in leftover if not _deleting(j))
    return RescuePlan(create=tuple(create), delete=tuple(delete), claims=states)


def _decide(served: bool, claim: dict, jobs: list[dict], users: Sequence[str],
            generation: int) -> tuple[str, list[str], bool]:
    """One claim: (state, Jobs to delete, whether to start a drain Job)."""
    alive = [j for j in jobs if not _deleting(j)]
    if served:
        return ("served", [j["metadata"]["name"] for j in alive], False)
    if _deleting(claim):
        return ("claim-deleting", [], False)
    if any(_job_state(j) == "running" for j in alive):
        return ("draining", [], False)
    current = [j for j in alive if _job_generation(j) == generation]
    if any(_job_state(j) == "succeeded" for j in current):
        stale = [j["metadata"]["name"] for j in alive if _job_generation(j) != generation]
        return ("drained", stale, False)
    to_delete = [j["metadata"]["name"] for j in alive]  # finished: failed, or of another generation
    if to_delete or len(alive) < len(jobs):
        return ("waiting-for-old-job", to_delete, False)
    if users:
        return ("in-use", [], False)
    return ("drain-started", [], True)


def drain_job(statefulset: dict, claim: str, ordinal: int, *, claim_template: str, container: str,
              tail_args: Sequence[str] = DEFAULT_TAIL_ARGS, backoff_limit: int = DEFAULT_BACKOFF_LIMIT) -> dict:
    """A Job that runs the StatefulSet's tailer container on one claim until its spool is empty."""
    name = statefulset["metadata"]["name"]
    generation = int(statefulset["metadata"].get("generation", 0))
    template = statefulset["spec"]["template"]
    pod = template["spec"]
    found = [c for c in pod.get("containers", []) if c["name"] == container]
    if not found:
        raise RescueError(f"statefulset {name} has no container {container!r}")
    tailer = copy.deepcopy(found[0])
    tailer["args"] = list(tailer.get("args", [])) + [a for a in tail_args if a not in tailer.get("args", [])]
    mounted = {m["name"] for m in tailer.get("volumeMounts", [])}
    if claim_template not in mounted:
        raise RescueError(f"container {container!r} does not mount the claim template {claim_template!r}")
    volumes = [copy.deepcopy(v) for v in pod.get("volumes", []) if v["name"] in mounted and v["name"] != claim_template]
    volumes.append({"name": claim_template, "persistentVolumeClaim": {"claimName": claim}})
    spec = {key: copy.deepcopy(pod[key]) for key in POD_FIELDS if key in pod}
    spec.update(containers=[tailer], volumes=volumes, restartPolicy="OnFailure")
    labels = {key: value for key, value in template.get("metadata", {}).get("labels", {}).items()
              if key in ("app.kubernetes.io/name", "app.kubernetes.io/part-of")}
    labels.update({"app.kubernetes.io/component": COMPONENT, CLAIM_LABEL: claim})
    annotations = {GENERATION_ANNOTATION: str(generation)}
    pod_metadata = {"labels": dict(labels)}
    if template.get("metadata", {}).get("annotations"):
        pod_metadata["annotations"] = copy.deepcopy(template["metadata"]["annotations"])
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": drain_job_name(name, ordinal, generation), "labels": labels,
                     "annotations": annotations},
        "spec": {"backoffLimit": backoff_limit, "template": {"metadata": pod_metadata, "spec": spec}},
    }


def _served_ordinals(spec: dict) -> range:
    start = int((spec.get("ordinals") or {}).get("start", 0))
    replicas = spec.get("replicas")
    return range(start, start + int(1 if replicas is None else replicas))  # the API's default is 1


def _claim_users(pods: Iterable[dict]) -> dict[str, list[str]]:
    """claim name -> pods that still mount it (any pod not finished, terminating ones included)."""
    users: dict[str, list[str]] = {}
    for pod in pods:
        if pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
            continue
        for volume in pod.get("spec", {}).get("volumes", []):
            claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
            if claim:
                users.setdefault(claim, []).append(pod["metadata"]["name"])
    return users


def _deleting(obj: dict) -> bool:
    return bool(obj["metadata"].get("deletionTimestamp"))


def _job_generation(job: dict) -> int | None:
    value = job["metadata"].get("annotations", {}).get(GENERATION_ANNOTATION)
    return int(value) if value is not None and value.isdigit() else None


def _job_state(job: dict) -> str:
    for condition in job.get("status", {}).get("conditions", []) or []:
        if condition.get("status") == "True" and condition.get("type") in ("Complete", "SuccessCriteriaMet"):
            return "succeeded"
        if condition.get("status") == "True" and condition.get("type") in ("Failed", "FailureTarget"):
            return "failed"
    return "running"
