"""`spoolship rescue` as a real process against a Kubernetes-API stand-in over real HTTPS (127.0.0.1, port 0).

The stand-in serves the objects a cluster would (the fixtures of tests/unit/test_rescue_plan.py), pages
lists one item at a time (``continue``), checks the bearer token, and records every write. The planning
rules themselves are tested in tests/unit/test_rescue_plan.py; this shows the command reads, authenticates,
verifies TLS, acts, and reports failure by its exit code.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import ssl
import subprocess
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.unit.test_rescue_plan import CONFIGMAPS, claim, job, pod, statefulset

TOKEN = "test-service-account-token"
NS = "spoolship"


def self_signed(directory: Path, name: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class FakeKube:
    """The collections the rescue reads, one StatefulSet, its tailer's ConfigMap, and a log of writes.

    ``after_listed[collection]``: called once, after the first full list of it (a change racing the pass)."""

    def __init__(self) -> None:
        self.statefulset: dict | None = statefulset(replicas=2)
        self.configmaps = dict(CONFIGMAPS)
        self.collections = {"persistentvolumeclaims": [], "pods": [], "jobs": []}
        self.writes: list[tuple[str, str, dict]] = []
        self.auth: set[str] = set()
        self.refuse_create = False
        self.after_listed: dict = {}
        self.lock = threading.Lock()


def handler_for(kube: FakeKube):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep the test output clean
            pass

        def answer(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def route(self, method: str) -> None:
            with kube.lock:
                kube.auth.add(self.headers.get("Authorization", ""))
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                return self.answer(401, {"kind": "Status", "reason": "Unauthorized", "message": "no token"})
            url = urllib.parse.urlsplit(self.path)
            query = urllib.parse.parse_qs(url.query)
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            parts = url.path.strip("/").split("/")
            if url.path == f"/apis/apps/v1/namespaces/{NS}/statefulsets/spoolship" and method == "GET":
                if kube.statefulset is None:
                    return self.answer(404, {"kind": "Status", "reason": "NotFound", "message": "not found"})
                return self.answer(200, kube.statefulset)
            if parts[-2] == "configmaps" and method == "GET":
                if parts[-1] not in kube.configmaps:
                    return self.answer(404, {"kind": "Status", "reason": "NotFound", "message": "not found"})
                return self.answer(200, kube.configmaps[parts[-1]])
            collection = parts[-1] if parts[-1] in kube.collections else parts[-2]
            if method == "GET":
                items = kube.collections[collection]
                selector = query.get("labelSelector", [""])[0]
                if selector:
                    key, value = selector.split("=")
                    items = [i for i in items if i["metadata"].get("labels", {}).get(key) == value]
                index = int(query.get("continue", ["0"])[0])  # one item per page, to exercise paging
                more = {"continue": str(index + 1)} if index + 1 < len(items) else {}
                if not more and collection in kube.after_listed:
                    kube.after_listed.pop(collection)()
                return self.answer(200, {"kind": "List", "metadata": more, "items": items[index:index + 1]})
            with kube.lock:
                kube.writes.append((method, url.path, body))
            if method == "POST":
                if kube.refuse_create:
                    return self.answer(403, {"kind": "Status", "reason": "Forbidden", "message": "jobs is forbidden"})
                kube.collections["jobs"].append(body)
                return self.answer(201, body)
            if method == "DELETE":
                kube.collections[collection] = [o for o in kube.collections[collection]
                                                if o["metadata"]["name"] != parts[-1]]
                return self.answer(200, {"kind": "Status", "status": "Success"})
            if method == "PATCH" and collection == "persistentvolumeclaims":
                if self.headers.get("Content-Type") != "application/merge-patch+json":
                    return self.answer(415, {"kind": "Status", "reason": "UnsupportedMediaType", "message": "?"})
                [target] = [o for o in kube.collections[collection] if o["metadata"]["name"] == parts[-1]]
                for part, values in body["metadata"].items():
                    for key, value in values.items():
                        meta = target["metadata"].setdefault(part, {})
                        meta.pop(key, None) if value is None else meta.__setitem__(key, value)
                return self.answer(200, target)
            return self.answer(405, {})

        def do_GET(self):
            self.route("GET")

        def do_POST(self):
            self.route("POST")

        def do_DELETE(self):
            self.route("DELETE")

        def do_PATCH(self):
            self.route("PATCH")

    return Handler


@pytest.fixture()
def api(tmp_path):
    kube = FakeKube()
    cert, key = self_signed(tmp_path, "apiserver")
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(kube))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    accounts = tmp_path / "serviceaccount"
    accounts.mkdir()
    (accounts / "token").write_text(TOKEN + "\n")
    (accounts / "namespace").write_text(NS)
    (accounts / "ca.crt").write_bytes(cert.read_bytes())
    kube.url = f"https://127.0.0.1:{server.server_address[1]}"
    kube.accounts = accounts
    try:
        yield kube
    finally:
        server.shutdown()
        server.server_close()


def run_rescue(kube: FakeKube, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "spoolship", "rescue", "--api-server", kube.url,
                           "--service-account-dir", str(kube.accounts), *extra],
                          capture_output=True, text=True, timeout=60)


def jobs_written(kube: FakeKube) -> list[tuple[str, str]]:
    return [(method, path.rsplit("/", 1)[-1]) for method, path, _ in kube.writes if method != "PATCH"]


def test_one_pass_drains_the_scaled_down_claim_and_stops_a_drain_whose_ordinal_came_back(api):
    api.collections["persistentvolumeclaims"] = [claim(0), claim(1), claim(2)]
    api.collections["pods"] = [pod(0), pod(1)]
    api.collections["jobs"] = [job(1)]  # ordinal 1 is served again
    done = run_rescue(api)
    assert done.returncode == 0, done.stderr
    assert api.auth == {f"Bearer {TOKEN}"}
    assert jobs_written(api) == [("DELETE", "spoolship-drain-1"), ("POST", "jobs")]
    [created] = [body for method, _path, body in api.writes if method == "POST"]
    assert created["metadata"]["name"] == "spoolship-drain-2"
    volumes = created["spec"]["template"]["spec"]["volumes"]
    assert {"name": "spool", "persistentVolumeClaim": {"claimName": "spool-spoolship-2"}} in volumes
    [tailer] = created["spec"]["template"]["spec"]["containers"]
    assert {"name": "SPOOLSHIP_STREAM", "value": "events-prod"} in tailer["env"], "the ConfigMap, copied"
    assert [body for method, _path, body in api.writes if method == "DELETE"][0]["propagationPolicy"] == "Background"
    assert "drain job created" in done.stderr
    patched = {path.rsplit("/", 1)[-1] for method, path, _ in api.writes if method == "PATCH"}
    assert patched == {"spool-spoolship-2"}, "the unserved streak starts on the scaled-down claim"


def test_a_second_pass_changes_nothing(api):
    api.collections["persistentvolumeclaims"] = [claim(0), claim(1), claim(2)]
    api.collections["pods"] = [pod(0), pod(1)]
    assert run_rescue(api).returncode == 0
    writes = len(api.writes)
    assert run_rescue(api).returncode == 0
    assert len(api.writes) == writes, "the running drain Job is left to finish"


def test_a_drained_claim_is_marked_and_an_hpa_step_does_not_drain_it_again(api):
    """The review's scenario C through the real command: drained, then generation 7 -> 8 -> 9, one per pass."""
    api.collections["persistentvolumeclaims"] = [claim(0), claim(1), claim(2)]
    api.collections["pods"] = [pod(0), pod(1)]
    assert run_rescue(api).returncode == 0
    [drain] = api.collections["jobs"]
    drain["status"] = {"conditions": [{"type": "Complete", "status": "True"}]}
    assert run_rescue(api).returncode == 0
    marked = api.collections["persistentvolumeclaims"][2]["metadata"]
    assert marked["labels"]["spoolship.io/drained"] == "true"
    for generation in (8, 9):  # two HPA steps (3 -> 2 -> 3 would serve it: that one the pass would see)
        api.statefulset["metadata"]["generation"] = generation
        done = run_rescue(api)
        assert done.returncode == 0, done.stderr
    assert jobs_written(api) == [("POST", "jobs")], "drained once, never again"
    assert marked["annotations"]["spoolship.io/unserved-generations"].endswith("/7-9")
    api.statefulset["metadata"]["generation"] = 11  # a spec the rescue never saw: it might have served 2
    assert run_rescue(api).returncode == 0
    assert jobs_written(api) == [("POST", "jobs"), ("DELETE", "spoolship-drain-2")]
    assert "spoolship.io/drained" not in marked["labels"]


