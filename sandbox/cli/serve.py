"""``sandbox serve``: the HTTP API on uvicorn.

Added to :data:`sandbox.cli.common.main` when :mod:`sandbox.cli.app` imports this module.
The platform home is handed to uvicorn's worker processes
in ``SANDBOX_HOME`` (they import :func:`sandbox.api.app.app_from_env` by name).
Loopback is the default: in production the API sits behind a reverse proxy
that terminates TLS.
"""

from __future__ import annotations

import os

import click

from sandbox.cli.common import Context, main, pass_ctx


@main.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on")
@click.option("--port", default=8040, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="uvicorn worker processes; each runs its own job executor",
)
@click.option(
    "--log-level",
    default="warning",
    show_default=True,
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
)
@pass_ctx
def serve(obj: Context, host: str, port: int, workers: int, log_level: str) -> None:
    """Serve the HTTP API (routes under /v1, OpenAPI at /openapi.json)."""
    import uvicorn

    obj.platform  # noqa: B018  (a missing or broken home fails here, with its message)
    os.environ["SANDBOX_HOME"] = str(obj.home.resolve())
    click.echo(
        f"serving {obj.home.resolve()} on http://{host}:{port} ({workers} worker(s))", err=True
    )
    uvicorn.run(
        "sandbox.api.app:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        timeout_graceful_shutdown=10,
    )
