"""The deployable cluster definitions under cluster/, checked offline.

KubeRay manifests and the MLflow server: every pod template and core object goes through the
Kubernetes client's own models, and a field a model does not know is an error, not silently
dropped. Then what matters on a cluster: the GPU group, autoscaling, one image and one Ray
version everywhere, the tracking server and S3 on every Ray pod, no credential written inline.
The RayService's Serve config is a fresh ``ray-mlops serve --export`` and passes Serve's own
schema; the ``ray up`` YAML passes the schema shipped inside the Ray wheel; the Dockerfiles
pin the versions the project is tested with.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from importlib.util import find_spec
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import jsonschema
import pytest
import tomllib
import yaml
from kubernetes.client import ApiClient
from packaging.requirements import Requirement
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]
CLUSTER = REPO / "cluster"
KUBERAY = ["raycluster.yaml", "rayjob.yaml", "rayservice.yaml", "monitor-cronjob.yaml"]
S3_SECRET = "ray-mlops-s3"
DB_SECRET = "mlflow-postgres"
GPU = "nvidia.com/gpu"
# An env var holding one of these is a credential: it must come from a Secret.
CREDENTIAL = re.compile(r"PASSWORD|SECRET|TOKEN|ACCESS_KEY|^PGUSER$|^POSTGRES_USER$")
# user:password@ in a URI (postgresql://mlflow:hunter2@db/...).
URI_WITH_PASSWORD = re.compile(r"\w+://[^/\s:@]+:[^/\s@]+@")


def _documents(name: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all((CLUSTER / name).read_text()) if doc]


def _ray_cluster_spec(name: str) -> dict[str, Any]:
    """The RayCluster spec inside a RayCluster, RayJob, RayCronJob or RayService."""
    doc = _documents(name)[0]
    if doc["kind"] == "RayCronJob":  # each run is a RayJob of its jobTemplate
        return dict(doc["spec"]["jobTemplate"]["rayClusterSpec"])
    field = {"RayCluster": None, "RayJob": "rayClusterSpec", "RayService": "rayClusterConfig"}
    return doc["spec"] if field[doc["kind"]] is None else doc["spec"][field[doc["kind"]]]


def _groups(name: str) -> list[tuple[str, dict[str, Any]]]:
    """(group name, group spec): the head group first, then the worker groups."""
    spec = _ray_cluster_spec(name)
    workers = [(group["groupName"], group) for group in spec["workerGroupSpecs"]]
    return [("head", spec["headGroupSpec"]), *workers]


def _containers(node: Any) -> Iterator[dict[str, Any]]:
    """Every container and init container anywhere in a parsed manifest."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("containers", "initContainers") and isinstance(value, list):
                yield from value
            else:
                yield from _containers(value)
    elif isinstance(node, list):
        for item in node:
            yield from _containers(item)


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {var["name"]: var for var in container.get("env", [])}


def _secret_ref(var: dict[str, Any]) -> dict[str, Any] | None:
    return (var.get("valueFrom") or {}).get("secretKeyRef")


class _Body:
    """What ``ApiClient.deserialize`` reads from an API response: its JSON body."""

    def __init__(self, obj: Any) -> None:
        self.data = json.dumps(obj)


def _dropped(given: Any, parsed: Any, path: str = "") -> list[str]:
    """Keys of ``given`` that did not survive the model round trip."""
    if isinstance(given, dict):
        if not isinstance(parsed, dict):
            return [path or "."]
        lost = [f"{path}.{key}" for key in given if key not in parsed]
        return lost + [
            item
            for key, value in given.items()
            if key in parsed
            for item in _dropped(value, parsed[key], f"{path}.{key}")
        ]
    if isinstance(given, list):
        return [
            item
            for i, value in enumerate(given)
            for item in _dropped(value, parsed[i], f"{path}[{i}]")
        ]
    return []


def as_model(obj: dict[str, Any], kind: str) -> Any:
    """``obj`` as the Kubernetes client's model ``kind`` (``V1PodTemplateSpec``...).

    The client fills a model from the fields it knows and ignores the rest, so the model is
    written back and every field of ``obj`` must still be there: a misspelled or misplaced
    field fails here instead of vanishing on ``kubectl apply``.
    """
    client = ApiClient()
    model = client.deserialize(_Body(obj), kind)
    lost = _dropped(obj, client.sanitize_for_serialization(model))
    assert not lost, f"{kind}: fields the Kubernetes model does not know: {lost}"
    return model


