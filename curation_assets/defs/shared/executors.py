"""Which Dagster executor runs a run's steps, chosen per deployment by ``CURATION_EXECUTOR``.

Dagster's own engines, nothing home-made: the default (unset) runs a run's steps in its one process
(``in_process``: a process per step costs seconds each, more than a short video's work;
``benchmarks/automation_overhead.py``); ``multiprocess`` is Dagster's process per step; ``celery``
sends each step to a Celery queue (``tags.CELERY_QUEUE_TAG``) with the broker and result backend
from ``DAGSTER_CELERY_BROKER_URL`` / ``DAGSTER_CELERY_BACKEND_URL`` (the same variables the workers'
``deploy/celery/dagster_celery_config.py`` reads); ``k8s`` runs each step in its own Kubernetes job
(``tags.K8S_CONFIG_TAG``), with the image, namespace and environment of the Helm chart's
``K8sRunLauncher``.
"""

from __future__ import annotations

import os

import dagster as dg

EXECUTOR_ENV = "CURATION_EXECUTOR"
BROKER_ENV = "DAGSTER_CELERY_BROKER_URL"
BACKEND_ENV = "DAGSTER_CELERY_BACKEND_URL"
EXECUTORS = ("multiprocess", "in_process", "celery", "k8s")
_EXTRA = {"celery": ("dagster_celery", "celery"), "k8s": ("dagster_k8s", "k8s")}


def executor_from_env(environ: dict[str, str] | None = None) -> dg.ExecutorDefinition:
    """The executor ``CURATION_EXECUTOR`` names (unset: in-process)."""
    environ = dict(os.environ if environ is None else environ)
    name = environ.get(EXECUTOR_ENV, "").strip().lower() or "in_process"
    if name not in EXECUTORS:
        raise ValueError(f"{EXECUTOR_ENV}={name!r}: choose one of {', '.join(EXECUTORS)}")
    if name == "multiprocess":
        return dg.multiprocess_executor
    if name == "in_process":
        return dg.in_process_executor
    module, extra = _EXTRA[name]
    try:
        engine = __import__(module)
    except ImportError:
        raise ValueError(f"{EXECUTOR_ENV}={name} needs {module.replace('_', '-')}: "
                         f"pip install 'curation-assets[{extra}]'") from None
    if name == "celery":
        missing = [v for v in (BROKER_ENV, BACKEND_ENV) if not environ.get(v)]
        if missing:
            raise ValueError(f"{EXECUTOR_ENV}=celery needs {' and '.join(missing)} (e.g. redis://host:6379/0)")
        return engine.celery_executor.configured(
            {"broker": {"env": BROKER_ENV}, "backend": {"env": BACKEND_ENV}}, name="celery")
    return engine.k8s_job_executor
