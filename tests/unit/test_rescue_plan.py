"""spoolship.rescue.plan_rescue: every rule of the scale-down rescue, on API objects as the API returns them.

Fixtures (tests/unit/fixtures/rescue/) are a StatefulSet, claim, pod, drain Job and the tailer's ConfigMap
as a cluster answers for the production overlay scaled to 2 replicas at generation 7; the helpers below
vary them. The last test runs the planner against a model cluster through random scale events, rollouts,
drains that finish or fail, and passes that see only some of it: no claim with unshipped data is ever
taken for drained, and every one is drained in the end.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from spoolship.drain_job import TEMPLATE_HASH_ANNOTATION, drain_job
from spoolship.rescue import (
    CLAIM_LABEL,
    DRAINED_LABEL,
    GENERATION_ANNOTATION,
    UNSERVED_ANNOTATION,
    RescueError,
    plan_rescue,
)

FIXTURES = Path(__file__).parent / "fixtures" / "rescue"


def load(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


CONFIGMAPS = {"spoolship-tailer-8dhctkdht7": load("configmap-tailer.json")}
UID = load("statefulset.json")["metadata"]["uid"]


def statefulset(replicas: int = 2, generation: int = 7, start: int | None = None, uid: str = UID) -> dict:
    sts = load("statefulset.json")
    sts["spec"]["replicas"] = replicas
    sts["metadata"]["generation"] = generation
    sts["metadata"]["uid"] = uid
    if start is not None:
        sts["spec"]["ordinals"] = {"start": start}
    return sts


def claim(ordinal: int, name: str | None = None, deleting: bool = False, drained: bool = False,
          streak: str | None = None) -> dict:
    c = load("claim.json")
    c["metadata"]["name"] = name or f"spool-spoolship-{ordinal}"
    if deleting:
        c["metadata"]["deletionTimestamp"] = "2026-10-02T10:00:00Z"
    if drained:
        c["metadata"]["labels"][DRAINED_LABEL] = "true"
    if streak is not None:
        c["metadata"]["annotations"][UNSERVED_ANNOTATION] = streak.replace("UID", UID)
    return c


def pod(ordinal: int, phase: str = "Running", terminating: bool = False, name: str | None = None) -> dict:
    p = load("pod.json")
    p["metadata"]["name"] = name or f"spoolship-{ordinal}"
    p["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"] = f"spool-spoolship-{ordinal}"
    p["status"]["phase"] = phase
    if terminating:
        p["metadata"]["deletionTimestamp"] = "2026-10-02T10:00:00Z"
    return p


def current_hash(ordinal: int) -> str:
    job = drain_job(statefulset(), f"spool-spoolship-{ordinal}", ordinal, claim_template="spool",
                    container="tailer", configmaps=CONFIGMAPS)
    return job["metadata"]["annotations"][TEMPLATE_HASH_ANNOTATION]


def job(ordinal: int, generation: int = 7, state: str = "running", deleting: bool = False,
        outdated: bool = False, name: str | None = None) -> dict:
    j = load("job-running.json")
    j["metadata"]["name"] = name or f"spoolship-drain-{ordinal}"
    j["metadata"]["labels"][CLAIM_LABEL] = f"spool-spoolship-{ordinal}"
    j["metadata"]["annotations"][GENERATION_ANNOTATION] = str(generation)
    j["metadata"]["annotations"][TEMPLATE_HASH_ANNOTATION] = "0" * 16 if outdated else current_hash(ordinal)
    if state != "running":
        condition = {"succeeded": {"type": "Complete", "status": "True"},
                     "failed": {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"},
                     "refused": {"type": "Failed", "status": "True", "reason": "PodFailurePolicy"}}[state]
        j["status"] = {"conditions": [condition], "active": 0}
    if deleting:
        j["metadata"]["deletionTimestamp"] = "2026-10-02T10:00:00Z"
    return j


def plan(sts, claims, pods=(), jobs=()):
    return plan_rescue(sts, claims, pods, jobs, claim_template="spool", container="tailer", configmaps=CONFIGMAPS)


SERVING = [pod(0), pod(1)]
C2 = "spool-spoolship-2"


# name, replicas, claims, pods, jobs, expected states, expected deletes, expected created Job names
CASES = [
    ("all ordinals served", 2, [claim(0), claim(1)], SERVING, [], {"spool-spoolship-0": "served",
     "spool-spoolship-1": "served"}, [], []),
    ("scaled 3 -> 2, pod gone: drain it", 2, [claim(0), claim(1), claim(2)], SERVING, [],
     {C2: "drain-started"}, [], ["spoolship-drain-2"]),
    ("scaled 3 -> 2, pod still in its grace period: wait", 2, [claim(2)], [pod(2, terminating=True)], [],
     {C2: "in-use-terminating"}, [], []),
    ("a scaled-down pod stuck terminating on a lost node holds the claim: wait (runbook)", 2, [claim(2)],
     [pod(2, terminating=True)], [job(2, state="failed")], {C2: "waiting-for-old-job"}, ["spoolship-drain-2"], []),
    ("a drain is running: wait", 2, [claim(2)], [pod(2, name="spoolship-drain-2-abcde")], [job(2)],
     {C2: "draining"}, [], []),
    ("a drain started at an older generation still runs: let it finish", 2, [claim(2)], [],
     [job(2, generation=5)], {C2: "draining"}, [], []),
    ("a running drain with an outdated template (image, args, env): replace it", 2, [claim(2)], [],
     [job(2, outdated=True)], {C2: "draining-outdated"}, ["spoolship-drain-2"], []),
    ("the ordinal came back: stop the drain", 3, [claim(2)], [], [job(2)],
     {C2: "served"}, ["spoolship-drain-2"], []),
    ("the ordinal came back, old drain finished: clean it up", 3, [claim(2)], [pod(2)], [job(2, state="succeeded")],
     {C2: "served"}, ["spoolship-drain-2"], []),
    ("drained at this generation: nothing to do", 2, [claim(2)], [], [job(2, state="succeeded")],
     {C2: "drained"}, [], []),
    ("drained, plus a stale drain of the old naming: drop the stale one", 2, [claim(2)], [],
     [job(2, state="succeeded"), job(2, generation=4, state="succeeded", name="spoolship-drain-2-g4")],
     {C2: "drained"}, ["spoolship-drain-2-g4"], []),
    ("drained at generation 6, seen unserved through 6, now 7 (an HPA step): still drained, no churn", 2,
     [claim(2, streak="UID/6-6")], [], [job(2, generation=6, state="succeeded")], {C2: "drained"}, [], []),
    ("drained at 5, last seen at 5, now 7: a spec it never saw may have served it: drain again", 2,
     [claim(2, streak="UID/5-5")], [], [job(2, generation=5, state="succeeded")],
     {C2: "waiting-for-old-job"}, ["spoolship-drain-2"], []),
    ("marked drained, streak unbroken, its Job deleted by hand: still drained", 2,
     [claim(2, drained=True, streak="UID/3-6")], [], [], {C2: "drained"}, [], []),
    ("marked drained by another StatefulSet of that name (re-created): drain again", 2,
     [claim(2, drained=True, streak="0ther-uid/3-7")], [], [], {C2: "drain-started"}, [], ["spoolship-drain-2"]),
    ("marked drained, but passes missed a generation: drain again", 2,
     [claim(2, drained=True, streak="UID/3-5")], [], [], {C2: "drain-started"}, [], ["spoolship-drain-2"]),
    ("the drain failed: delete it, it starts again next pass", 2, [claim(2)], [], [job(2, state="failed")],
     {C2: "waiting-for-old-job"}, ["spoolship-drain-2"], []),
    ("the image refused the drain's command (exit 2): keep the failed Job, start nothing", 2, [claim(2)], [],
     [job(2, state="refused")], {C2: "refused-by-image"}, [], []),
    ("a refused drain, and the template changed since (a fix deployed): replace it", 2, [claim(2)], [],
     [job(2, state="refused", outdated=True)], {C2: "waiting-for-old-job"}, ["spoolship-drain-2"], []),
    ("an old drain is being deleted: wait for it", 2, [claim(2)], [], [job(2, generation=6, deleting=True)],
     {C2: "waiting-for-old-job"}, [], []),
    ("a deleted drain's pod still terminates: wait", 2, [claim(2)],
     [pod(2, terminating=True, name="spoolship-drain-2-xyz12")], [], {C2: "in-use-terminating"}, [], []),
    ("a pending pod mounts it: wait", 2, [claim(2)], [pod(2, phase="Pending")], [], {C2: "in-use"}, [], []),
    ("finished pods do not hold the claim", 2, [claim(2)], [pod(2, phase="Succeeded"), pod(2, phase="Failed")], [],
     {C2: "drain-started"}, [], ["spoolship-drain-2"]),
    ("a claim being deleted is left alone", 2, [claim(2, deleting=True)], [], [],
     {C2: "claim-deleting"}, [], []),
    ("claims of other templates and StatefulSets are not ours", 2,
     [claim(0, "data-spoolship-5"), claim(0, "spool-spoolship-canary-5"), claim(0, "spool-spoolship-05"),
      claim(0, "spool-spoolship-")], [], [], {}, [], []),
    ("a drain whose claim is gone is deleted", 2, [claim(0)], [pod(0)], [job(4)],
     {"spool-spoolship-0": "served"}, ["spoolship-drain-4"], []),
    ("scaled to zero: every unused claim is drained", 0, [claim(0), claim(1)], [], [],
     {"spool-spoolship-0": "drain-started", "spool-spoolship-1": "drain-started"}, [],
     ["spoolship-drain-0", "spoolship-drain-1"]),
]


@pytest.mark.parametrize("replicas,claims,pods,jobs,states,deletes,created",
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_rescue_rules(replicas, claims, pods, jobs, states, deletes, created):
    result = plan(statefulset(replicas), claims, pods, jobs)
    for name, state in states.items():
        assert result.claims[name] == state
    assert set(states) <= set(result.claims) and (states or not result.claims)
    assert sorted(result.delete) == sorted(deletes)
    assert [j["metadata"]["name"] for j in result.create] == created


# name, claim, jobs, replicas, generation -> the merge patch of the claim's metadata
PATCHES = [
    ("a fresh claim: its streak starts", claim(2), [], 2, 7,
     {"annotations": {UNSERVED_ANNOTATION: f"{UID}/7-7"}}),
    ("a drain succeeded: mark the claim drained", claim(2, streak="UID/7-7"), [job(2, state="succeeded")], 2, 7,
     {"labels": {DRAINED_LABEL: "true"}}),
    ("one spec change since the last pass: the streak goes on", claim(2, drained=True, streak="UID/3-6"), [], 2, 7,
     {"annotations": {UNSERVED_ANNOTATION: f"{UID}/3-7"}}),
    ("steady state: nothing to write", claim(2, drained=True, streak="UID/3-7"), [], 2, 7, None),
    ("a gap: the mark goes, the streak starts again", claim(2, drained=True, streak="UID/3-5"), [], 2, 7,
     {"labels": {DRAINED_LABEL: None}, "annotations": {UNSERVED_ANNOTATION: f"{UID}/7-7"}}),
    ("served again: mark and streak removed", claim(2, drained=True, streak="UID/3-7"), [], 3, 8,
     {"labels": {DRAINED_LABEL: None}, "annotations": {UNSERVED_ANNOTATION: None}}),
    ("a drain runs (the mark had survived by hand): the mark goes", claim(2, drained=True, streak="UID/7-7"),
     [job(2)], 2, 7, {"labels": {DRAINED_LABEL: None}}),
    ("served and never marked: nothing to write", claim(1), [], 2, 7, None),
]


@pytest.mark.parametrize("the_claim,jobs,replicas,generation,expected", [p[1:] for p in PATCHES],
                         ids=[p[0] for p in PATCHES])
def test_the_claims_drained_mark_and_unserved_streak(the_claim, jobs, replicas, generation, expected):
    result = plan(statefulset(replicas, generation), [the_claim], [], jobs)
    assert result.patch.get(the_claim["metadata"]["name"]) == expected


def test_ordinals_start_is_honoured():
    sts = statefulset(replicas=2, start=5)  # serves 5 and 6
    result = plan(sts, [claim(4), claim(5), claim(6), claim(7)])
    assert result.claims == {"spool-spoolship-4": "drain-started", "spool-spoolship-5": "served",
                             "spool-spoolship-6": "served", "spool-spoolship-7": "drain-started"}


def test_missing_replicas_means_the_api_default_of_one():
    sts = statefulset()
    del sts["spec"]["replicas"]
    assert plan(sts, [claim(0), claim(1)]).claims == {"spool-spoolship-0": "served",
                                                      "spool-spoolship-1": "drain-started"}


def test_the_drain_job_runs_the_statefulsets_tailer_on_that_claim_only():
    sts = statefulset()
    [manifest] = plan(sts, [claim(2)]).create
    template = sts["spec"]["template"]
    pod_spec = manifest["spec"]["template"]["spec"]
    [tailer] = pod_spec["containers"]
    original = next(c for c in template["spec"]["containers"] if c["name"] == "tailer")
    assert tailer["image"] == original["image"]
    assert tailer["args"] == original["args"] + ["--exit-when-empty"]
    assert tailer["resources"] == original["resources"] and tailer["securityContext"] == original["securityContext"]
    volumes = {v["name"]: v for v in pod_spec["volumes"]}
    assert volumes["spool"] == {"name": "spool", "persistentVolumeClaim": {"claimName": "spool-spoolship-2"}}
    assert set(volumes) == {m["name"] for m in tailer["volumeMounts"]}, "only what the tailer mounts"
    for key in ("serviceAccountName", "automountServiceAccountToken", "securityContext",
                "terminationGracePeriodSeconds"):
        assert pod_spec[key] == template["spec"][key], key
    assert manifest["metadata"]["name"] == "spoolship-drain-2", "one name per claim: the API refuses a second"
    assert manifest["metadata"]["annotations"][GENERATION_ANNOTATION] == "7"
    assert manifest["spec"]["backoffLimit"] == 10


def test_the_drain_needs_no_configmap_a_prune_can_delete():
    """The tailer's envFrom (a hash-named ConfigMap) is copied into the Job as literal values."""
    [manifest] = plan(statefulset(), [claim(2)]).create
    [tailer] = manifest["spec"]["template"]["spec"]["containers"]
    assert "envFrom" not in tailer
    assert tailer["env"] == [{"name": "SPOOLSHIP_REGION", "value": "eu-west-1"},
                             {"name": "SPOOLSHIP_STREAM", "value": "events-prod"}]
    assert "configMap" not in json.dumps(manifest)


