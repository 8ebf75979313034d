"""The image, built here from deploy/Containerfile with podman, runs the pod the production manifests
describe: receiver and tailer as two containers sharing the spool claim, as uid 10001 on read-only
root file systems, the tailer shipping to a Kinesis-API server on this host; SIGTERM drains both.

Skipped, with the reason, where podman cannot run or the image cannot be built (no podman/runc, no
package index). `make test` installs podman and builds first (deploy/podman/image.py prepare), so
the build is cached by the time this runs. On a stand-in base (no registry reachable) that is said in
the test output. What this does not show: the official base image, and a real cluster (scheduling,
the kubelet's probes, a real claim, NetworkPolicies); see docs/deploy.md, "The image".
"""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

import boto3
import pytest
import requests

from deploy.podman.image import BuildFailed, BuiltImage, CannotBuildHere, Podman, build
from spooler import list_segments
from tests.podman_pod import PlayablePod, config_map, render_overlay, statefulset, statefulset_pod
from tests.promql import alert_queries, check, dashboard_queries, exposed
from tests.servers.kinesis import user_records

# What the Containerfile adds over its base (the virtualenv): measured 39 MB (docs/deploy.md).
ADDED_BYTES_BUDGET = 60_000_000
# The whole image on the stand-in base (Debian's python3, ~179 MB); the official slim base is smaller.
TOTAL_BYTES_BUDGET = 260_000_000
API_KEY = "image-test-key-0123456789"
BUILD_TOOLS = ("gcc", "cc", "c++", "make", "ld", "as", "pip", "pip3", "uv", "dpkg-buildpackage")  # no compilers, no installers

pytestmark = pytest.mark.timeout(1800)  # a cold build (base + dependencies) on a loaded 2-core machine


@pytest.fixture(scope="module")
def podman() -> Podman:
    podman = Podman()
    why = podman.why_not_usable()
    if why:
        pytest.skip(f"image tests skipped: {why}")
    return podman


@pytest.fixture(scope="module")
def image(podman: Podman) -> BuiltImage:
    try:
        built = build(podman)
    except CannotBuildHere as error:
        pytest.skip(f"image tests skipped: cannot build here: {error}")
    except BuildFailed as error:
        pytest.fail(str(error))
    if built.stand_in:
        print(f"\n*** image built on a STAND-IN base ({built.stand_in}): not the official python image ***")
    return built


def test_image_runs_spoolship_as_non_root_within_its_budget_without_build_tools(podman, image):
    config = podman.inspect(image.tag)["Config"]
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"] == ["spoolship"] and config["Cmd"] == ["--help"]
    assert image.added_bytes <= ADDED_BYTES_BUDGET, f"{image.added_bytes / 1e6:.1f} MB over the base"
    assert image.size_bytes <= TOTAL_BYTES_BUDGET, f"{image.size_bytes / 1e6:.1f} MB"

    version = podman.run("run", "--rm", "--network", "host", "--read-only", image.tag, "--version").stdout
    assert version.strip() == "spoolship, version 0.1.0"
    probe = ("import importlib.util, json, os, shutil; print(json.dumps({'uid': os.getuid(), "
             f"'tools': [t for t in {list(BUILD_TOOLS)!r} if shutil.which(t)], "
             "'modules': [m for m in ('pip', 'setuptools', 'wheel') if importlib.util.find_spec(m)], "
             "'compiled': importlib.util.find_spec('tailer._speedups') is not None}))")
    found = json.loads(podman.run("run", "--rm", "--network", "host", "--read-only", "--entrypoint", "python",
                                  image.tag, "-c", probe).stdout)
    assert found == {"uid": 10001, "tools": [], "modules": [], "compiled": True}


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def status_of(url: str, **kwargs) -> int | None:
    try:
        return requests.get(url, timeout=5, **kwargs).status_code
    except requests.ConnectionError:
        return None


