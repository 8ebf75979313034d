"""The kube-state-metrics series the shipped alerts use, with the labels each carries: pinned from its docs,
since no live kube-state-metrics runs here (tests/promql.py checks every alert against this table).

Copied from kubernetes/kube-state-metrics docs/metrics/ (workload/pod-metrics.md @ 04ee634c,
workload/job-metrics.md @ 076987a5, workload/statefulset-metrics.md @ 098e785d,
workload/cronjob-metrics.md @ 112ec602, storage/persistentvolumeclaim-metrics.md), all STABLE in v2.x except
kube_pod_deletion_timestamp (EXPERIMENTAL, on by default). `*_labels` metrics carry `label_<name>` only for
labels allowed by --metric-labels-allowlist.
"""

from __future__ import annotations

__all__ = ["KUBE_STATE_METRICS", "labels_allowed"]

_POD = {"namespace", "pod", "uid"}
_CONTAINER = _POD | {"container"}
_JOB = {"namespace", "job_name"}

KUBE_STATE_METRICS: dict[str, set[str]] = {
    "kube_pod_status_phase": _POD | {"phase"},
    "kube_pod_status_ready": _POD | {"condition"},
    "kube_pod_deletion_timestamp": _POD,
    "kube_pod_spec_volumes_persistentvolumeclaims_info": _POD | {"volume", "persistentvolumeclaim"},
    "kube_pod_container_status_ready": _CONTAINER,
    "kube_pod_container_status_waiting_reason": _CONTAINER | {"reason"},
    "kube_pod_container_status_restarts_total": _CONTAINER,
    "kube_persistentvolumeclaim_info": {"namespace", "persistentvolumeclaim", "storageclass", "volumename",
                                        "volumemode"},
    "kube_persistentvolumeclaim_labels": {"namespace", "persistentvolumeclaim"},
    "kube_statefulset_replicas": {"namespace", "statefulset"},
    "kube_statefulset_status_replicas_ready": {"namespace", "statefulset"},
    "kube_job_status_active": _JOB,
    "kube_job_status_succeeded": _JOB,
    "kube_job_status_failed": _JOB | {"reason"},
    "kube_job_status_start_time": _JOB,
    "kube_job_failed": _JOB | {"condition"},
    "kube_cronjob_status_last_successful_time": {"namespace", "cronjob"},
}


def labels_allowed(metric: str, label: str) -> bool:
    """Whether kube-state-metrics documents `label` on `metric` (or it is an allowlisted object label)."""
    if metric.endswith("_labels") and label.startswith("label_"):
        return True
    return label in KUBE_STATE_METRICS[metric]
