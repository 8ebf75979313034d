"""Plan the scale-down rescue: which spool claims a StatefulSet left behind, and which drain Jobs to run.

A StatefulSet scaled from N to M pods keeps the claims of ordinals M..N-1 (``whenScaled: Retain``), and
whatever their tailers could not ship before the grace period ended stays on them. The rescue runs, for
each such claim, a *drain Job* (``spoolship.drain_job``): the StatefulSet's own tailer container, mounting
that claim, in a mode that exits 0 once the spool is empty and checkpointed. This module only decides;
``spoolship.kube`` talks to the API and ``spoolship rescue`` joins the two. Everything here is a pure
function of the objects as the API returns them (dicts), so every case is a unit test on fixture JSON.

**When is a claim drained?** When a drain succeeded and no pod has written to the claim since. The rescue
cannot see pods that came and went between two of its passes, but it can see every change of the
StatefulSet's spec: ``metadata.generation`` goes up by one per change. So it keeps, on each unserved claim,
the annotation ``UNSERVED_ANNOTATION`` = ``<statefulset uid>/<first>-<last>``: the generations through
which it has seen the ordinal unserved without a gap. A pass at generation G extends the streak when the
last one it recorded is G or G-1 (the one change since is the one it sees now, and it does not serve the
ordinal); otherwise some spec it never saw might have served the ordinal, and the streak starts again at G.
A claim is drained when its streak holds and it carries ``DRAINED_LABEL`` (set by the pass that saw a drain
succeed), or a drain Job created within the streak succeeded. So an HPA step or a rollout does not re-drain
every retained claim; only a gap (two spec changes between passes, a StatefulSet re-created) does.

Rules, per claim ``<template>-<statefulset>-<ordinal>``:

- ordinal served (``start <= ordinal < start + replicas``): the StatefulSet owns it. Any drain Job for it
  is deleted (the tailer drains on SIGTERM and the new pod attaches), and the drained mark is removed.
- claim being deleted: left alone.
- a drain Job for it is running: wait, unless the Job's template is out of date (another image, args or
  environment): then it is deleted, and a current one starts once it is gone. At most one drain per claim.
- drained (above): nothing to do; other finished drain Jobs for it are deleted.
- a drain the image refused (``podFailurePolicy``: the tailer exited 2, a usage error) with the current
  template: kept, so its failure stays visible (alert ``SpoolshipDrainRefused``), and not started again
  until the template changes.
- other finished drain Jobs (failed, or succeeded before the streak): deleted; a new drain starts once no
  Job for the claim is left.
- a pod still mounts it (a scaled-down pod in its grace period, a drain pod still terminating, a pod stuck
  terminating on a lost node): wait.
- otherwise: start a drain Job.

Thread-safety: pure functions over their arguments.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from .drain_job import (
    CLAIM_LABEL,
    COMPONENT,
    DEFAULT_BACKOFF_LIMIT,
    DEFAULT_TAIL_ARGS,
    GENERATION_ANNOTATION,
    TEMPLATE_HASH_ANNOTATION,
    DrainJobError,
    drain_job,
)

__all__ = [
    "CLAIM_LABEL",
    "COMPONENT",
    "DEFAULT_BACKOFF_LIMIT",
    "DEFAULT_TAIL_ARGS",
    "DRAINED_LABEL",
    "GENERATION_ANNOTATION",
    "UNSERVED_ANNOTATION",
    "RescueError",
    "RescuePlan",
    "claim_pattern",
    "is_served",
    "plan_rescue",
]

DRAINED_LABEL = "spoolship.io/drained"
UNSERVED_ANNOTATION = "spoolship.io/unserved-generations"
RescueError = DrainJobError


@dataclass(frozen=True)
class RescuePlan:
    """What one pass decided: Jobs to create (manifests), Jobs to delete (names), merge patches for claims'
    metadata (claim name -> {"labels": {...}, "annotations": {...}}, None removes a key), each claim's state."""

    create: tuple[dict, ...] = ()
    delete: tuple[str, ...] = ()
    patch: dict[str, dict] = field(default_factory=dict)
    claims: dict[str, str] = field(default_factory=dict)


