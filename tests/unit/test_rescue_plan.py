"""spoolship.rescue.plan_rescue: every rule of the scale-down rescue, on API objects as the API returns them.

Fixtures (tests/unit/fixtures/rescue/) are a StatefulSet, claim, pod and drain Job as a cluster answers
for the production overlay scaled to 2 replicas at generation 7; the helpers below vary them.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spoolship.rescue import CLAIM_LABEL, GENERATION_ANNOTATION, RescueError, drain_job, plan_rescue

FIXTURES = Path(__file__).parent / "fixtures" / "rescue"


def load(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


def statefulset(replicas: int = 2, generation: int = 7, start: int | None = None) -> dict:
    sts = load("statefulset.json")
    sts["spec"]["replicas"] = replicas
    sts["metadata"]["generation"] = generation
    if start is not None:
        sts["spec"]["ordinals"] = {"start": start}
    return sts


def claim(ordinal: int, name: str | None = None, deleting: bool = False) -> dict:
    c = load("claim.json")
    c["metadata"]["name"] = name or f"spool-spoolship-{ordinal}"
    if deleting:
        c["metadata"]["deletionTimestamp"] = "2026-10-02T10:00:00Z"
    return c


def pod(ordinal: int, phase: str = "Running", terminating: bool = False, name: str | None = None) -> dict:
    p = load("pod.json")
    p["metadata"]["name"] = name or f"spoolship-{ordinal}"
    p["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"] = f"spool-spoolship-{ordinal}"
    p["status"]["phase"] = phase
    if terminating:
        p["metadata"]["deletionTimestamp"] = "2026-10-02T10:00:00Z"
    return p


def job(ordinal: int, generation: int = 7, state: str = "running", deleting: bool = False) -> dict:
    j = load("job-running.json")
    j["metadata"]["name"] = f"spoolship-drain-{ordinal}-g{generation}"
    j["metadata"]["labels"][CLAIM_LABEL] = f"spool-spoolship-{ordinal}"
    j["metadata"]["annotations"][GENERATION_ANNOTATION] = str(generation)
    if state != "running":
        kind = {"succeeded": "Complete", "failed": "Failed"}[state]
        j["status"] = {"conditions": [{"type": kind, "status": "True"}], "active": 0}
    if deleting:
        j["metadata"]["deletionTimestamp"] = "2026-10-02T10:00:00Z"
    return j


def plan(sts, claims, pods=(), jobs=()):
    return plan_rescue(sts, claims, pods, jobs, claim_template="spool", container="tailer")


SERVING = [pod(0), pod(1)]


# name, replicas, claims, pods, jobs, expected states, expected deletes, expected created Job names
CASES = [
    ("all ordinals served", 2, [claim(0), claim(1)], SERVING, [], {"spool-spoolship-0": "served",
     "spool-spoolship-1": "served"}, [], []),
    ("scaled 3 -> 2, pod gone: drain it", 2, [claim(0), claim(1), claim(2)], SERVING, [],
     {"spool-spoolship-2": "drain-started"}, [], ["spoolship-drain-2-g7"]),
    ("scaled 3 -> 2, pod still in its grace period: wait", 2, [claim(2)], [pod(2, terminating=True)], [],
     {"spool-spoolship-2": "in-use"}, [], []),
    ("a drain is running: wait", 2, [claim(2)], [pod(2, name="spoolship-drain-2-g7-abcde")], [job(2)],
     {"spool-spoolship-2": "draining"}, [], []),
    ("a drain of an older generation still runs: let it finish", 2, [claim(2)], [], [job(2, generation=5)],
     {"spool-spoolship-2": "draining"}, [], []),
    ("the ordinal came back: stop the drain", 3, [claim(2)], [], [job(2)],
     {"spool-spoolship-2": "served"}, ["spoolship-drain-2-g7"], []),
    ("the ordinal came back, old drain finished: clean it up", 3, [claim(2)], [pod(2)], [job(2, state="succeeded")],
     {"spool-spoolship-2": "served"}, ["spoolship-drain-2-g7"], []),
    ("drained at this generation: nothing to do", 2, [claim(2)], [], [job(2, state="succeeded")],
     {"spool-spoolship-2": "drained"}, [], []),
    ("drained, plus a stale older drain: drop the stale one", 2, [claim(2)], [],
     [job(2, state="succeeded"), job(2, generation=4, state="succeeded")],
     {"spool-spoolship-2": "drained"}, ["spoolship-drain-2-g4"], []),
    ("drained at an older generation (the ordinal may have come back): drain again", 2, [claim(2)], [],
     [job(2, generation=6, state="succeeded")], {"spool-spoolship-2": "waiting-for-old-job"},
     ["spoolship-drain-2-g6"], []),
    ("the drain failed: delete it, it starts again next pass", 2, [claim(2)], [], [job(2, state="failed")],
     {"spool-spoolship-2": "waiting-for-old-job"}, ["spoolship-drain-2-g7"], []),
    ("an old drain is being deleted: wait for it", 2, [claim(2)], [], [job(2, generation=6, deleting=True)],
     {"spool-spoolship-2": "waiting-for-old-job"}, [], []),
    ("a deleted drain's pod still terminates: wait", 2, [claim(2)],
     [pod(2, terminating=True, name="spoolship-drain-2-g6-xyz12")], [], {"spool-spoolship-2": "in-use"}, [], []),
    ("finished pods do not hold the claim", 2, [claim(2)], [pod(2, phase="Succeeded"), pod(2, phase="Failed")], [],
     {"spool-spoolship-2": "drain-started"}, [], ["spoolship-drain-2-g7"]),
    ("a claim being deleted is left alone", 2, [claim(2, deleting=True)], [], [],
     {"spool-spoolship-2": "claim-deleting"}, [], []),
    ("claims of other templates and StatefulSets are not ours", 2,
     [claim(0, "data-spoolship-5"), claim(0, "spool-spoolship-canary-5"), claim(0, "spool-spoolship-05"),
      claim(0, "spool-spoolship-")], [], [], {}, [], []),
    ("a drain whose claim is gone is deleted", 2, [claim(0)], [pod(0)], [job(4)],
     {"spool-spoolship-0": "served"}, ["spoolship-drain-4-g7"], []),
    ("scaled to zero: every unused claim is drained", 0, [claim(0), claim(1)], [], [],
     {"spool-spoolship-0": "drain-started", "spool-spoolship-1": "drain-started"}, [],
     ["spoolship-drain-0-g7", "spoolship-drain-1-g7"]),
]


@pytest.mark.parametrize("replicas,claims,pods,jobs,states,deletes,created",
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_rescue_rules(replicas, claims, pods, jobs, states, deletes, created):
    result = plan(statefulset(replicas), claims, pods, jobs)
    assert {k: v for k, v in result.claims.items() if k in states or v != "served"} == states
    assert sorted(result.delete) == sorted(deletes)
    assert [j["metadata"]["name"] for j in result.create] == created


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
    assert tailer["image"] == original["image"] and tailer["envFrom"] == original["envFrom"]
    assert tailer["args"] == original["args"] + ["--exit-when-empty"]
    assert tailer["resources"] == original["resources"] and tailer["securityContext"] == original["securityContext"]
    volumes = {v["name"]: v for v in pod_spec["volumes"]}
    assert volumes["spool"] == {"name": "spool", "persistentVolumeClaim": {"claimName": "spool-spoolship-2"}}
    assert set(volumes) == {m["name"] for m in tailer["volumeMounts"]}, "only what the tailer mounts"
    assert pod_spec["restartPolicy"] == "OnFailure"
    for key in ("serviceAccountName", "automountServiceAccountToken", "securityContext",
                "terminationGracePeriodSeconds"):
        assert pod_spec[key] == template["spec"][key], key
    assert manifest["metadata"]["annotations"][GENERATION_ANNOTATION] == "7"
    assert manifest["spec"]["backoffLimit"] == 10


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
    manifest = drain_job(sts, "spool-spoolship-2", 2, claim_template="spool", container="tailer")
    assert manifest["spec"]["template"]["spec"]["containers"][0]["args"].count("--exit-when-empty") == 1


@pytest.mark.parametrize("container,template,message", [("shipper", "spool", "no container"),
                                                        ("tailer", "data", "does not mount")])
def test_a_statefulset_that_does_not_fit_is_a_clear_error(container, template, message):
    with pytest.raises(RescueError, match=message):
        drain_job(statefulset(), "spool-spoolship-2", 2, claim_template=template, container=container)


# Random clusters: whatever the mix of claims, pods and Jobs, the plan keeps the invariants that keep a
# spool from having two tailers, or none.
world = st.fixed_dictionaries({
    "replicas": st.integers(0, 4),
    "generation": st.integers(1, 4),
    "claims": st.sets(st.integers(0, 5), max_size=6),
    "claims_deleting": st.sets(st.integers(0, 5)),
    "pods": st.lists(st.tuples(st.integers(0, 5), st.sampled_from(["Running", "Pending", "Succeeded", "Failed"]),
                               st.booleans()), max_size=6),
    "jobs": st.lists(st.tuples(st.integers(0, 5), st.integers(1, 4),
                               st.sampled_from(["running", "succeeded", "failed"]), st.booleans()), max_size=6),
})


@settings(max_examples=300, deadline=None)
@given(world)
def test_invariants_over_random_clusters(w):
    sts = statefulset(w["replicas"], w["generation"])
    claims = [claim(o, deleting=o in w["claims_deleting"]) for o in sorted(w["claims"])]
    pods = [pod(o, phase, terminating, name=f"p{i}") for i, (o, phase, terminating) in enumerate(w["pods"])]
    jobs_by_name = {}
    for o, g, state, deleting in w["jobs"]:
        jobs_by_name[f"spoolship-drain-{o}-g{g}"] = job(o, g, state, deleting)
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
        assert not [n for n in existing_after if n.startswith(f"spoolship-drain-{o}-")], "one drain per claim"
    for name in result.delete:
        assert name in jobs_by_name and not jobs_by_name[name]["metadata"].get("deletionTimestamp")
        j = jobs_by_name[name]
        o = int(name.split("-")[2])
        running = "conditions" not in j["status"]
        assert o in served or not running or o not in w["claims"], "a running drain is stopped only for a reason"
    for c in claims:  # nothing stranded: an out-of-range, unused, job-less claim always gets a drain
        o = int(c["metadata"]["name"].rsplit("-", 1)[1])
        has_job = any(j["metadata"]["labels"][CLAIM_LABEL] == c["metadata"]["name"] for j in jobs)
        if o not in served and o not in live_users and not has_job and o not in w["claims_deleting"]:
            assert result.claims[c["metadata"]["name"]] == "drain-started"


def test_plan_does_not_modify_its_inputs():
    sts, claims, pods, jobs = statefulset(), [claim(2)], [pod(0)], [job(3)]
    before = copy.deepcopy((sts, claims, pods, jobs))
    plan(sts, claims, pods, jobs)
    assert (sts, claims, pods, jobs) == before
