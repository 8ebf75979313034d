"""The Grafana dashboard and the PrometheusRule alerts shipped with the production overlay name only
metrics, labels and label values that a live receiver and tailer expose, and thresholds that agree
with the StatefulSet's settings; so the dashboards, the alerts and the code cannot drift apart.

The live processes are real (`spoolship receive --workers 2`, as in the pod, and `spoolship tail`
against moto), driven until every labelled series the queries use exists: 201s, a 400, 503s at a
tiny spool cap, a torn segment's dead letter, throttled PutRecords calls, an archive it cannot write.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests
import yaml

from spooler import FsyncPolicy, SpoolWriter, WriterConfig, list_segments, parse_size
from tests.helpers import Proc, start_receiver, start_tailer, wait_until
from tests.podman_pod import config_map, render_overlay, statefulset
from tests.promql import (
    ALERTS,
    DASHBOARD,
    EXTERNAL_METRICS,
    Exposed,
    Query,
    alert_queries,
    check,
    dashboard_queries,
    exposed,
    groupings,
    parse,
    scalar,
    selectors,
)
from tests.servers.fault_proxy import FaultProxy

ISSUE_ALERTS = {  # what operators asked for (issue 15) -> the alert that answers it
    "tailer not shipping": "SpoolshipTailerNotShipping",
    "backlog age growing": "SpoolshipBacklogAgeGrowing",
    "spool near its cap": "SpoolshipSpoolNearCap",
    "dead letters appearing": "SpoolshipDeadLetters",
    "503s": "SpoolshipReceiverAnswering503",
}
REVIEW_ALERTS = {  # what the deploy review found unalerted -> the alert that answers it
    "a drain Job that crash-loops": "SpoolshipDrainFailing",
    "a drain the image cannot run": "SpoolshipDrainRefused",
    "a drain pod that cannot start": "SpoolshipDrainPodStuck",
    "an ingest pod that cannot start (no IP, no scrape target)": "SpoolshipIngestPodNotRunning",
    "the receiver down or unready": "SpoolshipReceiverDown",
    "every pod unready (the ingress's own 503)": "SpoolshipNoReadyReceivers",
    "a CronJob that never succeeded": "SpoolshipRescueNotRunning",
    "a missing StatefulSet": "SpoolshipStatefulSetMissing",
    "a pod stuck terminating on a lost node": "SpoolshipPodStuckTerminating",
}


def status_of(url: str) -> int | None:
    """The status of a GET, None while nothing listens (a supervisor's workers are starting)."""
    try:
        return requests.get(url, timeout=5).status_code
    except requests.ConnectionError:
        return None


def metrics_text(url: str) -> str:
    response = requests.get(url, timeout=10)
    assert response.status_code == 200, response.text
    return response.text


def tailer_metrics_url(tailer: Proc) -> str:
    return f"http://127.0.0.1:{tailer.wait_for_log('metrics listening')['port']}/metrics"


def write_torn_segment(spool_dir: Path) -> None:
    """A sealed segment whose last line has no newline: the tailer dead-letters that line."""
    with SpoolWriter(WriterConfig(spool_dir, "torn", min_free_bytes=0, fsync=FsyncPolicy.NEVER)) as writer:
        writer.append(b'{"type":"ok","n":1}\n')
    [segment] = list_segments(spool_dir)
    with open(segment.path, "ab") as f:
        f.write(b'{"type":"torn"')


ROUTES = """
spool_dir = "{spool}"
[routing]
field = "type"
default = "events"
[routes.events]
destination = "main"
[routes.clicks]
destination = "main"
values = ["click"]
max_spool_bytes = "1MiB"
[routes.bad]
destination = "main"
[destinations.main]
type = "kinesis"
stream = "{stream}"
endpoint_url = "{endpoint}"
"""


def routed_metrics(moto, root: Path) -> list[str]:
    """/metrics of `receive --config` and `tail --config` (route labels, the bad route), after events for two
    routes and a rejected beacon, with a stray segment of an old layout at the spool root."""
    spool = root / "spool"
    with SpoolWriter(WriterConfig(spool, "old-layout", min_free_bytes=0, fsync=FsyncPolicy.NEVER)) as writer:
        writer.append(b'{"type":"old"}\n')
    write_torn_segment(spool / "clicks")  # a dead letter of the clicks route
    config = root / "routes.toml"
    config.write_text(ROUTES.format(spool=spool, stream=moto.create_stream(shards=1), endpoint=moto.endpoint))
    receiver, url = start_receiver(spool, "--config", str(config), "--invalid", "keep", "--workers", "2")
    try:
        wait_until(lambda: status_of(url + "/readyz") == 200, 30, message="routed receiver ready")
        events = [{"type": "click", "n": 1}, {"type": "page", "n": 2}]
        assert requests.post(url + "/v1/events", json=events, timeout=10).status_code == 201
        assert requests.post(url + "/v1/events", data=b"{not json", headers={"Content-Type": "text/plain"},
                             timeout=10).status_code == 400
        receiver_text = metrics_text(url + "/metrics")
    finally:
        receiver.stop()
    archive = root / "archive"
    archive.mkdir()
    (archive / "clicks").write_text("")  # the clicks loop's archive cannot be written: spool_errors{route}
    tailer = Proc("tail", "--config", str(config), "--metrics-port", "0", "--linger", "0.05",
                  "--poll-interval", "0.5", "--region", "us-east-1", "--archive-dir", str(archive),
                  "--drain-timeout", "1")
    try:
        tailer_url = tailer_metrics_url(tailer)

        def born() -> bool:
            text = metrics_text(tailer_url)
            return ('spoolship_tailer_lines_shipped_total{route="clicks"} 2.0' in text
                    and 'spoolship_tailer_dead_letters_total{reason=' in text.replace('route="clicks",', '')
                    and 'spoolship_tailer_spool_errors_total{' in text)

        wait_until(born, 60, message="the routed tailer shipped, dead-lettered and failed to archive on clicks")
        return [receiver_text, metrics_text(tailer_url)]
    finally:
        tailer.stop()


@pytest.fixture(scope="module")
def live(moto, tmp_path_factory) -> Exposed:
    """/metrics of a receiver and a tailer that went through every path the queries look at, and of a routed
    receiver and tailer (--config)."""
    routed = routed_metrics(moto, tmp_path_factory.mktemp("routed"))
    spool_dir = tmp_path_factory.mktemp("dashboards") / "spool"
    spool_dir.mkdir()
    write_torn_segment(spool_dir)
    receiver, url = start_receiver(spool_dir, "--workers", "2", "--max-spool-bytes", "48KiB")
    wait_until(lambda: status_of(url + "/readyz") == 200, 30, message="receiver ready")
    assert requests.post(url + "/v1/events", data=b"{not json", headers={"Content-Type": "application/json"},
                         timeout=10).status_code == 400
    batch = [{"type": "dashboard", "n": i, "pad": "x" * 200} for i in range(20)]
    statuses = [requests.post(url + "/v1/events", json=batch, timeout=10).status_code for _ in range(60)]
    assert 201 in statuses and 503 in statuses, statuses

    stream = moto.create_stream(shards=1)
    proxy = FaultProxy(moto.port)
    proxy.call_throttle_rate = 1.0  # every call throttled until the tailer has counted some
    # An archive the tailer cannot write (a file where its directory should be): every shipped
    # segment's archive step fails and is retried, which is how spool_errors{operation} is born.
    # It is made a file once the tailer runs (the CLI refuses a file at start-up), while every call is
    # still throttled, so nothing can have been archived yet.
    unwritable_archive = spool_dir.parent / "archive-is-a-file"
    tailer = start_tailer(spool_dir, stream, proxy.endpoint, "--metrics-port", "0",
                          "--archive-dir", str(unwritable_archive))
    unwritable_archive.write_text("")
    tailer_url = tailer_metrics_url(tailer)
    try:
        wait_until(lambda: 'reason="throttled"' in metrics_text(tailer_url), 30, message="a throttled call")
        proxy.call_throttle_rate = 0.0
        wait_until(lambda: "spoolship_tailer_dead_letters_total{" in metrics_text(tailer_url)
                   and "spoolship_tailer_spool_bytes_behind 0.0" in metrics_text(tailer_url)
                   and "spoolship_tailer_spool_errors_total{" in metrics_text(tailer_url), 60,
                   message="the spool shipped, the torn line dead-lettered, the archive step failed")
        return exposed(metrics_text(url + "/metrics"), metrics_text(tailer_url), *routed)
    finally:
        unwritable_archive.unlink(missing_ok=True)  # the archive works again: the drain can finish
        receiver.stop()  # first: the tailer's drain waits for the receiver's segments to be sealed
        tailer.stop()
        proxy.close()


def test_every_metric_label_and_value_the_dashboard_and_alerts_use_is_live(live):
    queries = dashboard_queries() + alert_queries()
    assert len(queries) > 30
    assert check(queries, live) == []


def test_the_check_fails_on_a_misspelt_metric_a_missing_label_and_an_unseen_value(live):
    bad = {
        'rate(spoolship_tailer_lines_shiped_total[5m])': "is not exposed",
        'spoolship_tailer_spool_bytes_behind{shard="x"}': "has no label 'shard'",
        'spoolship_receiver_requests_rejected_total{reason="full"}': "never seen",
        'spoolshp_receiver_ready == 0': "neither exposed by spoolship nor a known external metric",
        '{__name__="spoolship_receiver_ready"}': "without a metric name",
        'kube_pod_status_phase{phse="Pending"}': "documents no label 'phse'",
        'kube_pod_staus_phase == 1': "neither exposed by spoolship nor a known external metric",
        'max by (statefulsett) (kube_statefulset_replicas)': "grouped by 'statefulsett'",
        'sum by (shard) (rate(spoolship_tailer_throttles_total[5m]))': "grouped by 'shard'",
    }
    for expr, problem in bad.items():
        [found] = check([Query("test", expr)], live)
        assert problem in found, (expr, found)


def test_queries_use_only_known_external_metrics_and_real_container_names():
    containers = {c["name"] for c in statefulset(render_overlay("overlays/production"))["spec"]["template"]["spec"]["containers"]}
    for query in dashboard_queries() + alert_queries():
        for name, matchers in selectors(query.expr):
            assert name and (name.startswith("spoolship_") or name in EXTERNAL_METRICS), (query.where, name)
            for label, _op, value in matchers:
                if label == "container":
                    assert value in containers, (query.where, value)


def threshold(alert: str) -> float:
    [query] = [q for q in alert_queries() if q.where == f"alert {alert}"]
    return scalar(parse(query.expr).rhs)


def test_spool_thresholds_agree_with_the_statefulsets_settings():
    sts = statefulset(render_overlay("overlays/production"))
    [receiver] = [c for c in sts["spec"]["template"]["spec"]["containers"] if c["name"] == "receiver"]
    args = dict(a.removeprefix("--").split("=", 1) for a in receiver["args"] if a.startswith("--") and "=" in a)
    assert threshold("SpoolshipSpoolNearCap") == pytest.approx(0.8 * parse_size(args["max-spool-bytes"]))
    assert threshold("SpoolshipSpoolDiskLow") == 2 * parse_size(args["min-free-bytes"])


def test_alerts_cover_what_operators_asked_for_and_each_says_what_and_how_bad():
    rules = [r for g in yaml.safe_load(ALERTS.read_text())["spec"]["groups"] for r in g["rules"]]
    names = [r["alert"] for r in rules]
    assert len(names) == len(set(names))
    assert set(ISSUE_ALERTS.values()) | set(REVIEW_ALERTS.values()) <= set(names)
    for rule in rules:
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]