def test_a_scale_up_between_reading_and_creating_skips_the_drain(api):
    """The review's scenario E: the StatefulSet was read at 2 replicas; by the create it serves ordinal 2."""
    api.collections["persistentvolumeclaims"] = [claim(0), claim(1), claim(2)]
    api.collections["pods"] = [pod(0), pod(1)]

    def scale_up():
        api.statefulset = statefulset(replicas=3, generation=8)
        api.collections["pods"].append(pod(2, phase="Pending"))

    api.after_listed["pods"] = scale_up
    done = run_rescue(api)
    assert done.returncode == 0, done.stderr
    assert jobs_written(api) == [], "no drain pod beside the ingest pod on one claim"
    assert "drain skipped" in done.stderr and "ordinal served" in done.stderr


def test_a_drain_job_created_meanwhile_by_another_pass_skips_the_drain(api):
    api.collections["persistentvolumeclaims"] = [claim(2)]

    def other_pass():
        api.collections["jobs"].append(job(2))

    api.after_listed["jobs"] = other_pass
    done = run_rescue(api)
    assert done.returncode == 0 and jobs_written(api) == []
    assert "a drain job exists" in done.stderr


def test_dry_run_prints_the_plan_and_writes_nothing(api):
    api.collections["persistentvolumeclaims"] = [claim(2)]
    done = run_rescue(api, "--dry-run")
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert shown["claims"] == {"spool-spoolship-2": "drain-started"}
    assert [j["metadata"]["name"] for j in shown["create"]] == ["spoolship-drain-2"]
    assert api.writes == []