class RunningPod:
    """A PlayablePod under `podman play kube` on the host network, removed with its volumes after."""

    def __init__(self, podman: Podman, playable: PlayablePod, work: Path) -> None:
        self.podman, self.playable = podman, playable
        self.file = work / "pod.yaml"
        self.file.write_text(playable.yaml())

    def __enter__(self) -> RunningPod:
        self.remove()
        self.podman.run("play", "kube", "--network", "host", str(self.file), timeout=300)
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is not None:
            for name in ("receiver", "tailer"):
                print(f"--- logs of {name}:\n{self.logs(name)[-4000:]}")
        self.remove()

    def logs(self, container: str) -> str:
        """What the container wrote (spoolship logs JSON lines to stderr)."""
        result = self.podman.run("logs", f"{self.playable.name}-{container}", check=False)
        return result.stdout + result.stderr

    def remove(self) -> None:
        self.podman.run("pod", "rm", "--force", "--ignore", self.playable.name, timeout=300, check=False)
        volumes = self.playable.claims + [v["name"] for v in self.playable.pod["spec"]["volumes"] if "emptyDir" in v]
        for volume in volumes:
            self.podman.run("volume", "rm", "--force", volume, check=False)

    def inspect(self, container: str) -> dict:
        return json.loads(self.podman.run("inspect", f"{self.playable.name}-{container}").stdout)[0]

    def exec_python(self, container: str, code: str) -> str:
        return self.podman.run("exec", f"{self.playable.name}-{container}", "python", "-c", code).stdout

    def volume_path(self, claim: str) -> Path:
        return Path(self.podman.run("volume", "inspect", "--format", "{{.Mountpoint}}", claim).stdout.strip())

    def stop(self, grace_seconds: int) -> subprocess.CompletedProcess:
        """As the kubelet: SIGTERM to every container at once, SIGKILL after the grace period."""
        return self.podman.run("pod", "stop", "--time", str(grace_seconds), self.playable.name,
                               timeout=grace_seconds + 60)