def claim_pattern(statefulset: str, claim_template: str) -> re.Pattern:
    return re.compile(rf"{re.escape(claim_template)}-{re.escape(statefulset)}-(0|[1-9][0-9]*)")


def is_served(statefulset: dict, ordinal: int) -> bool:
    return ordinal in _served_ordinals(statefulset["spec"])


def plan_rescue(statefulset: dict, claims: Iterable[dict], pods: Iterable[dict], jobs: Iterable[dict], *,
                claim_template: str, container: str, configmaps: Mapping[str, dict] | None = None,
                tail_args: Sequence[str] = DEFAULT_TAIL_ARGS,
                backoff_limit: int = DEFAULT_BACKOFF_LIMIT) -> RescuePlan:
    """Decide one pass of the rescue from the API's objects (see the module docstring for the rules)."""
    name = statefulset["metadata"]["name"]
    pattern = claim_pattern(name, claim_template)
    users = _claim_users(pods)
    drains: dict[str, list[dict]] = {}
    for job in jobs:
        claim = job["metadata"].get("labels", {}).get(CLAIM_LABEL)
        if claim is not None:
            drains.setdefault(claim, []).append(job)
    create, delete, patches, states = [], [], {}, {}
    for claim in claims:
        claim_name = claim["metadata"]["name"]
        match = pattern.fullmatch(claim_name)
        if match is None:
            continue
        ordinal = int(match.group(1))
        planned = None  # built only for a claim it may start, so a served claim never needs the ConfigMaps
        if not is_served(statefulset, ordinal) and not _deleting(claim):
            planned = drain_job(statefulset, claim_name, ordinal, claim_template=claim_template,
                                container=container, configmaps=configmaps, tail_args=tail_args,
                                backoff_limit=backoff_limit)
        decision = _decide(statefulset, ordinal, claim, drains.pop(claim_name, []), users.get(claim_name, ()),
                           planned)
        states[claim_name] = decision.state
        delete.extend(decision.delete)
        if decision.patch:
            patches[claim_name] = decision.patch
        if decision.start:
            create.append(planned)
    for leftover in drains.values():  # drain Jobs whose claim is gone
        delete.extend(j["metadata"]["name"] for j in leftover if not _deleting(j))
    return RescuePlan(create=tuple(create), delete=tuple(delete), patch=patches, claims=states)


@dataclass(frozen=True)
class _Decision:
    state: str
    delete: tuple[str, ...] = ()
    patch: dict | None = None
    start: bool = False


def _decide(statefulset: dict, ordinal: int, claim: dict, jobs: list[dict], users: Sequence[dict],
            planned: dict | None) -> _Decision:
    alive = [j for j in jobs if not _deleting(j)]
    names = tuple(j["metadata"]["name"] for j in alive)
    labels = claim["metadata"].get("labels") or {}
    annotations = claim["metadata"].get("annotations") or {}
    if is_served(statefulset, ordinal):
        clear = _metadata_patch(labels, annotations, drained=False, streak=None)
        return _Decision("served", names, clear)
    if _deleting(claim):
        return _Decision("claim-deleting")
    assert planned is not None
    streak, continuous = _streak(statefulset, annotations.get(UNSERVED_ANNOTATION))
    current_hash = planned["metadata"]["annotations"][TEMPLATE_HASH_ANNOTATION]
    running = [j for j in alive if _job_state(j) == "running"]
    succeeded = [j for j in alive if _job_state(j) == "succeeded" and (_job_generation(j) or -1) >= streak[1]]
    drained = (continuous and labels.get(DRAINED_LABEL) == "true") or bool(succeeded)

    def with_patch(decision: _Decision) -> _Decision:
        patch = _metadata_patch(labels, annotations, drained=drained and not running, streak=streak)
        return _Decision(decision.state, decision.delete, patch, decision.start)

    if running:
        outdated = tuple(j["metadata"]["name"] for j in running if _job_hash(j) != current_hash)
        return with_patch(_Decision("draining-outdated" if outdated else "draining", outdated))
    if drained:
        keep = succeeded[:1]
        return with_patch(_Decision("drained", tuple(n for n in names if n not in _names(keep))))
    refused = [j for j in alive if _job_state(j) == "refused" and _job_hash(j) == current_hash]
    if refused:
        return with_patch(_Decision("refused-by-image", tuple(n for n in names if n not in _names(refused))))
    if names or len(alive) < len(jobs):
        return with_patch(_Decision("waiting-for-old-job", names))
    if users:
        terminating = all(_deleting(p) for p in users)
        return with_patch(_Decision("in-use-terminating" if terminating else "in-use"))
    return with_patch(_Decision("drain-started", start=True))


