"""What every ``sandbox`` command shares: the ``main`` group and its options, the context
(home, server, platform), token and JSON options, output helpers and exit codes.

The command line as a whole:

Every command acts on one platform home (``--home``, or ``SANDBOX_HOME``,
default ``.sandbox``) and, except the host-level ones (``init``,
``principal add``, ``ledger verify``, ``product verify``, ``demo-data``,
``demo``), as one principal: ``--as TOKEN``, ``SANDBOX_TOKEN``, or a file named by
``SANDBOX_TOKEN_FILE`` that only its owner may read (so the token sits neither in
``ps`` nor in the shell's history). Errors print one line,
``error [code]: message (Art. N)``; ``--debug`` shows the traceback instead.

Exit codes (:class:`Exit`, listed in ``sandbox -h`` and docs/cli.md): 0 done;
1 an error (a failed job, a conflict, a missing object); 2 a usage error or bad
input (an unknown option, a malformed value, a missing home); 3 refused by a rule
(a policy refusal, a role or grant that does not allow it); 4 withheld (the job
ran, its output waits for output review; nothing was released).
"""

from __future__ import annotations

import enum
import json
import os
import stat
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from policies.errors import InputError, SandboxError
from sandbox.core.home import default_home

if TYPE_CHECKING:
    from sandbox.cli.backend import Backend
    from sandbox.core.platform import Platform

TOKEN_HELP = (
    "the principal's token (or set SANDBOX_TOKEN, or SANDBOX_TOKEN_FILE to a file "
    "only you may read)"
)


class Exit(enum.IntEnum):
    """The exit statuses of every command."""

    OK = 0
    ERROR = 1  # a failed job, a conflict, a missing object, a broken ledger
    USAGE = 2  # an unknown option, a malformed value, bad input, a missing home
    REFUSED = 3  # a policy rule, a role or a grant refused the request
    WITHHELD = 4  # the job ran; its output waits for output review, nothing left


EXIT_HELP = (
    "Exit codes: 0 done; 1 error; 2 usage or bad input; 3 refused by a rule, role or "
    "grant; 4 withheld for output review (nothing released)."
)


def exit_code_of(exc: SandboxError) -> Exit:
    """The exit status for an error, by its kind."""
    from policies.errors import ConfigError, PermissionDenied, PolicyRefusal

    if isinstance(exc, (InputError, ConfigError)):
        return Exit.USAGE
    if isinstance(exc, (PolicyRefusal, PermissionDenied)):
        return Exit.REFUSED
    return Exit.ERROR


def job_exit(state: str) -> Exit:
    """The exit status for a job's final state."""
    return {"refused": Exit.REFUSED, "failed": Exit.ERROR, "withheld": Exit.WITHHELD}.get(
        state, Exit.OK
    )