def read_stream(endpoint: str, region: str, stream: str) -> list[dict]:
    client = boto3.client("kinesis", endpoint_url=endpoint, region_name=region,
                          aws_access_key_id="local", aws_secret_access_key="local")
    events = []
    for shard in client.list_shards(StreamName=stream)["Shards"]:
        iterator = client.get_shard_iterator(StreamName=stream, ShardId=shard["ShardId"],
                                             ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        while iterator:
            page = client.get_records(ShardIterator=iterator, Limit=10000)
            events += [json.loads(line) for record in page["Records"] for line in user_records(record)]
            iterator = page.get("NextShardIterator") if page["Records"] else None
    return events


def post(url: str, batch: list[dict], key: str | None = API_KEY) -> requests.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return requests.post(url + "/v1/events", json=batch, headers=headers, timeout=10)


def probe_url(playable: PlayablePod, container: str, kind: str) -> str:
    probe = playable.probes[container][kind]["httpGet"]
    port = playable.ports[container][probe["port"]] if isinstance(probe["port"], str) else probe["port"]
    return f"http://127.0.0.1:{port}{probe['path']}"


def test_the_statefulsets_pod_is_the_manifests_with_only_the_stated_adaptations(tmp_path):
    objects = render_overlay("overlays/production")
    template = statefulset(objects)["spec"]["template"]["spec"]
    playable = statefulset_pod(objects, image="localhost/spoolship:test", secret_dirs={"spoolship-api-keys": tmp_path},
                               config={"spoolship-tailer": {"SPOOLSHIP_ENDPOINT_URL": "http://127.0.0.1:1"}})
    spec = playable.pod["spec"]
    for ours, theirs in zip(spec["containers"], template["containers"], strict=True):
        moved = {k: theirs[k] for k in ("ports", "readinessProbe", "livenessProbe") if k in theirs}
        assert {k: v for k, v in theirs.items() if k not in moved and k != "image"} == \
               {k: v for k, v in ours.items() if k != "image"}
        assert playable.probes[ours["name"]] == {k: v for k, v in moved.items() if k != "ports"}
        assert ours["image"] == "localhost/spoolship:test"
    assert {k: v for k, v in spec.items() if k not in ("containers", "volumes", "hostname", "subdomain")} == \
           {k: v for k, v in template.items() if k not in ("containers", "volumes")}
    assert (spec["hostname"], spec["subdomain"]) == ("spoolship-0", "spoolship-headless")
    secrets = {v["name"] for v in template["volumes"] if "secret" in v}
    assert [v for v in spec["volumes"] if v["name"] not in secrets][:-1] == \
           [v for v in template["volumes"] if v["name"] not in secrets]
    assert spec["volumes"][-1] == {"name": "spool", "persistentVolumeClaim": {"claimName": "spool-spoolship-0"}}
    assert [v for v in spec["volumes"] if v["name"] in secrets] == \
           [{"name": name, "hostPath": {"path": str(tmp_path), "type": "Directory"}} for name in sorted(secrets)]
    assert len(playable.adaptations) == 2 * 2 + len(secrets) + 1, playable.adaptations
    with pytest.raises(ValueError, match="add, never override"):
        statefulset_pod(objects, image="x", secret_dirs={"spoolship-api-keys": tmp_path},
                        config={"spoolship-tailer": {"SPOOLSHIP_STREAM": "other"}})


def test_the_manifests_pod_ships_what_it_accepts_and_drains_on_sigterm(podman, image, moto, tmp_path):
    objects = render_overlay("overlays/production")
    settings = config_map(objects, "spoolship-tailer")["data"]
    stream = settings["SPOOLSHIP_STREAM"]
    region = next(settings[k] for k in ("SPOOLSHIP_REGION", "AWS_DEFAULT_REGION", "AWS_REGION") if k in settings)
    boto3.client("kinesis", endpoint_url=moto.endpoint, region_name=region, aws_access_key_id="local",
                 aws_secret_access_key="local").create_stream(StreamName=stream, ShardCount=1)
    keys = tmp_path / "api-keys"
    keys.mkdir(mode=0o755)
    (keys / "api-keys").write_text(f"# as the Secret spoolship-api-keys would hold them\n{API_KEY}\n")
    playable = statefulset_pod(objects, image=image.tag, secret_dirs={"spoolship-api-keys": keys}, config={
        "spoolship-tailer": {"SPOOLSHIP_ENDPOINT_URL": moto.endpoint,  # IRSA's stand-ins:
                             "AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"}})
    ports = [port for container in playable.ports.values() for port in container.values()]
    busy = [port for port in ports if not port_is_free(port)]
    if busy:
        pytest.skip(f"the manifests' ports {busy} are in use on this host (the pod runs on the host network)")
    receiver = f"http://127.0.0.1:{playable.ports['receiver']['http']}"
    # The receiver's /metrics is where the PodMonitor scrapes it: its probe port (--probe-port).
    receiver_metrics = f"http://127.0.0.1:{playable.ports['receiver']['probes']}/metrics"
    tailer_metrics = f"http://127.0.0.1:{playable.ports['tailer']['metrics']}/metrics"
    grace = statefulset(objects)["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]

    with RunningPod(podman, playable, tmp_path) as pod:
        ready, live = probe_url(playable, "receiver", "readinessProbe"), probe_url(playable, "tailer", "livenessProbe")
        deadline = time.monotonic() + 60
        while status_of(ready) != 200 or status_of(live) != 200:
            assert time.monotonic() < deadline, "receiver not ready or tailer not live within 60 s"
            time.sleep(0.2)
        assert status_of(probe_url(playable, "receiver", "livenessProbe")) == 200

        for name in ("receiver", "tailer"):
            assert_runs_as_the_security_context_says(pod, name)

        run = uuid.uuid4().hex[:8]
        events = {b: [{"type": "image-test", "run": run, "batch": b, "n": i} for i in range(50)] for b in "ABC"}
        assert post(receiver, events["A"], key=None).status_code == 401, "the key file is read"
        assert post(receiver, [{"no": "type"}]).status_code == 400, "the schema ConfigMap is read"
        assert post(receiver, events["A"]).status_code == 201
        wait_for_batches(moto.endpoint, region, stream, run, {"A"}, pod)

        # Metrics of the real image as deployed (two receiver workers): every name the dashboard and
        # the alerts use is there.
        live_metrics = exposed(requests.get(receiver_metrics, timeout=10).text,
                               requests.get(tailer_metrics, timeout=10).text)
        # the names only: some labelled series are born with their first event (a 503, a dead letter);
        # tests/integration/test_dashboards.py provokes each and checks the labels too. The route metrics
        # exist only with --config (this pod runs one route): test_dashboards.py checks them on a routed pair.
        problems = check(dashboard_queries() + alert_queries(), live_metrics, names_only=True)
        assert [p for p in problems if not any(name in p for name in route_only_metrics())] == []

        assert post(receiver, events["B"]).status_code == 201
        spool = pod.volume_path(playable.claims[0])
        assert list_segments(spool), "segments wait in the spool at SIGTERM"
        started = time.monotonic()
        stopping = threading.Thread(target=pod.stop, args=(grace,), daemon=True)
        stopping.start()
        deadline = time.monotonic() + 30
        while status_of(ready) != 503:  # unready at once, still serving during --shutdown-delay
            assert time.monotonic() < deadline, "the receiver did not turn unready after SIGTERM"
            time.sleep(0.05)
        assert post(receiver, events["C"]).status_code == 201
        stopping.join(grace + 90)
        stopped_after = time.monotonic() - started

        states = {name: pod.inspect(name)["State"] for name in ("receiver", "tailer")}
        assert {n: (s["ExitCode"], s.get("OOMKilled")) for n, s in states.items()} == \
               {"receiver": (0, False), "tailer": (0, False)}, states
        assert stopped_after < grace, f"the pod took {stopped_after:.0f} s of its {grace} s grace period"
        assert {pod.inspect(name)["RestartCount"] for name in ("receiver", "tailer")} == {0}
        arrived = wait_for_batches(moto.endpoint, region, stream, run, {"A", "B", "C"}, pod)
        assert {(e["batch"], e["n"]) for e in arrived} == {(b, e["n"]) for b in events for e in events[b]}
        assert list_segments(spool) == [], "the drained spool is empty"
        dead_letters = spool / "dead-letter"
        assert not dead_letters.exists() or not any(dead_letters.iterdir())


def route_only_metrics() -> set[str]:
    """The metrics a receiver exports only with --config (receiver/route_metrics.py)."""
    from prometheus_client import CollectorRegistry

    from receiver.route_metrics import RouteMetrics

    registry = CollectorRegistry()
    RouteMetrics(registry)
    return {metric.name for metric in registry.collect()}


def wait_for_batches(endpoint: str, region: str, stream: str, run: str, batches: set[str], pod: RunningPod) -> list[dict]:
    deadline = time.monotonic() + 60
    while True:
        arrived = [e for e in read_stream(endpoint, region, stream) if e.get("run") == run]
        if {e["batch"] for e in arrived} >= batches and len({(e["batch"], e["n"]) for e in arrived}) >= 50 * len(batches):
            return arrived
        assert time.monotonic() < deadline, (
            f"batches {batches} not all in stream {stream} ({region}) within 60 s: {len(arrived)} events; "
            f"tailer log:\n{pod.logs('tailer')[-3000:]}")
        time.sleep(0.5)


def assert_runs_as_the_security_context_says(pod: RunningPod, name: str) -> None:
    info = pod.inspect(name)
    host = info["HostConfig"]
    assert info["Config"]["User"] == "10001:10001"
    assert host["ReadonlyRootfs"] is True
    assert "no-new-privileges" in host["SecurityOpt"]
    assert host["CapAdd"] in (None, []) and "CAP_SETUID" in host["CapDrop"] and "CAP_CHOWN" in host["CapDrop"]
    probe = ("import json, os\n"
             "def writable(path):\n"
             "    try:\n"
             "        with open(os.path.join(path, '.probe'), 'w'): pass\n"
             "    except OSError as e:\n"
             "        return e.strerror\n"
             "    os.unlink(os.path.join(path, '.probe'))\n"
             "    return True\n"
             "status = dict(l.split(':', 1) for l in open('/proc/self/status') if ':' in l)\n"
             "print(json.dumps({'uid': os.getuid(), 'gid': os.getgid(), 'caps': status['CapEff'].strip(),\n"
             "                  'root': writable('/'), 'opt': writable('/opt/spoolship'),\n"
             "                  'spool': writable('/spool'), 'tmp': writable('/tmp')}))")
    seen = json.loads(pod.exec_python(name, probe))
    assert seen == {"uid": 10001, "gid": 10001, "caps": "0000000000000000", "root": "Read-only file system",
                    "opt": "Read-only file system", "spool": True, "tmp": True}, (name, seen)