def _dockerfile(name: str) -> dict[str, Any]:
    """A Dockerfile's base image (build args resolved), WORKDIR, COPYs and pip installs."""
    text = (CLUSTER / name).read_text()
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", text, re.MULTILINE))

    def resolve(value: str) -> str:
        return re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], value)

    copies = []  # (source, destination) for each source of each COPY
    for line in text.splitlines():
        if line.startswith("COPY "):
            *sources, destination = [word for word in line.split()[1:] if not word.startswith("--")]
            copies += [(source, destination) for source in sources]
    return {
        "from": resolve(re.search(r"^FROM (\S+)", text, re.MULTILINE).group(1)),
        "workdir": re.search(r"^WORKDIR (\S+)", text, re.MULTILINE).group(1),
        "copies": copies,
        "pip": [resolve(cmd) for cmd in re.findall(r"^RUN (pip install .*)$", text, re.MULTILINE)],
        "args": args,
    }


def _base_image(image: str) -> tuple[str, str, str]:
    """rayproject/ray:2.60.0-py311-cpu -> ("2.60.0", "py311", "cpu")."""
    match = re.fullmatch(r"rayproject/ray:(\d+\.\d+\.\d+)-(py\d+)-(\w+)", image)
    assert match, f"not a pinned Ray image: {image}"
    return match.group(1), match.group(2), match.group(3)


def _torch_install(commands: list[str]) -> tuple[str, str]:
    """(version, wheel index flavour) of the ``pip install torch==...`` among ``commands``."""
    line = next(cmd for cmd in commands if "torch==" in cmd)
    version = re.search(r"torch==([\d.]+)", line).group(1)
    index = re.search(r"--index-url https://download\.pytorch\.org/whl/(\w+)", line)
    assert index, f"torch without PyTorch's index (PyPI's build may differ): {line}"
    return version, index.group(1)


def _pyproject() -> dict[str, Any]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def _requirement(name: str) -> Requirement:
    deps = [Requirement(dep) for dep in _pyproject()["project"]["dependencies"]]
    return next(dep for dep in deps if dep.name == name)


def _serve_document() -> dict[str, Any]:
    return yaml.safe_load(_documents("rayservice.yaml")[0]["spec"]["serveConfigV2"])


def _cpu_image() -> str:
    return f"ray-mlops:{_pyproject()['project']['version']}"


def _cuda_image() -> str:
    return f"{_cpu_image()}-{_dockerfile('Dockerfile.cuda')['args']['CUDA']}"


def _tracking_uri() -> str:
    """The tracking server's in-cluster URL, from the mlflow Service itself."""
    service = next(
        d for d in _documents("mlflow-server.yaml")
        if d["kind"] == "Service" and d["metadata"]["name"] == "mlflow"
    )  # fmt: skip
    port = service["spec"]["ports"][0]["port"]
    return f"http://mlflow.default.svc.cluster.local:{port}"


# -- Kubernetes objects -----------------------------------------------------------------------


@pytest.mark.parametrize("name", KUBERAY)
def test_every_ray_pod_template_is_a_kubernetes_pod_template(name: str) -> None:
    for group, spec in _groups(name):
        template = as_model(spec["template"], "V1PodTemplateSpec")
        assert template.spec.containers, f"{name} {group}: no container"
    options = _ray_cluster_spec(name)["autoscalerOptions"]
    as_model(options["resources"], "V1ResourceRequirements")


def test_the_mlflow_server_objects_are_kubernetes_objects() -> None:
    kinds = [doc["kind"] for doc in _documents("mlflow-server.yaml")]
    for doc in _documents("mlflow-server.yaml"):
        model = as_model(doc, f"V1{doc['kind']}")
        assert model.metadata.name
    # The database runs here unless the README's external-database route is taken.
    assert sorted(kinds) == ["Deployment", "Service", "Service", "StatefulSet"]


def test_a_field_the_kubernetes_model_does_not_know_is_reported() -> None:
    template = copy.deepcopy(dict(_groups("raycluster.yaml"))["cpu-workers"]["template"])
    container = template["spec"]["containers"][0]
    container["resource"] = container.pop("resources")  # a typo kubectl would drop
    with pytest.raises(AssertionError, match=r"\.spec\.containers\[0\]\.resource\b"):
        as_model(template, "V1PodTemplateSpec")


