"""Serving the champion over HTTP with Ray Serve.

``serving_runtime`` and ``deploy_model`` start a model server, ``serve_config`` and
``write_serve_config`` give the Serve config file to run it with ``serve run``, and
``new_key_entry`` makes an API key for its keys file. Imported lazily: none loads Ray until used.
"""

from ray_mlops.exports import lazy_exports

__all__ = [
    "ServedModel",
    "deploy_model",
    "new_key_entry",
    "serve_config",
    "serving_runtime",
    "stop_serving",
    "write_serve_config",
]

__getattr__ = lazy_exports(
    __name__,
    {
        "ServedModel": "launch",
        "deploy_model": "launch",
        "new_key_entry": "guard",
        "serve_config": "launch",
        "serving_runtime": "launch",
        "stop_serving": "launch",
        "write_serve_config": "launch",
    },
)
