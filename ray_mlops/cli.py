"""The ``ray-mlops`` command line: run, serve, predict and submit a pipeline.

Every command takes the same pipeline config file; ``ray-mlops COMMAND --help`` explains
its options. Errors a user can fix print one message naming what and where, and exit
non-zero (2 for a bad config) without a traceback.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from ray_mlops.audit_cli import audit_app
from ray_mlops.console import cli_console
from ray_mlops.errors import ConfigError, RayMlopsError
from ray_mlops.monitor_cli import labels_app, monitor
from ray_mlops.registry_cli import models_app, promote, rollback
from ray_mlops.settings_env import apply_cli, apply_tracking

if TYPE_CHECKING:
    from ray_mlops.config import LoadedConfig
    from ray_mlops.governance.access import AccessControl
    from ray_mlops.workspace import Workspace
from ray_mlops.signing_cli import keys_app

app = typer.Typer(
    name="ray-mlops",
    help=(
        "Take a model through its whole life on Ray, from one config file: read and split the "
        "data, fit features, train with TorchTrainer, evaluate, register in MLflow, move the "
        "champion alias, and serve it over HTTP.\n\n"
        "Start with: ray-mlops run configs/quickstart.yaml"
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = cli_console(stderr=True)
CONFIG_ARG = typer.Argument(..., help="Pipeline config (YAML); see configs/quickstart.yaml.")
ADDRESS_OPT = typer.Option(
    None,
    "--address",
    help="Ray cluster to use (ray://host:10001 or host:6379). Default: $RAY_ADDRESS, else a "
    "local Ray bound to 127.0.0.1.",
)
VERBOSE_OPT = typer.Option(False, "--verbose", "-v", help="Show Ray's worker logs.")


RESUME_OPT = typer.Option(
    False,
    "--resume",
    help="Continue the newest unfinished run of this pipeline (killed, failed or Ctrl-C'd) "
    "instead of starting over: same MLflow runs, training from its last epoch checkpoint. "
    "Run it from the same working directory, with the same config.",
)
RUN_ID_OPT = typer.Option(
    None, "--run-id", help="With --resume: the MLflow parent run to continue."
)


@app.command()
def run(
    config: Path = CONFIG_ARG,
    address: str | None = ADDRESS_OPT,
    resume: bool = RESUME_OPT,
    run_id: str | None = RUN_ID_OPT,
    verbose: bool = VERBOSE_OPT,
) -> None:
    """Run the whole pipeline: data, features, train, evaluate, register, champion alias.

    With search.enabled, a hyperparameter search (see 'ray-mlops tune') replaces training.

    Tracks everything in MLflow (embedded SQLite under .ray-mlops/ unless
    $MLFLOW_TRACKING_URI or tracking.tracking_uri says otherwise) and prints a summary.
    """
    _run_command(config, address, resume, run_id, verbose, command="run")


@app.command()
def train(
    config: Path = CONFIG_ARG,
    address: str | None = ADDRESS_OPT,
    resume: bool = RESUME_OPT,
    run_id: str | None = RUN_ID_OPT,
    verbose: bool = VERBOSE_OPT,
) -> None:
    """Train and evaluate a model without registering it.

    Runs data, features, train and evaluate; logs the packaged model to MLflow.

    Workers: train.num_workers (CPU, or GPU with train.use_gpu).

    Every epoch: validation, a checkpoint; the best by train.selection_metric.

    Early stopping: train.early_stopping.patience.

    A failed worker is replaced from the last checkpoint (train.max_failures).

    An interrupted command continues with --resume, e.g. after Ctrl-C:
    ray-mlops train configs/quickstart.yaml --resume
    """
    _run_command(config, address, resume, run_id, verbose, command="train")


@app.command()
def tune(
    config: Path = CONFIG_ARG,
    address: str | None = ADDRESS_OPT,
    resume: bool = RESUME_OPT,
    run_id: str | None = RUN_ID_OPT,
    verbose: bool = VERBOSE_OPT,
) -> None:
    """Search hyperparameters with Ray Tune, then evaluate and register the best model.

    The space is search.space in the config: config paths mapped to
    {uniform: [lo, hi]}, {loguniform: [lo, hi]}, {int: [lo, hi]} or {choice: [...]},
    a choice may add sub-spaces under 'when'. search.mode: automl searches a ready space
    over model family, depth, width, dropout, learning rate, batch size and encodings.

    Trials are sampled by Optuna TPE (search.algorithm), weak ones stopped between epochs
    by ASHA (search.scheduler), as many at once as the cluster fits (search.trial_cpus,
    search.trial_gpus per worker; search.trial_workers > 1 runs each trial as a
    TorchTrainer of that many workers). Each trial is a nested MLflow run; the leaderboard
    (CSV, HTML) is an artifact of the search run.

    An interrupted search continues with --resume, without repeating finished trials:
    ray-mlops tune configs/search.yaml --resume
    """
    _run_command(config, address, resume, run_id, verbose, command="tune")


def _run_command(
    config: Path,
    address: str | None,
    resume: bool,
    run_id: str | None,
    verbose: bool,
    command: str,
) -> None:
    from ray_mlops.config import load_config
    from ray_mlops.preflight import preflight
    from ray_mlops.workspace import Workspace

    if run_id is not None and not resume:
        raise ConfigError("--run-id is only used with --resume")
    loaded = load_config(config)
    workspace = Workspace.of(loaded)
    # Refused before anything else; run_pipeline checks again for library callers.
    from ray_mlops.audit import actions

    cfg = loaded.pipeline
    _access(loaded, workspace).authorize(
        actions.RUN_START, cfg.name, model=cfg.model_name, details={"command": command}
    )
    preflight(loaded, workspace)
    # Imported after the checks above: a bad config fails before seconds of imports.
    from ray_mlops.pipeline import check_resumable, run_pipeline
    from ray_mlops.runtime import ray_runtime
    from ray_mlops.summary import print_run_summary

    if resume:
        check_resumable(loaded, command, run_id, workspace)
    with ray_runtime(address, verbose):
        result = run_pipeline(
            loaded,
            console,
            command=command,
            resume=resume,
            resume_run_id=run_id,
            workspace=workspace,
        )
    print_run_summary(result, str(config), console)


@app.command()
def data(
    config: Path = CONFIG_ARG,
    address: str | None = ADDRESS_OPT,
    verbose: bool = VERBOSE_OPT,
) -> None:
    """Run only the data stages: read, validate (quarantine), split, profile.

    Prints rows read, rows quarantined by reason (written to Parquet with a reason column),
    the dataset fingerprint, and where the profile (HTML and JSON) and the data contract are.
    Fails when the share of bad rows passes data.quarantine.max_bad_fraction.
    """
    from ray_mlops.config import load_config
    from ray_mlops.preflight import preflight
    from ray_mlops.workspace import Workspace

    loaded = load_config(config)
    workspace = Workspace.of(loaded)
    preflight(loaded, workspace)
    from ray_mlops.pipeline import run_data_stage
    from ray_mlops.runtime import ray_runtime
    from ray_mlops.summary import print_data_summary

    with ray_runtime(address, verbose):
        result = run_data_stage(loaded, console, workspace)
    print_data_summary(result, console)


@app.command()
def serve(
    config: Path = CONFIG_ARG,
    model: str | None = typer.Option(
        None, "--model", help="NAME@ALIAS to serve. Default: the config's model @champion."
    ),
    port: int | None = typer.Option(None, "--port", help="HTTP port (default: serve.port)."),
    address: str | None = ADDRESS_OPT,
    try_request: bool = typer.Option(
        False,
        "--try",
        help="Send one real prediction request (the model's input example), print request and "
        "response, then shut down. Without it, serve until Ctrl-C.",
    ),
    export: Path | None = typer.Option(
        None,
        "--export",
        help="Write a Serve config YAML (for `serve deploy` or a KubeRay RayService's "
        "serveConfigV2) to this file and exit, without serving.",
    ),
    verbose: bool = VERBOSE_OPT,
) -> None:
    """Serve the champion model over HTTP with Ray Serve (HAProxy ingress by default).

    REST: POST /v1/models/NAME:predict with {"records": [{column: value, ...}]} or
    {"columns": {column: [...]}} returns predictions, class probabilities and the version
    that answered; GET /v1/models/NAME describes the inputs with an example request.

    Open Inference Protocol v2 (KServe, Triton clients): /v2/health/live, /v2/health/ready,
    /v2/models/NAME, POST /v2/models/NAME/infer. Prometheus: /metrics. Docs: /docs.

    serve.autoscaling, serve.auth (API keys), serve.rate_limit, serve.capture (traffic
    sample to Parquet) and serve.rollout (canary or shadow of @challenger) in the config.
    Replicas follow the alias: promote a version and they switch without a failed request.
    """
    from ray_mlops.config import load_config
    from ray_mlops.runtime import stop_on_sigterm
    from ray_mlops.serve.launch import (
        deploy_model,
        serve_config,
        serving_runtime,
        stop_serving,
        write_serve_config,
    )
    from ray_mlops.workspace import Workspace

    loaded = load_config(config)
    workspace = Workspace.of(loaded)
    cfg = loaded.pipeline
    apply_tracking(cfg.tracking)
    if port is not None:
        cfg = cfg.model_copy(update={"serve": cfg.serve.model_copy(update={"port": port})})
    name, alias = _parse_model_ref(model)
    tracking_uri = workspace.tracking_uri(cfg.tracking.tracking_uri)
    if export is not None:
        # Writing a Serve config changes nothing (like `helm template`): neither guarded nor
        # audited, so it works where the cluster's tracking server and bucket do not
        # resolve. Applying it is the deployment; its replicas verify the model's signature.
        document = serve_config(cfg, str(config), tracking_uri, model)
        write_serve_config(document, export)
        console.print(f"wrote {export}: serve deploy {export}")
        return
    from ray_mlops.audit import actions

    access = _access(loaded, workspace)
    target = f"{name or cfg.model_name}@{alias or cfg.registry.champion_alias}"
    # Refused before Ray starts; deploy_model checks (and records) the deployment itself.
    access.authorize(actions.SERVE_DEPLOY, target, model=name or cfg.model_name)
    with serving_runtime(cfg, address, verbose, note=console.print):
        # After ray.init, whose own SIGTERM handler prints a stack and aborts the process: a
        # process manager's stop then drains and writes the capture, like Ctrl-C.
        stop_on_sigterm()
        with console.status("starting Ray Serve and loading the model..."):
            served = deploy_model(cfg, tracking_uri, name, alias, loaded.base_dir, workspace)
        console.print(
            f"[green]serving[/] {served.model_name}@{served.alias} (v{served.version}) at "
            f"{served.predict_url}"
        )
        try:
            if try_request:
                _try_one_request(served.base_url, served.model_name)
                return
            console.print("Ctrl-C (or SIGTERM) to stop; replicas drain for up to 30 s first.")
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
        finally:
            stop_serving()


@app.command()
def predict(
    input_file: Path = typer.Argument(
        ..., help='JSON file with {"records": [{...}, ...]} (or - for standard input).'
    ),
    model_name: str = typer.Option(..., "--model", help="Served model name."),
    url: str = typer.Option("http://127.0.0.1:8000", "--url", help="Model server base URL."),
) -> None:
    """Send records to a running model server and print its JSON answer."""
    import requests

    text = sys.stdin.read() if str(input_file) == "-" else _read_text(input_file)
    response = requests.post(
        f"{url}/v1/models/{model_name}:predict",
        data=text.encode(),
        headers={"Content-Type": "application/json"},
        timeout=60,
    )
    print(json.dumps(response.json(), indent=2))
    if response.status_code >= 400:
        raise typer.Exit(1)


@app.command()
def submit(
    config: Path = CONFIG_ARG,
    address: str = typer.Option(
        ..., "--address", help="The cluster's dashboard / Jobs API, e.g. http://127.0.0.1:8265."
    ),
    working_dir: Path = typer.Option(
        Path("."), "--working-dir", help="Folder uploaded as the job's working directory."
    ),
    agent_wait: float = typer.Option(
        30.0,
        "--agent-wait",
        min=0,
        help="Seconds to keep retrying while the cluster has no job agent ready (a cluster "
        "that has just started answers 'No available agent to submit job').",
    ),
) -> None:
    """Run the same pipeline as a Ray Job on a cluster, stream its logs, exit with its status.

    The job logs to $MLFLOW_TRACKING_URI (or the config's tracking URI); with the embedded
    SQLite default that only works for a cluster on this machine. .ray-mlops/ and .venv/ are
    not uploaded. A failed job prints Ray's reason and the end of its log, and exits 1.
    """
    from ray_mlops.config import load_config
    from ray_mlops.jobs.submit import submit_pipeline
    from ray_mlops.workspace import Workspace

    loaded = load_config(config)
    tracking_uri = Workspace.of(loaded).tracking_uri(loaded.pipeline.tracking.tracking_uri)
    outcome = submit_pipeline(
        config, address, tracking_uri, working_dir, echo=print, agent_wait_s=agent_wait
    )
    if outcome.status == "SUCCEEDED":
        console.print(f"job {outcome.job_id}: [green]SUCCEEDED[/]")
        return
    reason = f": {outcome.message}" if outcome.message else ""
    console.print(f"job {outcome.job_id}: [red]{outcome.status}[/]{reason}", highlight=False)
    if outcome.log_tail:
        console.print(f"last {len(outcome.log_tail)} lines of the job's log:")
        console.print("\n".join(outcome.log_tail), markup=False, highlight=False)
    console.print(f"all of it: ray job logs {outcome.job_id} --address {address}", highlight=False)
    raise typer.Exit(1)


def _parse_model_ref(ref: str | None) -> tuple[str | None, str | None]:
    if ref is None:
        return None, None
    name, _, alias = ref.partition("@")
    if not name or not alias:
        raise ConfigError(f"--model: expected NAME@ALIAS, got {ref!r}")
    return name, alias


def _read_text(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None


def _try_one_request(base_url: str, model_name: str) -> None:
    """GET the example request, POST it, print both sides."""
    import requests

    described = requests.get(f"{base_url}/v1/models/{model_name}", timeout=30).json()
    body: dict[str, Any] = {"records": described["example_request"]["records"][:1]}
    url = f"{base_url}/v1/models/{model_name}:predict"
    console.print(f"[bold]POST {url}[/]")
    print(json.dumps(body, indent=2))
    response = requests.post(url, json=body, timeout=30)
    console.print(f"[bold]{response.status_code}[/]")
    print(json.dumps(response.json(), indent=2))
    if response.status_code != 200:
        raise RayMlopsError(f"prediction request failed with HTTP {response.status_code}")


def _access(loaded: LoadedConfig | None, workspace: Workspace | None = None) -> AccessControl:
    """Who may act, per the config's ``governance`` (None: the working directory's
    workspace, no policy file; the tracking server's permissions still decide)."""
    from ray_mlops.config import GovernanceConfig
    from ray_mlops.governance.access import AccessControl
    from ray_mlops.workspace import Workspace

    if loaded is None:
        here = workspace or Workspace.here()
        return AccessControl.of(GovernanceConfig(), here, here.root, here.tracking_uri(None))
    workspace = workspace or Workspace.of(loaded)
    cfg = loaded.pipeline
    apply_tracking(cfg.tracking)
    # Only a tracking server can say who is acting; the embedded SQLite default is not
    # resolved here, since resolving it creates .ray-mlops/ (a refused or mistyped command
    # leaves nothing behind).
    tracking_uri = cfg.tracking.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or None
    return AccessControl.of(cfg.governance, workspace, loaded.base_dir, tracking_uri)


OPERATOR_CONFIG_OPT = typer.Option(
    None,
    "--config",
    "-c",
    help="Pipeline config: its workspace holds the audit log, its governance section the "
    "policy. Default: the working directory's workspace, no policy file.",
)


@app.command("serve-key")
def serve_key(
    name: str = typer.Argument(..., help="Who holds the key (shown in logs and limits)."),
    role: str = typer.Option("predict", "--role", help="predict, or admin (also /metrics)."),
    revoke: bool = typer.Option(
        False, "--revoke", help="Remove the key named NAME from the keys file instead."
    ),
    keys_file: Path | None = typer.Option(
        None,
        "--keys-file",
        help="Keys file to add the new entry to (created if missing) or to revoke from. "
        "Default with --config: its serve.auth.keys_file.",
    ),
    config: Path | None = OPERATOR_CONFIG_OPT,
) -> None:
    """Make an API key for serve.auth: prints the key once, and the entry to add to the
    config's serve.auth.keys (or its keys_file), which holds only the key's SHA-256.

    With --keys-file the entry is added to that file; --revoke removes a key from it
    (running servers drop it when redeployed). Needs the admin role; audited by name.
    """
    import yaml

    from ray_mlops.audit import actions
    from ray_mlops.config import load_config
    from ray_mlops.serve.guard import new_key_entry
    from ray_mlops.serve.keys_file import add_key_entry, keys_file_path, revoke_key_entry

    loaded = load_config(config) if config is not None else None
    path = keys_file
    if path is None and loaded is not None and loaded.pipeline.serve.auth.keys_file:
        path = keys_file_path(loaded.pipeline.serve.auth.keys_file, loaded.base_dir)
    if revoke and path is None:
        raise ConfigError(
            "serve-key --revoke: name the keys file (--keys-file, or --config "
            "with serve.auth.keys_file)"
        )
    access = _access(loaded)
    where = {"keys_file": str(path.resolve())} if path is not None else {}
    if revoke:
        assert path is not None
        access.authorize(actions.KEY_REVOKE, name)
        revoke_key_entry(path, name)
        access.record(actions.KEY_REVOKE, name, details=where)
        console.print(f"revoked key {name!r} in {path}; redeploy to drop it from running servers")
        return
    access.authorize(actions.KEY_CREATE, name, details={"role": role})
    try:
        key, entry = new_key_entry(name, role)
    except ValueError as exc:
        raise ConfigError(f"serve-key: {exc}") from None
    if path is not None:
        add_key_entry(path, entry)
    access.record(actions.KEY_CREATE, name, details={"role": role, **where})
    console.print("key (shown once; give it to the client):")
    print(key)
    if path is not None:
        console.print(f"added to {path}")
        return
    console.print("entry for serve.auth.keys:")
    print(yaml.safe_dump([entry], sort_keys=False), end="")


app.add_typer(models_app, name="models")
app.add_typer(audit_app, name="audit")
app.add_typer(labels_app, name="labels")
app.add_typer(keys_app, name="keys")
app.command("monitor")(monitor)
app.command()(promote)
app.command()(rollback)


def main() -> None:
    """Entry point of the ``ray-mlops`` command."""
    apply_cli()
    try:
        app()
    except RayMlopsError as exc:
        console.print(f"[red]error:[/] {exc}", highlight=False)
        sys.exit(exc.exit_code)
    except Exception as exc:
        failure = _unreachable_tracking(exc)
        if failure is None:
            raise
        console.print(f"[red]error:[/] {failure}", highlight=False)
        sys.exit(failure.exit_code)


def _unreachable_tracking(exc: Exception) -> RayMlopsError | None:
    """A command's MLflow call that found no tracking server, as one message (or None)."""
    if "mlflow" not in sys.modules:  # nothing called MLflow
        return None
    from ray_mlops.tracking import tracking_failure

    return tracking_failure(exc)