# -- what a cluster needs -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["raycluster.yaml", "rayjob.yaml", "monitor-cronjob.yaml"])
def test_the_gpu_group_asks_for_gpus_on_gpu_nodes_and_scales_from_zero(name: str) -> None:
    gpu_groups = []
    for group, spec in _groups(name):
        template = as_model(spec["template"], "V1PodTemplateSpec")
        limits = [c.resources.limits or {} for c in template.spec.containers]
        if any(GPU in limit for limit in limits):
            gpu_groups.append((group, spec, template))
    assert [group for group, _, _ in gpu_groups] == ["gpu-workers"]
    _, spec, template = gpu_groups[0]
    container = template.spec.containers[0]
    # Extended resources cannot be overcommitted: a request must equal the limit.
    assert int(container.resources.limits[GPU]) >= 1
    assert container.resources.requests[GPU] == container.resources.limits[GPU]
    assert container.image == _cuda_image()
    tolerations = [(t.key, t.effect) for t in template.spec.tolerations or []]
    assert (GPU, "NoSchedule") in tolerations
    assert template.spec.node_selector
    assert spec["minReplicas"] == 0 and spec["maxReplicas"] >= 1


@pytest.mark.parametrize("name", KUBERAY)
def test_in_tree_autoscaling_sizes_every_worker_group(name: str) -> None:
    spec = _ray_cluster_spec(name)
    assert spec["enableInTreeAutoscaling"] is True
    options = spec["autoscalerOptions"]
    assert options["upscalingMode"] in ("Default", "Aggressive", "Conservative")
    assert options["idleTimeoutSeconds"] > 0
    for group in spec["workerGroupSpecs"]:
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"], group["groupName"]
    for group, group_spec in _groups(name):
        for container in group_spec["template"]["spec"]["containers"]:
            # Ray's CPUs and memory come from the limits; the scheduler places by requests.
            resources = container["resources"]
            for key in ("cpu", "memory"):
                assert resources["requests"][key] == resources["limits"][key], (name, group)


def test_every_manifest_runs_the_project_image_and_the_dockerfiles_ray() -> None:
    ray_version, _, _ = _base_image(_dockerfile("Dockerfile")["from"])
    for name in KUBERAY:
        spec = _ray_cluster_spec(name)
        assert spec["rayVersion"] == ray_version, name
        for group, group_spec in _groups(name):
            images = {c["image"] for c in group_spec["template"]["spec"]["containers"]}
            expected = _cuda_image() if group.startswith("gpu") else _cpu_image()
            assert images == {expected}, (name, group)
    deployment = next(d for d in _documents("mlflow-server.yaml") if d["kind"] == "Deployment")
    (mlflow,) = deployment["spec"]["template"]["spec"]["containers"]
    assert mlflow["image"] == _cpu_image()


@pytest.mark.parametrize("name", KUBERAY)
def test_every_ray_pod_reaches_the_tracking_server_and_the_bucket(name: str) -> None:
    for group, spec in _groups(name):
        for container in spec["template"]["spec"]["containers"]:
            env = _env(container)
            assert env["MLFLOW_TRACKING_URI"]["value"] == _tracking_uri(), (name, group)
            for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
                ref = _secret_ref(env[key])
                assert ref == {"name": S3_SECRET, "key": key}, (name, group, key)
            # AWS itself needs no endpoint; S3-compatible stores put one in the Secret.
            endpoint = _secret_ref(env["AWS_ENDPOINT_URL"])
            assert endpoint == {"name": S3_SECRET, "key": "AWS_ENDPOINT_URL", "optional": True}


def _inline_credentials(manifest: Any) -> list[str]:
    """Credentials written into a parsed manifest instead of read from a Secret."""
    found = []
    for container in _containers(manifest):
        for name, var in _env(container).items():
            if CREDENTIAL.search(name) and ("value" in var or _secret_ref(var) is None):
                found.append(f"{container['name']}: {name}")
    return found


def test_no_credential_is_written_into_a_manifest() -> None:
    for path in sorted(CLUSTER.rglob("*.yaml")):
        text = path.read_text()
        assert not URI_WITH_PASSWORD.search(text), path
        for doc in yaml.safe_load_all(text):
            assert not _inline_credentials(doc), path
            # Secrets are created by hand (cluster/README.md), never committed.
            assert not (isinstance(doc, dict) and doc.get("kind") == "Secret"), path
    refs = {
        _secret_ref(var)["name"]
        for name in [*KUBERAY, "mlflow-server.yaml"]
        for doc in _documents(name)
        for container in _containers(doc)
        for var in container.get("env", [])
        if _secret_ref(var)
    }
    assert refs == {S3_SECRET, DB_SECRET}
    # The check itself catches the two ways of getting it wrong.
    leaky = {"containers": [{"name": "c", "env": [{"name": "PGPASSWORD", "value": "x"}]}]}
    assert _inline_credentials(leaky) == ["c: PGPASSWORD"]
    assert URI_WITH_PASSWORD.search("postgresql+psycopg2://mlflow:hunter2@db:5432/mlflow")