def test_the_dashboard_ships_as_a_labelled_configmap_and_every_panel_queries_the_chosen_prometheus():
    objects = render_overlay("overlays/production")
    dashboards = config_map(objects, "spoolship-dashboards")
    assert dashboards["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dashboards["metadata"]["namespace"] == statefulset(objects)["metadata"]["namespace"]
    assert json.loads(dashboards["data"]["spoolship.json"]) == json.loads(DASHBOARD.read_text())

    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "spoolship"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["targets"], panel["title"]
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            assert all(t["datasource"]["uid"] == "${datasource}" for t in panel["targets"]), panel["title"]
    metrics = {name for q in dashboard_queries() for name, _ in selectors(q.expr)}
    assert len({m for m in metrics if m.startswith("spoolship_tailer_")}) >= 12
    assert len({m for m in metrics if m.startswith("spoolship_receiver_")}) >= 7


def test_live_processes_expose_nothing_the_dashboard_leaves_out(live):
    """Every spoolship metric has a panel: a new metric without one fails here."""
    shown = {name for q in dashboard_queries() for name, _ in selectors(q.expr)}
    families = {n.removesuffix("_total").removesuffix("_bucket") for n in shown}
    unshown = {n for n in live.names if n.startswith("spoolship_") and not n.endswith(("_created", "_sum", "_count"))
               and n.removesuffix("_total").removesuffix("_bucket") not in families}
    assert unshown == set(), f"metrics without a panel in {DASHBOARD.name}: {sorted(unshown)}"


# Alerts about the pod as a whole, where a route label would split what must be judged together.
POD_WIDE_ALERTS = {"SpoolshipTailerDown", "SpoolshipStraySegments"}


def test_alerts_on_per_route_series_keep_the_route(live):
    """Routes review, finding 7: with `tail --config`, `sum by (namespace, pod)` over every route let one
    route shipping hide another stuck for good (SpoolshipTailerNotShipping could not fire). Every alert that
    aggregates a metric carrying `route` on a live series keeps `route` in its grouping (without --config the
    label is absent and the alert is per pod, as before). Failed before the fix (NotShipping, BacklogAgeGrowing)."""
    problems = []
    for query in alert_queries():
        alert = query.where.removeprefix("alert ")
        if alert in POD_WIDE_ALERTS:
            continue
        for labels, names in groupings(query.expr):
            routed = [n for n in names if "route" in live.labels.get(n, {})]
            if routed and "route" not in labels:
                problems.append(f"{query.where}: by ({', '.join(labels)}) over {routed}")
    assert problems == []


def test_a_full_or_stuck_route_and_stray_segments_each_have_an_alert():
    exprs = {q.where.removeprefix("alert "): q.expr for q in alert_queries()}
    assert "spoolship_receiver_route_ready" in exprs["SpoolshipRouteNotReady"]
    assert "spoolship_receiver_route_max_spool_bytes" in exprs["SpoolshipRouteSpoolNearCap"]
    assert "spoolship_tailer_stray_bytes" in exprs["SpoolshipStraySegments"]
