"""``sandbox backup DIR`` and ``sandbox restore DIR``: consistent copies of a platform home.

Added to :data:`sandbox.cli.common.main` when :mod:`sandbox.cli.app` imports this module.
Both are host-level commands (no ``--as``): whoever holds
the home holds its keys. ``backup`` may run while the server serves;
``restore`` writes only into a new or empty ``--home`` and verifies the
result (ledger, products, snapshots) before it says so.
"""

from __future__ import annotations

from pathlib import Path

import click

from sandbox.cli.common import Context, emit, json_option, main, pass_ctx


@main.command("backup")
@click.argument("folder", type=click.Path(path_type=Path))
@json_option
@pass_ctx
def backup_cmd(obj: Context, folder: Path, as_json: bool) -> None:
    """Write a consistent backup of the home (store, keys, vault, products) to FOLDER."""
    from sandbox.data.backup import backup

    report = backup(obj.platform, folder)
    data = {
        "folder": str(report.folder),
        "files": report.files,
        "bytes": report.bytes,
        "ledger_entries": report.ledger_entries,
        "datasets": report.datasets,
        "products": report.products,
    }
    emit(
        data,
        as_json,
        f"backup written to {report.folder}: {report.files} files, {report.bytes:,} bytes, "
        f"{report.ledger_entries} ledger entries, {report.datasets} snapshots, "
        f"{report.products} products",
    )


@main.command("restore")
@click.argument("folder", type=click.Path(path_type=Path, exists=True, file_okay=False))
@json_option
@pass_ctx
def restore_cmd(obj: Context, folder: Path, as_json: bool) -> None:
    """Restore the backup in FOLDER into the new or empty --home, then verify it."""
    from sandbox.data.backup import restore

    check = restore(folder, obj.home)
    data = {
        "home": str(obj.home),
        "ledger_entries": check.ledger_entries,
        "snapshots": check.snapshots,
        "products": check.products,
    }
    emit(
        data,
        as_json,
        f"restored into {obj.home}: ledger verified ({check.ledger_entries} entries), "
        f"{check.snapshots} snapshots and {check.products} products verified",
    )
