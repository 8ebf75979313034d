"""`spoolship rescue`: one pass of the scale-down rescue, run every minute by a CronJob.

Reads the StatefulSet, the ConfigMaps its tailer takes its environment from, its spool claims, the
namespace's pods and the drain Jobs, asks ``spoolship.rescue.plan_rescue`` what to do, and does it: deletes
the Jobs it names (the tailer in a deleted drain pod drains on SIGTERM), writes the claims' drained mark and
unserved streak, creates the drain Jobs it plans. Right before each create it reads the StatefulSet, the
pods and the claim's Jobs again and skips the drain if the ordinal is served or the claim used by now (a
scale-up between the first read and the create). Exit 0 when the pass went through (whatever it found), 1
when the StatefulSet is missing, the API could not be read or a call failed: the CronJob's history and
``SpoolshipRescueNotRunning`` show it, and the next minute tries again from scratch.

Before talking to the API it checks that this image's own ``spoolship tail`` accepts every ``--tail-arg``:
a rescue never plans a drain its own image cannot run. (The drain's image judges the rest itself: see
``spoolship.drain_job``.)
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from pathlib import Path

import click

from ..drain_job import configmaps_referenced
from ..kube import SERVICE_ACCOUNT_DIR, Conflict, KubeClient, KubeError, NotFound, in_cluster_client
from ..logs import configure_logging
from ..params import COMMAND_SETTINGS, option
from ..rescue import (
    CLAIM_LABEL,
    COMPONENT,
    DEFAULT_BACKOFF_LIMIT,
    DEFAULT_TAIL_ARGS,
    RescueError,
    RescuePlan,
    is_served,
    plan_rescue,
)

__all__ = ["rescue", "run_pass"]

log = logging.getLogger(__name__)


@click.command(context_settings=COMMAND_SETTINGS)
@option("--statefulset", default="spoolship", help="The StatefulSet whose scaled-down claims to drain.")
@option("--claim-template", default="spool", help="Its volumeClaimTemplate that holds the spool.")
@option("--container", default="tailer", help="Its container that a drain Job runs.")
@option("--tail-arg", "tail_args", multiple=True, default=DEFAULT_TAIL_ARGS,
        help="Argument added to the tailer's in a drain Job (repeatable).")
@option("--backoff-limit", type=click.IntRange(min=0), default=DEFAULT_BACKOFF_LIMIT,
        help="Failed drain pods before the drain Job counts as failed (evictions do not count).")
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
    check_tail_args(tail_args)
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


def check_tail_args(tail_args: tuple[str, ...]) -> None:
    """Refuse a --tail-arg option that this image's `spoolship tail` does not have (a drain would exit 2)."""
    from .tail import tail

    known = {opt for param in tail.params for opt in (*param.opts, *param.secondary_opts)}
    for arg in tail_args:
        flag = arg.split("=", 1)[0]
        if flag.startswith("-") and flag not in known:
            raise click.UsageError(f"--tail-arg {arg}: `spoolship tail` in this image has no option {flag}")


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


class _Paths:
    def __init__(self, namespace: str, statefulset: str) -> None:
        self.core = f"/api/v1/namespaces/{namespace}"
        self.statefulset = f"/apis/apps/v1/namespaces/{namespace}/statefulsets/{statefulset}"
        self.jobs = f"/apis/batch/v1/namespaces/{namespace}/jobs"


def run_pass(client: KubeClient, namespace: str, statefulset: str, *, claim_template: str, container: str,
             tail_args, backoff_limit: int, dry_run: bool = False) -> int:
    """Read, plan, act. Returns the exit code: 0, or 1 when the StatefulSet is missing or the API failed."""
    paths = _Paths(namespace, statefulset)
    try:
        workload = client.get(paths.statefulset)
        configmaps = {}
        for name in configmaps_referenced(workload, container):
            with contextlib.suppress(NotFound):  # drain_job says whether the tailer can do without it
                configmaps[name] = client.get(f"{paths.core}/configmaps/{name}")
        claims = client.list(f"{paths.core}/persistentvolumeclaims")
        pods = client.list(f"{paths.core}/pods")
        jobs = client.list(paths.jobs, label_selector=f"app.kubernetes.io/component={COMPONENT}")
    except NotFound:
        log.error("statefulset not found: nothing can drain its claims", extra={"statefulset": statefulset})
        return 1
    except KubeError as exc:
        log.error("rescue cannot read the cluster", extra={"error": str(exc)})
        return 1
    plan = plan_rescue(workload, claims, pods, jobs, claim_template=claim_template, container=container,
                       configmaps=configmaps, tail_args=tail_args, backoff_limit=backoff_limit)
    if dry_run:
        click.echo(json.dumps({"claims": plan.claims, "delete": list(plan.delete), "patch": plan.patch,
                               "create": list(plan.create)}, indent=2))
        return 0
    code = _apply(client, paths, plan)
    for claim, state in plan.claims.items():
        if state == "refused-by-image":
            log.error("drain refused by the image: fix the tailer's command line or settings",
                      extra={"claim": claim})
    log.info("rescue pass done", extra={"claims": plan.claims, "jobs_created": len(plan.create),
                                        "jobs_deleted": len(plan.delete), "claims_patched": len(plan.patch)})
    return code


def _apply(client: KubeClient, paths: _Paths, plan: RescuePlan) -> int:
    code = 0
    for name in plan.delete:
        try:
            client.delete(f"{paths.jobs}/{name}")
            log.info("drain job deleted", extra={"job": name})
        except NotFound:
            pass  # gone already: what we wanted
        except KubeError as exc:
            log.error("drain job not deleted", extra={"job": name, "error": str(exc)})
            code = 1
    for claim, patch in plan.patch.items():
        try:
            client.patch(f"{paths.core}/persistentvolumeclaims/{claim}", {"metadata": patch})
        except NotFound:
            pass
        except KubeError as exc:  # the next pass sees an older streak and, at worst, drains again
            log.error("claim not marked", extra={"claim": claim, "error": str(exc)})
            code = 1
    for job in plan.create:
        name, claim = job["metadata"]["name"], job["metadata"]["labels"][CLAIM_LABEL]
        try:
            reason = _served_now(client, paths, claim)
            if reason:
                log.info("drain skipped", extra={"job": name, "claim": claim, "reason": reason})
                continue
            client.create(paths.jobs, job)
            log.info("drain job created", extra={"job": name, "claim": claim})
        except Conflict:
            pass  # a pass that overlapped this one created it first (the name is per claim)
        except NotFound:
            log.error("statefulset not found: nothing can drain its claims", extra={"job": name})
            code = 1
        except KubeError as exc:
            log.error("drain job not created", extra={"job": name, "error": str(exc)})
            code = 1
    return code


def _served_now(client: KubeClient, paths: _Paths, claim: str) -> str | None:
    """Why the claim must not be drained now (read again, right before the create), or None."""
    workload = client.get(paths.statefulset)
    ordinal = int(claim.rsplit("-", 1)[1])
    if is_served(workload, ordinal):
        return "ordinal served"
    for pod in client.list(f"{paths.core}/pods"):
        if pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
            continue
        if any((v.get("persistentVolumeClaim") or {}).get("claimName") == claim
               for v in pod.get("spec", {}).get("volumes", [])):
            return f"mounted by {pod['metadata']['name']}"
    if client.list(paths.jobs, label_selector=f"{CLAIM_LABEL}={claim}"):
        return "a drain job exists"
    return None