def test_mlflow_keeps_runs_in_postgresql_and_artifacts_in_s3() -> None:
    from sqlalchemy.engine import make_url

    docs = {(d["kind"], d["metadata"]["name"]): d for d in _documents("mlflow-server.yaml")}
    database = docs[("StatefulSet", "mlflow-postgres")]
    db_service = docs[("Service", "mlflow-postgres")]
    (postgres,) = database["spec"]["template"]["spec"]["containers"]
    (mlflow,) = docs[("Deployment", "mlflow")]["spec"]["template"]["spec"]["containers"]
    command = mlflow["command"]
    assert command[:2] == ["mlflow", "server"] and "--serve-artifacts" in command
    option = {key: command[i + 1] for i, key in enumerate(command) if key.startswith("--")}

    url = make_url(option["--backend-store-uri"])
    assert (url.host, url.port) == (
        db_service["metadata"]["name"],
        db_service["spec"]["ports"][0]["port"],
    )
    assert url.database == _env(postgres)["POSTGRES_DB"]["value"]
    # The login comes from libpq's PGUSER/PGPASSWORD, the same Secret keys the database uses.
    assert url.username is None and url.password is None
    mlflow_env, postgres_env = _env(mlflow), _env(postgres)
    assert _secret_ref(mlflow_env["PGUSER"]) == _secret_ref(postgres_env["POSTGRES_USER"])
    assert _secret_ref(mlflow_env["PGPASSWORD"]) == _secret_ref(postgres_env["POSTGRES_PASSWORD"])
    assert _secret_ref(mlflow_env["PGUSER"])["name"] == DB_SECRET
    # SQLAlchemy loads the URI's driver: psycopg2 (the cluster extra), not its default psycopg 3.
    assert url.get_dialect().import_dbapi().__name__ == "psycopg2"
    extra = {
        Requirement(r).name for r in _pyproject()["project"]["optional-dependencies"]["cluster"]
    }
    assert {"psycopg2-binary", "boto3"} <= extra
    assert "/app[cluster]" in _dockerfile("Dockerfile")["pip"][-1]

    assert urlparse(option["--artifacts-destination"]).scheme == "s3"
    assert _secret_ref(mlflow_env["AWS_SECRET_ACCESS_KEY"])["name"] == S3_SECRET
    host = urlparse(_tracking_uri()).hostname
    assert f"{host}:*" in option["--allowed-hosts"].split(",")
    # The Services reach the pods they are meant for.
    assert database["spec"]["serviceName"] == db_service["metadata"]["name"]
    labels = database["spec"]["template"]["metadata"]["labels"]
    assert db_service["spec"]["selector"].items() <= labels.items()
    assert "sqlite" not in (CLUSTER / "mlflow-server.yaml").read_text().lower()


def test_the_rayservice_serves_what_the_rayjob_trains_where_it_trains_it() -> None:
    from ray_mlops.config import load_config

    spec = _documents("rayjob.yaml")[0]["spec"]
    program, command, config_path = spec["entrypoint"].split()
    assert (program, command) == ("ray-mlops", "run")
    copied = {src.rstrip("/") for src, _ in _dockerfile("Dockerfile")["copies"]}
    assert config_path.split("/")[0] in copied  # the image holds the job's config
    trained = load_config(REPO / config_path).pipeline
    served = load_config(REPO / _serve_document()["applications"][0]["args"]["config"]).pipeline
    assert served.model_name == trained.model_name
    assert urlparse(trained.workspace.storage or "").scheme == "s3"
    assert served.workspace.storage == trained.workspace.storage
    # The job's tracking server is the pods' MLFLOW_TRACKING_URI unless its config names one.
    assert trained.tracking.tracking_uri in (None, _tracking_uri())
    assert served.tracking.tracking_uri == _tracking_uri()


# -- the RayService's Serve config ------------------------------------------------------------


