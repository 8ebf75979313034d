"""`spoolship rescue`: one pass of the scale-down rescue, run every minute by a CronJob.

Reads the StatefulSet, its spool claims, the namespace's pods and the drain Jobs, asks
``spoolship.rescue.plan_rescue`` what to do, and does it: deletes the Jobs it names (the tailer in a
deleted drain pod drains on SIGTERM), creates the drain Jobs it plans. Exit 0 when the pass went through
(whatever it found), 1 when the API could not be read or a call failed: the CronJob's history shows it
and the next minute tries again, from scratch (nothing is kept between passes).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import click

from ..kube import SERVICE_ACCOUNT_DIR, Conflict, KubeClient, KubeError, NotFound, in_cluster_client
from ..logs import configure_logging
from ..params import COMMAND_SETTINGS, option
from ..rescue import (
    CLAIM_LABEL,
    COMPONENT,
    DEFAULT_BACKOFF_LIMIT,
    DEFAULT_TAIL_ARGS,
    RescueError,
    plan_rescue,
)

__all__ = ["rescue"]

log = logging.getLogger(__name__)


@click.command(context_settings=COMMAND_SETTINGS)
@option("--statefulset", default="spoolship", help="The StatefulSet whose scaled-down claims to drain.")
@option("--claim-template", default="spool", help="Its volumeClaimTemplate that holds the spool.")
@option("--container", default="tailer", help="Its container that a drain Job runs.")
@option("--tail-arg", "tail_args", multiple=True, default=DEFAULT_TAIL_ARGS,
        help="Argument added to the tailer's in a drain Job (repeatable).")
@option("--backoff-limit", type=click.IntRange(min=0), default=DEFAULT_BACKOFF_LIMIT,
        help="Restarts of a drain Job's tailer before the Job counts as failed.")
@option("--namespace", help="Namespace (default: the pod's own, from its service account).")
@option("--api-server", help="API server URL (default: in-cluster, from KUBERNETES_SERVICE_HOST/PORT).")
@option("--service-account-dir", type=click.Path(file_okay=False, path_type=Path), default=SERVICE_ACCOUNT_DIR,
        help="Where the token, ca.crt and namespace are mounted.")
@option("--dry-run", is_flag=True, help="Print the plan as JSON; change nothing.")
@option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info")
def rescue(statefulset: str, claim_template: str, container: str, tail_args: tuple[str, ...], backoff_limit: int,
           namespace: str | None, api_server: str | None, service_account_dir: Path, dry_run: bool,
           log_level: str) -> None:
    """Drain the spool claims of scaled-down StatefulSet ordinals with Jobs, once."""
    configure_logging(log_level)
    try:
        client = _client(api_server, service_account_dir)
        namespace = namespace or (service_account_dir / "namespace").read_text().strip()
    except (KubeError, OSError) as exc:
        raise click.ClickException(f"cannot reach the Kubernetes API: {exc}") from None
    try:
        code = run_pass(client, namespace, statefulset, claim_template=claim_template, container=container,
                        tail_args=tail_args, backoff_limit=backoff_limit, dry_run=dry_run)
    except RescueError as exc:
        raise click.ClickException(str(exc)) from None
    sys.exit(code)


def _client(api_server: str | None, service_account_dir: Path) -> KubeClient:
    if api_server:
        import ssl

        ca = service_account_dir / "ca.crt"
        context = ssl.create_default_context(cafile=str(ca) if ca.exists() else None)
        token = service_account_dir / "token"
        return KubeClient(api_server, token if token.exists() else None, context)
    host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    if not host:
        raise KubeError("not in a cluster (no KUBERNETES_SERVICE_HOST); pass --api-server")
    return in_cluster_client(host, port, service_account_dir)


def run_pass(client: KubeClient, namespace: str, statefulset: str, *, claim_template: str, container: str,
             tail_args, backoff_limit: int, dry_run: bool = False) -> int:
    """Read, plan, act. Returns the exit code: 0, or 1 when the API failed somewhere."""
    core, jobs_path = f"/api/v1/namespaces/{namespace}", f"/apis/batch/v1/namespaces/{namespace}/jobs"
    try:
        workload = client.get(f"/apis/apps/v1/namespaces/{namespace}/statefulsets/{statefulset}")
        claims = client.list(f"{core}/persistentvolumeclaims")
        pods = client.list(f"{core}/pods")
        jobs = client.list(jobs_path, label_selector=f"app.kubernetes.io/component={COMPONENT}")
    except NotFound:
        log.warning("statefulset not found; nothing to rescue", extra={"statefulset": statefulset})
        return 0
    except KubeError as exc:
        log.error("rescue cannot read the cluster", extra={"error": str(exc)})
        return 1
    plan = plan_rescue(workload, claims, pods, jobs, claim_template=claim_template, container=container,
                       tail_args=tail_args, backoff_limit=backoff_limit)
    if dry_run:
        click.echo(json.dumps({"claims": plan.claims, "delete": list(plan.delete),
                               "create": list(plan.create)}, indent=2))
        return 0
    code = 0
    for name in plan.delete:
        try:
            client.delete(f"{jobs_path}/{name}")
            log.info("drain job deleted", extra={"job": name})
        except NotFound:
            pass  # gone already: what we wanted
        except KubeError as exc:
            log.error("drain job not deleted", extra={"job": name, "error": str(exc)})
            code = 1
    for job in plan.create:
        name = job["metadata"]["name"]
        try:
            client.create(jobs_path, job)
            log.info("drain job created", extra={"job": name, "claim": job["metadata"]["labels"][CLAIM_LABEL]})
        except Conflict:
            pass  # a pass that overlapped this one created it first
        except KubeError as exc:
            log.error("drain job not created", extra={"job": name, "error": str(exc)})
            code = 1
    log.info("rescue pass done", extra={"claims": plan.claims, "jobs_created": len(plan.create),
                                        "jobs_deleted": len(plan.delete)})
    return code