def _streak(statefulset: dict, recorded: str | None) -> tuple[tuple[str, int, int], bool]:
    """(uid, first, last) of the unserved streak after this pass, and whether it continues the recorded one."""
    uid = str(statefulset["metadata"].get("uid", ""))
    generation = int(statefulset["metadata"].get("generation", 0))
    match = re.fullmatch(r"([^/]*)/([0-9]+)-([0-9]+)", recorded or "")
    if match and match.group(1) == uid:
        first, last = int(match.group(2)), int(match.group(3))
        if first <= last and generation in (last, last + 1):
            return (uid, first, generation), True
    return (uid, generation, generation), False


def _metadata_patch(labels: dict, annotations: dict, *, drained: bool,
                    streak: tuple[str, int, int] | None) -> dict | None:
    """A merge patch that sets the drained label and the streak annotation to what this pass decided."""
    patch: dict[str, dict] = {}
    want_label = "true" if drained else None
    if labels.get(DRAINED_LABEL) != want_label:
        patch["labels"] = {DRAINED_LABEL: want_label}
    want_streak = None if streak is None else f"{streak[0]}/{streak[1]}-{streak[2]}"
    if annotations.get(UNSERVED_ANNOTATION) != want_streak:
        patch["annotations"] = {UNSERVED_ANNOTATION: want_streak}
    return patch or None


def _names(jobs: Iterable[dict]) -> set[str]:
    return {j["metadata"]["name"] for j in jobs}


def _served_ordinals(spec: dict) -> range:
    start = int((spec.get("ordinals") or {}).get("start", 0))
    replicas = spec.get("replicas")
    return range(start, start + int(1 if replicas is None else replicas))  # the API's default is 1


def _claim_users(pods: Iterable[dict]) -> dict[str, list[dict]]:
    """claim name -> pods that still mount it (any pod not finished, terminating ones included)."""
    users: dict[str, list[dict]] = {}
    for pod in pods:
        if pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
            continue
        for volume in pod.get("spec", {}).get("volumes", []):
            claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
            if claim:
                users.setdefault(claim, []).append(pod)
    return users


def _deleting(obj: dict) -> bool:
    return bool(obj["metadata"].get("deletionTimestamp"))


def _job_generation(job: dict) -> int | None:
    value = (job["metadata"].get("annotations") or {}).get(GENERATION_ANNOTATION)
    return int(value) if value is not None and value.isdigit() else None


def _job_hash(job: dict) -> str | None:
    return (job["metadata"].get("annotations") or {}).get(TEMPLATE_HASH_ANNOTATION)


def _job_state(job: dict) -> str:
    """succeeded, refused (the podFailurePolicy's FailJob: the image refused the command), failed, running."""
    for condition in job.get("status", {}).get("conditions", []) or []:
        if condition.get("status") != "True":
            continue
        if condition.get("type") in ("Complete", "SuccessCriteriaMet"):
            return "succeeded"
        if condition.get("type") in ("Failed", "FailureTarget"):
            return "refused" if condition.get("reason") == "PodFailurePolicy" else "failed"
    return "running"
