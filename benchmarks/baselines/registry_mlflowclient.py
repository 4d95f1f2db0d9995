"""Baseline of ``registry_cli.py``: the registry listing a user writes with ``MlflowClient``.

MLflow's command line has no registry listing, so a user scripts it with the client, as
MLflow's docs show:

    python registry_mlflowclient.py list URI
    python registry_mlflowclient.py show URI NAME
    python registry_mlflowclient.py show URI NAME VERSION
"""

import sys

from mlflow.tracking import MlflowClient


def main() -> None:
    command, uri, *rest = sys.argv[1:]
    client = MlflowClient(uri)
    if command == "list":
        for model in client.search_registered_models():
            versions = client.search_model_versions(f"name = '{model.name}'")
            print(model.name, len(versions), model.aliases, max(int(v.version) for v in versions))
    elif command == "show" and len(rest) == 1:
        name = rest[0]
        aliases = client.get_registered_model(name).aliases
        for v in client.search_model_versions(f"name = '{name}'"):
            print(v.name, v.version, [a for a, n in aliases.items() if str(n) == v.version], v.tags)
    elif command == "show" and len(rest) == 2:
        v = client.get_model_version(*rest)
        print(v.name, v.version, v.aliases, v.description, v.run_id)
        for key, value in sorted(v.tags.items()):
            print(key, value)
    else:
        raise SystemExit(f"usage: {sys.argv[0]} list URI | show URI NAME [VERSION]")


if __name__ == "__main__":
    main()