def test_the_rayservice_serve_config_is_a_fresh_export_of_its_config(tmp_path: Path) -> None:
    committed = _serve_document()
    config = committed["applications"][0]["args"]["config"]
    out = tmp_path / "serve.yaml"
    done = subprocess.run(
        [sys.executable, "-m", "ray_mlops", "serve", config, "--export", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert committed == yaml.safe_load(out.read_text()), (
        "cluster/rayservice.yaml is stale: run python cluster/make_rayservice.py"
    )


def test_make_rayservice_check_catches_a_stale_manifest(tmp_path: Path) -> None:
    script = [sys.executable, str(CLUSTER / "make_rayservice.py"), "--check"]
    fresh = subprocess.run(script, capture_output=True, text=True, timeout=120)
    assert fresh.returncode == 0, fresh.stderr
    stale = tmp_path / "rayservice.yaml"
    shutil.copy(CLUSTER / "rayservice.yaml", stale)
    text = stale.read_text()
    assert "min_replicas: 2" in text
    stale.write_text(text.replace("min_replicas: 2", "min_replicas: 3"))
    done = subprocess.run([*script, "--manifest", str(stale)], capture_output=True, text=True)
    assert done.returncode == 1
    assert "run python cluster/make_rayservice.py" in done.stderr


def test_the_rayservice_serve_config_passes_serves_schema_and_ships_its_config() -> None:
    from ray.serve.schema import ServeDeploySchema

    from ray_mlops.serve.launch import IMPORT_PATH

    parsed = ServeDeploySchema.model_validate(_serve_document())
    (app,) = parsed.applications
    assert app.import_path == IMPORT_PATH
    assert app.args["tracking_uri"] == _tracking_uri()
    # build_app reads the config on the cluster, relative to the image's WORKDIR.
    config = app.args["config"]
    for name in ("Dockerfile", "Dockerfile.cuda"):
        image = _dockerfile(name)
        assert (config, f"{image['workdir']}/{config}") in image["copies"], name
        # BuildKit sends only what the image's allow-list names.
        allowed = (CLUSTER / f"{name}.dockerignore").read_text().splitlines()
        for source, _ in image["copies"]:
            assert f"!{source}" in allowed, (name, source)


def test_every_rayservice_pod_has_the_proxy_environment_the_export_asks_for() -> None:
    """Serve starts its proxies with the cluster's environment, not the application's."""
    wanted = _serve_document()["applications"][0]["runtime_env"]["env_vars"]
    proxy = {key: value for key, value in wanted.items() if key.startswith("RAY_SERVE_")}
    assert "RAY_SERVE_ENABLE_HA_PROXY" in proxy
    for group, spec in _groups("rayservice.yaml"):
        for container in spec["template"]["spec"]["containers"]:
            env = {name: var.get("value") for name, var in _env(container).items()}
            assert {key: env.get(key) for key in proxy} == proxy, group


# -- ray up and the images ------------------------------------------------------------------


def _ray_up() -> dict[str, Any]:
    return yaml.safe_load((CLUSTER / "ray-up" / "aws.yaml").read_text())


def _ray_schema() -> dict[str, Any]:
    """The cluster YAML schema inside the installed Ray wheel (found without importing Ray)."""
    spec = find_spec("ray")
    assert spec is not None and spec.submodule_search_locations
    root = Path(next(iter(spec.submodule_search_locations)))
    return json.loads((root / "autoscaler" / "ray-schema.json").read_text())


def test_the_ray_up_yaml_passes_the_schema_in_the_ray_wheel() -> None:
    config, schema = _ray_up(), _ray_schema()
    jsonschema.validate(config, schema)
    assert config["head_node_type"] in config["available_node_types"]
    # The schema rejects what Ray would: a misspelled node type key.
    broken = copy.deepcopy(config)
    broken["available_node_types"]["gpu-worker"]["min_worker"] = 0
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)


def test_the_ray_up_nodes_install_the_project_at_the_tested_pins() -> None:
    config = _ray_up()
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert head["resources"] == {"CPU": 0}
    gpu = [name for name, node in types.items() if node["resources"].get("GPU", 0) >= 1]
    cpu = [name for name, node in types.items() if name not in gpu and node is not head]
    assert gpu and cpu
    for name in gpu:
        assert types[name]["node_config"]["InstanceType"].startswith(("g5.", "g6.", "p4", "p5"))
    makefile_torch = re.search(r"torch==([\d.]+)", (REPO / "Makefile").read_text()).group(1)
    project = str(next(iter(config["file_mounts"])))
    for name, node in types.items():
        setup = (
            config["head_setup_commands"]
            if node is head
            else node.get("worker_setup_commands", config["worker_setup_commands"])
        )
        image = (node.get("docker") or {}).get("worker_image", config["docker"]["image"])
        ray_version, python, flavour = _base_image(image)
        assert (ray_version, python) == _base_image(_dockerfile("Dockerfile")["from"])[:2], name
        # torch first, its build matching the node's image, then the project.
        assert _torch_install(setup) == (makefile_torch, flavour), name
        install = setup[-1]
        assert "torch" not in install and "[cluster]" in install, name
        assert project.replace("~", "$HOME") in install, name
    assert _base_image(types[gpu[0]]["docker"]["worker_image"]) == _base_image(
        _dockerfile("Dockerfile.cuda")["from"]
    )


def test_the_dockerfiles_pin_the_ray_python_and_torch_the_project_is_tested_with() -> None:
    makefile_torch = re.search(r"torch==([\d.]+)", (REPO / "Makefile").read_text()).group(1)
    cpu, cuda = _dockerfile("Dockerfile"), _dockerfile("Dockerfile.cuda")
    ray_version, python, flavour = _base_image(cpu["from"])
    assert flavour == "cpu"
    assert _requirement("ray").specifier.contains(Version(ray_version))
    assert _requirement("torch").specifier.contains(Version(makefile_torch))
    assert _torch_install(cpu["pip"]) == (makefile_torch, "cpu")
    # The GPU image: the same Ray and Python, and torch built for the base image's CUDA.
    cuda_ray, cuda_python, cuda_flavour = _base_image(cuda["from"])
    assert (cuda_ray, cuda_python) == (ray_version, python)
    assert cuda_flavour.startswith("cu")
    assert _torch_install(cuda["pip"]) == (makefile_torch, cuda_flavour)
    for image in (cpu, cuda):
        assert image["copies"] == cpu["copies"]
        assert image["pip"][-1] == 'pip install --no-cache-dir "/app[cluster]"'


def test_the_monitor_cronjob_judges_what_the_rayjob_trains_on_a_schedule() -> None:
    (cron,) = _documents("monitor-cronjob.yaml")
    # Five cron fields (minute hour day month weekday), as Kubernetes CronJobs take them.
    field = r"(\*|\d+(-\d+)?)(/\d+)?(,(\*|\d+(-\d+)?)(/\d+)?)*"
    assert cron["kind"] == "RayCronJob"
    assert re.fullmatch(rf"{field}( {field}){{4}}", cron["spec"]["schedule"])
    job = cron["spec"]["jobTemplate"]
    trained = _documents("rayjob.yaml")[0]["spec"]
    command = job["entrypoint"].split()
    assert command[:2] == ["ray-mlops", "monitor"] and "--fail-on-breach" in command
    # The same config the RayJob trains with: the same model, capture and monitoring section.
    assert command[2] == trained["entrypoint"].split()[-1]
    assert job["submissionMode"] == trained["submissionMode"]
    assert job["rayClusterSpec"] == trained["rayClusterSpec"]


# -- Ray's token authentication (CVE-2023-48022) ---------------------------------------------

RAY_TOKEN_SECRET = "ray-mlops-ray-token"


@pytest.mark.parametrize("name", KUBERAY)
def test_every_kuberay_cluster_requires_the_ray_token_of_a_secret(name: str) -> None:
    """KubeRay's authOptions put RAY_AUTH_MODE=token and the Secret's token on every Ray pod
    and on the RayJob's submitter; nothing turns it off or writes a token inline."""
    assert _ray_cluster_spec(name)["authOptions"] == {
        "mode": "token",
        "secretName": RAY_TOKEN_SECRET,
    }
    for container in _containers(_documents(name)):
        env = _env(container)
        assert env.get("RAY_AUTH_MODE", {}).get("value", "token") == "token", container["name"]
        assert "value" not in env.get("RAY_AUTH_TOKEN", {}), container["name"]
    readme = (CLUSTER / "README.md").read_text()
    assert f"kubectl create secret generic {RAY_TOKEN_SECRET}" in readme


def test_the_ray_up_nodes_start_ray_with_token_auth_and_a_loopback_dashboard() -> None:
    config = _ray_up()
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        starts = [command for command in config[key] if "ray start" in command]
        assert starts and all("RAY_AUTH_MODE=token" in command for command in starts), key
    head = next(command for command in config["head_start_ray_commands"] if "ray start" in command)
    # `ray dashboard` forwards the Jobs API over SSH: nothing else needs to reach it.
    assert "--dashboard-host=127.0.0.1" in head
    assert config["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