def test_an_unknown_certificate_authority_is_refused(api, tmp_path):
    other, _ = self_signed(tmp_path, "impostor")
    (api.accounts / "ca.crt").write_bytes(other.read_bytes())
    api.collections["persistentvolumeclaims"] = [claim(2)]
    done = run_rescue(api)
    assert done.returncode == 1
    assert "certificate verify failed" in done.stderr.lower()
    assert api.writes == []


def test_a_refused_write_fails_the_pass(api):
    api.collections["persistentvolumeclaims"] = [claim(2)]
    api.refuse_create = True
    done = run_rescue(api)
    assert done.returncode == 1
    assert "drain job not created" in done.stderr and "Forbidden" in done.stderr


def test_a_missing_statefulset_fails_the_pass(api):
    """Deleted (or never there): nothing drains its claims, so the CronJob must show a failure."""
    api.statefulset = None
    api.collections["persistentvolumeclaims"] = [claim(2)]
    done = run_rescue(api)
    assert done.returncode == 1 and "statefulset not found" in done.stderr
    assert api.writes == []


def test_a_missing_tailer_configmap_fails_the_pass_and_starts_nothing(api):
    api.configmaps = {}
    api.collections["persistentvolumeclaims"] = [claim(2)]
    done = run_rescue(api)
    assert done.returncode == 1 and "spoolship-tailer-8dhctkdht7" in done.stderr
    assert api.writes == []


def test_a_refused_drain_is_kept_and_reported(api):
    api.collections["persistentvolumeclaims"] = [claim(2)]
    api.collections["jobs"] = [job(2, state="refused")]
    done = run_rescue(api)
    assert done.returncode == 0
    assert jobs_written(api) == [] and "drain refused by the image" in done.stderr


def test_a_tail_arg_this_images_tailer_does_not_have_is_refused_before_any_call(api):
    api.collections["persistentvolumeclaims"] = [claim(2)]
    done = run_rescue(api, "--tail-arg", "--exit-when-drained")
    assert done.returncode == 2 and "no option --exit-when-drained" in done.stderr
    assert api.auth == set() and api.writes == []


def test_outside_a_cluster_it_says_so(tmp_path):
    done = subprocess.run([sys.executable, "-m", "spoolship", "rescue", "--service-account-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=60,
                          env={k: v for k, v in __import__("os").environ.items() if k != "KUBERNETES_SERVICE_HOST"})
    assert done.returncode == 1 and "KUBERNETES_SERVICE_HOST" in done.stderr
