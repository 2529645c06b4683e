"""Kubernetes: each step's pod as dagster-k8s builds it (its own tag parsing, config merging and job
construction) from the assets' `dagster-k8s/config` tags over the Helm values' run config, and the
Helm chart rendered with the values where the chart is at hand."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from curation_assets.definitions import CURATE_JOB_NAME, build_definitions
from curation_assets.defs.shared.tags import GPU_NODE_SELECTOR

ROOT = Path(__file__).resolve().parents[1]
VALUES = ROOT / "deploy" / "kubernetes" / "values.yaml"
GPU_STEPS = {"clip_embeddings", "aesthetic_scores"}


def _values() -> dict:
    return yaml.safe_load(VALUES.read_text())


def step_pods() -> dict[str, object]:
    """``{step key: V1PodSpec}`` for every step of the curate_videos job, built by dagster-k8s."""
    from dagster._core.execution.api import create_execution_plan
    from dagster_k8s.container_context import K8sContainerContext
    from dagster_k8s.job import (
        DagsterK8sJobConfig,
        UserDefinedDagsterK8sConfig,
        construct_dagster_k8s_job,
        get_user_defined_k8s_config,
    )

    values = _values()
    deployment = values["dagster-user-deployments"]["deployments"][0]
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    run_k8s = {"container_config": launcher["runK8sConfig"]["containerConfig"]}
    # what the run launcher and the code location (includeConfigInLaunchedRuns) give every run
    base = K8sContainerContext(env=deployment["env"], env_secrets=[s["name"] for s in deployment["envSecrets"]],
                               run_k8s_config=UserDefinedDagsterK8sConfig.from_dict(run_k8s))
    job_def = build_definitions().resolve_job_def(CURATE_JOB_NAME)
    plan = create_execution_plan(job_def)
    image = f"{deployment['image']['repository']}:{deployment['image']['tag']}"
    pods = {}
    for step in plan.get_all_steps_in_topo_order():
        # as K8sStepHandler._get_container_context merges them
        context = base.merge(K8sContainerContext(run_k8s_config=get_user_defined_k8s_config(step.tags)))
        job = construct_dagster_k8s_job(
            DagsterK8sJobConfig(job_image=image, dagster_home="/opt/dagster/dagster_home",
                                instance_config_map="curation-dagster-instance"),
            args=["dagster", "api", "execute_step"], job_name=f"dagster-step-{step.key.replace('_', '-')}",
            user_defined_k8s_config=context.run_k8s_config, component="step_worker",
            env_vars=[{"name": "DAGSTER_RUN_STEP_KEY", "value": step.key}])
        pods[step.key] = job.spec.template.spec
    return pods


def test_the_model_steps_get_one_gpu_on_a_gpu_node_and_the_transcode_an_encoding_pod():
    pods = step_pods()
    assert set(pods) == {"video_clips", "aesthetic_scores", "clip_embeddings", "clip_captions", "clip_writer"}
    for key, pod in pods.items():
        (container,) = pod.containers
        resources = container.resources
        env = {e.name: e.value for e in container.env}
        assert env["CURATION_EXECUTOR"] == "k8s" and env["CURATION_WORK_PATH"].startswith("s3://"), key
        assert any(source.secret_ref.name == "curation-aws" for source in container.env_from if source.secret_ref)
        if key in GPU_STEPS:
            assert resources.limits["nvidia.com/gpu"] == "1" and resources.requests["nvidia.com/gpu"] == "1", key
            assert pod.node_selector == GPU_NODE_SELECTOR
            assert [(t.key, t.operator, t.effect) for t in pod.tolerations] == [("nvidia.com/gpu", "Exists", "NoSchedule")]
            assert int(resources.requests["cpu"]) >= 8  # the clip decoding that feeds the model
        else:
            assert "nvidia.com/gpu" not in (resources.limits or {}) and not pod.node_selector and not pod.tolerations, key
    assert pods["video_clips"].containers[0].resources.requests["cpu"] == "16"
    # the light steps keep the run's small pod, merged with their own tags
    assert pods["clip_writer"].containers[0].resources.requests == {"cpu": "1", "memory": "2Gi"}


def test_the_values_use_the_k8s_run_launcher_external_postgres_and_s3():
    values = _values()
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert values["postgresql"]["enabled"] is False and values["postgresql"]["postgresqlHost"]
    env = {e["name"]: e["value"] for e in values["dagster-user-deployments"]["deployments"][0]["env"]}
    assert all(env[f"CURATION_{k}_PATH"].startswith("s3://") for k in ("INPUT", "OUTPUT", "WORK"))


CHART_ENV = "DAGSTER_HELM_CHART"


@pytest.mark.skipif(not os.environ.get(CHART_ENV),
                    reason=f"{CHART_ENV} names no chart: the dagster Helm chart is on no package registry CI "
                           "reaches (docs/deployment.md, 'helm template')")
def test_the_helm_chart_renders_with_the_values():
    import helm_python as helm

    with helm.Chart.load(os.environ[CHART_ENV]) as chart:
        chart.validate_schema(_values())
        manifests = chart.render(_values(), name="curation", namespace="curation")
    rendered = "\n".join(manifests.values())
    assert "K8sRunLauncher" in rendered and "dagster_postgres" in rendered
    assert "registry.example.com/curation-assets:0.1.0" in rendered and "curation_assets.definitions" in rendered