def test_env_is_resolved_as_the_kubelet_would():
    """Prefixes, env over envFrom, configMapKeyRef, optional references, keys that are no variable names."""
    sts = statefulset()
    tailer = next(c for c in sts["spec"]["template"]["spec"]["containers"] if c["name"] == "tailer")
    tailer["envFrom"] = [{"configMapRef": {"name": "a"}, "prefix": "X_"}, {"configMapRef": {"name": "b"}},
                         {"configMapRef": {"name": "gone", "optional": True}},
                         {"secretRef": {"name": "aws-keys"}}]
    tailer["env"] = [{"name": "B", "value": "literal"},
                     {"name": "K", "valueFrom": {"configMapKeyRef": {"name": "a", "key": "k"}}},
                     {"name": "O", "valueFrom": {"configMapKeyRef": {"name": "gone", "key": "o", "optional": True}}},
                     {"name": "P", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]
    configmaps = {"a": {"data": {"k": "1", "bad key": "skipped"}}, "b": {"data": {"B": "from-b", "C": "3"}}}
    job = drain_job(sts, "spool-spoolship-2", 2, claim_template="spool", container="tailer", configmaps=configmaps)
    [c] = job["spec"]["template"]["spec"]["containers"]
    assert c["env"] == [{"name": "C", "value": "3"}, {"name": "X_k", "value": "1"},
                        {"name": "B", "value": "literal"}, {"name": "K", "value": "1"},
                        {"name": "P", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]
    assert c["envFrom"] == [{"secretRef": {"name": "aws-keys"}}], "a Secret stays a reference"
    for missing in ({"a": configmaps["a"]}, {"b": configmaps["b"]}):
        with pytest.raises(RescueError, match="does not exist|has no key"):
            drain_job(sts, "spool-spoolship-2", 2, claim_template="spool", container="tailer", configmaps=missing)


def test_a_missing_configmap_fails_only_a_pass_that_would_start_a_drain():
    assert plan_rescue(statefulset(), [claim(0), claim(1)], SERVING, [], claim_template="spool",
                       container="tailer", configmaps={}).claims["spool-spoolship-0"] == "served"
    with pytest.raises(RescueError, match="spoolship-tailer-8dhctkdht7"):
        plan_rescue(statefulset(), [claim(2)], [], [], claim_template="spool", container="tailer", configmaps={})


def test_usage_errors_fail_the_job_at_once_and_disruptions_do_not_count():
    [manifest] = plan(statefulset(), [claim(2)]).create
    spec = manifest["spec"]
    assert spec["template"]["spec"]["restartPolicy"] == "Never"  # podFailurePolicy requires it
    assert spec["podReplacementPolicy"] == "Failed", "never two drain pods on one claim"
    rules = spec["podFailurePolicy"]["rules"]
    assert rules[0] == {"action": "FailJob", "onExitCodes": {"containerName": "tailer", "operator": "In",
                                                             "values": [2]}}
    assert rules[1]["action"] == "Ignore" and rules[1]["onPodConditions"][0]["type"] == "DisruptionTarget"


def test_the_template_hash_ignores_the_generation_and_follows_what_the_drain_runs():
    a = drain_job(statefulset(generation=7), C2, 2, claim_template="spool", container="tailer", configmaps=CONFIGMAPS)
    b = drain_job(statefulset(generation=9, replicas=5), C2, 2, claim_template="spool", container="tailer",
                  configmaps=CONFIGMAPS)
    assert a["metadata"]["annotations"][TEMPLATE_HASH_ANNOTATION] == b["metadata"]["annotations"][TEMPLATE_HASH_ANNOTATION]
    other = copy.deepcopy(CONFIGMAPS)
    other["spoolship-tailer-8dhctkdht7"]["data"]["SPOOLSHIP_STREAM"] = "elsewhere"
    c = drain_job(statefulset(), C2, 2, claim_template="spool", container="tailer", configmaps=other)
    assert c["metadata"]["annotations"][TEMPLATE_HASH_ANNOTATION] != a["metadata"]["annotations"][TEMPLATE_HASH_ANNOTATION]


def test_drain_pods_are_never_taken_for_ingest_pods():
    """A drain pod matched by the StatefulSet's selector would be adopted; by the Service's, sent traffic."""
    sts = statefulset()
    [manifest] = plan(sts, [claim(2)]).create
    labels = manifest["spec"]["template"]["metadata"]["labels"]
    assert not sts["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert labels["app.kubernetes.io/component"] == "drain" and labels[CLAIM_LABEL] == "spool-spoolship-2"
    assert manifest["metadata"]["labels"] == labels


def test_tail_args_already_present_are_not_repeated():
    sts = statefulset()
    tailer = next(c for c in sts["spec"]["template"]["spec"]["containers"] if c["name"] == "tailer")
    tailer["args"].append("--exit-when-empty")
    manifest = drain_job(sts, "spool-spoolship-2", 2, claim_template="spool", container="tailer",
                         configmaps=CONFIGMAPS)
    assert manifest["spec"]["template"]["spec"]["containers"][0]["args"].count("--exit-when-empty") == 1


@pytest.mark.parametrize("container,template,message", [("shipper", "spool", "no container"),
                                                        ("tailer", "data", "does not mount")])
def test_a_statefulset_that_does_not_fit_is_a_clear_error(container, template, message):
    with pytest.raises(RescueError, match=message):
        drain_job(statefulset(), "spool-spoolship-2", 2, claim_template=template, container=container,
                  configmaps=CONFIGMAPS)


# Random clusters: whatever the mix of claims, pods and Jobs, the plan keeps the invariants that keep a
# spool from having two tailers, or none.
world = st.fixed_dictionaries({
    "replicas": st.integers(0, 4),
    "generation": st.integers(1, 4),
    "claims": st.sets(st.integers(0, 5), max_size=6),
    "claims_deleting": st.sets(st.integers(0, 5)),
    "claims_marked": st.dictionaries(st.integers(0, 5), st.tuples(st.booleans(), st.integers(0, 5),
                                                                  st.integers(0, 5), st.booleans())),
    "pods": st.lists(st.tuples(st.integers(0, 5), st.sampled_from(["Running", "Pending", "Succeeded", "Failed"]),
                               st.booleans()), max_size=6),
    "jobs": st.lists(st.tuples(st.integers(0, 5), st.integers(1, 4),
                               st.sampled_from(["running", "succeeded", "failed", "refused"]), st.booleans(),
                               st.booleans()), max_size=6),
})


@settings(max_examples=300, deadline=None)
@given(world)
def test_invariants_over_random_clusters(w):
    sts = statefulset(w["replicas"], w["generation"])
    claims = []
    for o in sorted(w["claims"]):
        drained, first, last, same_uid = w["claims_marked"].get(o, (False, 0, 0, True))
        streak = f"{'UID' if same_uid else 'other'}/{first}-{last}" if o in w["claims_marked"] else None
        claims.append(claim(o, deleting=o in w["claims_deleting"], drained=drained, streak=streak))
    pods = [pod(o, phase, terminating, name=f"p{i}") for i, (o, phase, terminating) in enumerate(w["pods"])]
    jobs_by_name = {}
    for o, g, state, deleting, legacy in w["jobs"]:
        name = f"spoolship-drain-{o}-g{g}" if legacy else f"spoolship-drain-{o}"
        jobs_by_name[name] = job(o, g, state, deleting, name=name)
    jobs = list(jobs_by_name.values())
    result = plan(sts, claims, pods, jobs)
    served = range(w["replicas"])
    live_users = {o for o, phase, _ in w["pods"] if phase not in ("Succeeded", "Failed")}
    existing_after = {name for name in jobs_by_name if name not in result.delete}
    for manifest in result.create:
        o = int(manifest["metadata"]["name"].split("-")[2])
        assert o not in served, "never drain a claim the StatefulSet serves"
        assert o not in live_users, "never a second tailer on a mounted claim"
        assert o not in w["claims_deleting"]
        assert not [n for n in existing_after if n.startswith(f"spoolship-drain-{o}")], "one drain per claim"
    for name in result.delete:
        assert name in jobs_by_name and not jobs_by_name[name]["metadata"].get("deletionTimestamp")
        j = jobs_by_name[name]
        o = int(name.split("-")[2])
        running = "conditions" not in j["status"]
        outdated = j["metadata"]["annotations"][TEMPLATE_HASH_ANNOTATION] != current_hash(o)
        assert o in served or not running or o not in w["claims"] or outdated, "a running drain stops for a reason"
    for patch in result.patch.values():
        for part in patch.values():
            assert all(key.startswith("spoolship.io/") for key in part), "the rescue writes only its own keys"
    for c in claims:  # nothing stranded: an out-of-range, unused, job-less, unmarked claim always gets a drain
        o = int(c["metadata"]["name"].rsplit("-", 1)[1])
        has_job = any(j["metadata"]["labels"][CLAIM_LABEL] == c["metadata"]["name"] for j in jobs)
        marked = DRAINED_LABEL in c["metadata"]["labels"]
        if (o not in served and o not in live_users and not has_job and not marked
                and o not in w["claims_deleting"]):
            assert result.claims[c["metadata"]["name"]] == "drain-started"


def test_plan_does_not_modify_its_inputs():
    sts, claims, pods, jobs = statefulset(), [claim(2, drained=True, streak="UID/1-6")], [pod(0)], [job(3)]
    before = copy.deepcopy((sts, claims, pods, jobs))
    plan(sts, claims, pods, jobs)
    assert (sts, claims, pods, jobs) == before


# --- The model: what the planner calls drained really is ------------------------------------------------

class Cluster:
    """A StatefulSet, its claims and drain Jobs; `dirty` = claims holding data no drain has shipped since."""

    def __init__(self) -> None:
        self.replicas, self.generation = 3, 1
        self.claims = {o: claim(o) for o in range(3)}
        self.jobs: dict[str, dict] = {}
        self.dirty = set(range(3))

    def scale(self, replicas: int) -> None:
        self.replicas, self.generation = replicas, self.generation + 1
        for o in range(replicas):  # a pod serves it, and writes to it
            self.claims.setdefault(o, claim(o))
            self.dirty.add(o)

    def rollout(self) -> None:
        self.generation += 1

    def pods(self) -> list[dict]:
        return [pod(o) for o in range(self.replicas)]

    def run_pass(self) -> dict[str, str]:
        result = plan(statefulset(self.replicas, self.generation), list(self.claims.values()), self.pods(),
                      list(self.jobs.values()))
        for name in result.delete:
            del self.jobs[name]
        for name, patch in result.patch.items():
            meta = self.claims[int(name.rsplit("-", 1)[1])]["metadata"]
            for part, values in patch.items():
                for key, value in values.items():
                    meta[part].pop(key, None) if value is None else meta[part].__setitem__(key, value)
        for manifest in result.create:
            manifest = copy.deepcopy(manifest)
            manifest["status"] = {}
            self.jobs[manifest["metadata"]["name"]] = manifest
        for name, state in result.claims.items():
            if state == "drained":
                assert int(name.rsplit("-", 1)[1]) not in self.dirty, f"{name} taken for drained with data on it"
        return result.claims

    def finish_drains(self, succeed: bool) -> None:
        for j in self.jobs.values():
            if not j["status"].get("conditions"):
                o = int(j["metadata"]["labels"][CLAIM_LABEL].rsplit("-", 1)[1])
                if o < self.replicas:
                    continue  # served again: the next pass stops it
                kind = {"type": "Complete"} if succeed else {"type": "Failed", "reason": "BackoffLimitExceeded"}
                j["status"] = {"conditions": [{**kind, "status": "True"}]}
                if succeed:
                    self.dirty.discard(o)


steps = st.lists(st.one_of(st.tuples(st.just("scale"), st.integers(1, 4)), st.just(("rollout",)),
                           st.just(("pass",)), st.just(("succeed",)), st.just(("fail",))), max_size=30)
# The review's gap: a drained claim's ordinal comes back and leaves again between two passes.
GAP = [("scale", 2), ("pass",), ("succeed",), ("pass",), ("scale", 3), ("scale", 2)]


@settings(max_examples=300, deadline=None)
@example(GAP)
@given(steps)
def test_no_claim_with_unshipped_data_is_taken_for_drained_and_every_one_is_drained_in_the_end(actions):
    cluster = Cluster()
    for kind, *arg in actions:
        if kind == "scale":
            cluster.scale(arg[0])
        else:
            {"rollout": cluster.rollout, "pass": cluster.run_pass, "succeed": lambda: cluster.finish_drains(True),
             "fail": lambda: cluster.finish_drains(False)}[kind]()
    for _ in range(4):  # then only passes and drains that succeed
        cluster.run_pass()
        cluster.finish_drains(True)
    states = cluster.run_pass()
    for o in cluster.claims:
        if o >= cluster.replicas:
            assert o not in cluster.dirty and states[f"spool-spoolship-{o}"] == "drained", (o, states)


def test_hpa_steps_and_rollouts_seen_one_by_one_do_not_re_drain_drained_claims():
    """The review's scenario C: five drained claims; a scale-up and back, a rollout: no Job re-made."""
    cluster = Cluster()
    cluster.scale(8)
    cluster.scale(3)
    cluster.run_pass()
    cluster.finish_drains(True)
    cluster.run_pass()
    assert set(cluster.run_pass().values()) == {"served", "drained"}
    made = {name: j["metadata"]["annotations"][GENERATION_ANNOTATION] for name, j in cluster.jobs.items()}
    for change in (cluster.rollout, lambda: cluster.scale(4), lambda: cluster.scale(3), cluster.rollout):
        change()
        states = cluster.run_pass()
    now = {name: j["metadata"]["annotations"][GENERATION_ANNOTATION] for name, j in cluster.jobs.items()}
    assert {n: g for n, g in now.items() if n != "spoolship-drain-3"} == {
        n: g for n, g in made.items() if n != "spoolship-drain-3"}, "no drained claim drained again"
    assert now["spoolship-drain-3"] != made["spoolship-drain-3"], "the ordinal that came back is drained again"
    assert states["spool-spoolship-3"] == "draining" and states["spool-spoolship-7"] == "drained"