def _text_of(path: Path, option: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{option} {path.name}: not UTF-8 text; save it as UTF-8") from None
    except OSError as exc:  # a folder, a file without read permission
        raise InputError(f"{option} {path}: cannot be read ({exc.strerror}); give a file") from None


def read_mapping(path: Path, option: str = "--file") -> dict[str, Any]:
    """The mapping in a YAML or JSON file; a file that is not one is refused, naming the
    option, the file and where its text goes wrong."""
    import yaml

    try:
        data = yaml.safe_load(_text_of(path, option))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "unreadable"
        raise InputError(
            f"{option} {path.name}: not YAML or JSON{at} ({problem}); fix the file and run "
            "the command again"
        ) from None
    if not isinstance(data, dict):
        raise InputError(
            f"{option} {path.name}: holds {type(data).__name__ if data is not None else 'nothing'}, "
            "not a mapping; write one field per line, as 'name: value' (the command's --help "
            "names the fields)"
        )
    return data


def definition_option(fields: str):
    """``--file FILE``, a YAML or JSON mapping of ``fields``: the command is given it read
    (:func:`read_mapping`) as ``definition``."""
    return click.option(
        "--file",
        "definition",
        type=click.Path(path_type=Path, exists=True),
        required=True,
        help=f"YAML or JSON: {fields}",
        callback=lambda _ctx, _param, path: read_mapping(path),
    )


def read_json_lines(path: Path, option: str = "--batch") -> list[Any]:
    """One JSON value per non-empty line of ``path``; a line that is not JSON is refused by
    its number."""
    items = []
    for number, line in enumerate(_text_of(path, option).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            items.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise InputError(
                f"{option} {path.name}, line {number}: not JSON ({exc.msg}, column {exc.colno}); "
                "write one JSON object per line"
            ) from None
    return items


def read_token_file(path: str) -> str:
    """The token in ``path``; refused unless only its owner may read it."""
    file = Path(path)
    try:
        info = file.stat()
    except OSError as exc:
        raise InputError(f"SANDBOX_TOKEN_FILE '{path}' cannot be read: {exc.strerror}") from exc
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise InputError(
            f"SANDBOX_TOKEN_FILE '{path}' may be read by others (mode "
            f"{stat.S_IMODE(info.st_mode):04o}); run 'chmod 600 {path}' and try again"
        )
    token = file.read_text(encoding="utf-8").strip()
    if not token:
        raise InputError(f"SANDBOX_TOKEN_FILE '{path}' is empty")
    return token


def _token_from_file(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None and os.environ.get("SANDBOX_TOKEN_FILE"):
        return read_token_file(os.environ["SANDBOX_TOKEN_FILE"])
    return value


class Context:
    def __init__(self, home: Path, debug: bool, server: str | None = None):
        self.home = home
        self.debug = debug
        self.server = server
        self._platform: Platform | None = None

    def host_home(self) -> Path:
        """The home, for a host-level command that must not open the platform first
        (``db upgrade``); like :attr:`platform`, it refuses ``--server``."""
        if self.server:
            command = click.get_current_context().command_path
            raise InputError(
                f"'{command}' runs on the platform's host only; drop --server "
                "(and SANDBOX_SERVER) to run it there"
            )
        return self.home

    def product_key(self, key: str | None, fingerprint: str | None):
        """The platform's public key to verify a product with: ``--key`` (a file or a
        URL), else the server's (``GET /v1/keys/platform``) with ``--server``, else the
        home's; returns the key and its fingerprint."""
        from sandbox.cli.keysource import public_key_from

        return public_key_from(key, self.home, fingerprint, self.server)

    @property
    def platform(self) -> Platform:
        self.host_home()
        if self._platform is None:
            from sandbox.core.platform import Platform  # SQLAlchemy: not at the CLI's start

            self._platform = Platform.open(self.home)
        return self._platform

    def client(self, token: str | None):
        """The HTTP client for --server; the token is sent as a bearer token."""
        from sandbox.client import Client

        assert self.server is not None  # asked for by backend() with --server only
        return Client(self.server, token)

    @contextmanager
    def backend(self, token: str | None) -> Iterator[Backend]:
        """The platform for a command acting as the principal of ``token``: through the
        HTTP API with --server, else in-process on the home. The one place that looks at
        --server besides :attr:`platform`."""
        if self.server:
            from sandbox.cli.remote import RemoteBackend

            with self.client(token) as client:
                yield RemoteBackend(client)
        else:
            from sandbox.cli.local import LocalBackend

            yield LocalBackend(self.platform, token)

    def principal(self, token: str | None):
        from sandbox.core.principals import authenticate

        with self.platform.store.read() as conn:
            return authenticate(conn, token)


pass_ctx = click.make_pass_decorator(Context)


def as_option(fn):
    return click.option(
        "--as", "token", envvar="SANDBOX_TOKEN", help=TOKEN_HELP, callback=_token_from_file
    )(fn)


def json_option(fn):
    return click.option("--json", "as_json", is_flag=True, help="print JSON")(fn)


def as_principal(fn):
    """A command acting as a principal: ``--as`` (the token), ``--json``, and the
    :class:`Context` passed first."""
    return as_option(json_option(pass_ctx(fn)))


def emit(data: Any, as_json: bool, text: str | None = None) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))
    else:
        click.echo(text if text is not None else data)


def cell_text(value: Any) -> str:
    """One value as a person reads it: no Python ``repr``; mappings and lists as JSON."""
    if value is None:
        return ""
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, ensure_ascii=False, default=str, separators=(", ", ": "))
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def table(
    rows: Sequence[Sequence[Any]],
    headers: Sequence[str],
    *,
    right: Sequence[str] = (),
    empty: str = "(none)",
) -> str:
    """Rows as an aligned text table, measured in display cells (rich's measure), so
    that Chinese names line up with Latin ones; ``right`` names right-aligned columns."""
    if not rows:
        return empty
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    grid = Table(box=None, pad_edge=False, padding=(0, 2, 0, 0), show_edge=False)
    for header in headers:
        grid.add_column(header, justify="right" if header in right else "left", no_wrap=True)
    for row in rows:
        grid.add_row(*(Text(cell_text(value)) for value in row))
    console = Console(width=4096, no_color=True, highlight=False, emoji=False)
    with console.capture() as captured:
        console.print(grid)
    return "\n".join(line.rstrip() for line in captured.get().splitlines())


class SandboxGroup(click.Group):
    """Turns every SandboxError into one line and an exit status."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except SandboxError as exc:
            obj = ctx.find_object(Context)
            if obj is not None and obj.debug:
                raise
            rule = getattr(exc, "rule", None)  # a refusal names the rule it was refused by
            named = f" (rule {rule})" if rule and rule != exc.code else ""
            click.echo(f"error [{exc.code}]: {exc}{named}", err=True)
            ctx.exit(exit_code_of(exc))
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise  # click's own ends: a usage error, --help, an exit status
        except Exception as exc:  # a fault of ours: one line, not a traceback
            obj = ctx.find_object(Context)
            if obj is not None and obj.debug:
                raise
            click.echo(
                f"error [internal]: {type(exc).__name__}: {exc}; run the command again with "
                "--debug for the traceback, and report it to the platform's maintainers",
                err=True,
            )
            ctx.exit(Exit.ERROR)


@click.group(
    cls=SandboxGroup,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog=EXIT_HELP,
)
@click.version_option(None, "--version", "-V", package_name="jining-sandbox", prog_name="sandbox")
@click.option(
    "--home",
    type=click.Path(path_type=Path),
    default=None,
    help="platform home folder (default: $SANDBOX_HOME or .sandbox)",
)
@click.option("--debug", is_flag=True, help="show tracebacks")
@click.option(
    "--server",
    envvar="SANDBOX_SERVER",
    default=None,
    help="run through the HTTP API at this URL instead of on the platform's host "
    "(every command but the host-level ones: init, principal add and list, settings, serve, "
    "backup, restore, demo, ledger head, verify unblock)",
)
@click.pass_context
def main(ctx: click.Context, home: Path | None, debug: bool, server: str | None) -> None:
    """Privacy-computing public-data sandbox: raw data stays in, vetted aggregates leave."""
    ctx.obj = Context(home or default_home(), debug, server)
