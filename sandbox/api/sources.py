"""Which server-side sources a provider may name through the API.

Over HTTP a "path" is a path on the platform's machine, so it is refused
unless it lies under one of the folders of ``api.source_roots`` (after
resolving symlinks and ``..``); with no folders configured no server-side file
may be named at all, and data comes by upload. Known shortcut: the check and
the read are two steps, so a file swapped for a symlink in between is read; the
folders are the host's own, which makes that the host's risk.

A database URI (``postgresql://``, ``mysql://``, ``mariadb://``) makes the platform
open a connection, so it
could be used to probe which hosts and ports the platform's machine reaches.
It is refused unless its one host and port are listed in ``api.source_hosts``
(empty by default: no database through the API). A host is compared as
written, without resolving it; a listed host without a port allows the scheme's
default port only (5432; 3306 for MySQL). Only the libpq options in
:data:`DATABASE_OPTIONS` are accepted (for MySQL, :data:`MYSQL_OPTIONS`): others
(``host``, ``hostaddr``, ``port``, ``service``, ``passfile``, ``sslrootcert``,
...) would name another server or read files of the platform's machine. Every
failure to connect is answered with one message (:data:`CONNECT_FAILED`), so
"connection refused", "timed out", "bad SSL" and "wrong password" look alike;
the driver's own reason goes to the server's log. Known shortcut: the time an
attempt takes still differs (a refused port answers at once, a silent one
after the connector's 10 s timeout).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from urllib.parse import parse_qsl, unquote

from connectors.base import check_uri_text, redact_uri, split_scheme
from connectors.excel import is_workbook
from policies.errors import InputError, SourceError

log = logging.getLogger("sandbox.api.sources")

FILE_SCHEMES = {"", "file", "csv", "parquet", "jsonl", "duckdb", "excel", "xlsx"}
DATABASE_SCHEMES = {"postgresql", "postgres", "mysql", "mariadb"}
DEFAULT_PORT = 5432
DEFAULT_PORTS = {"mysql": 3306, "mariadb": 3306}  # any other database scheme: 5432
DATABASE_OPTIONS = {"table", "query", "sslmode", "application_name", "user", "password", "dbname"}
MYSQL_OPTIONS = {"table", "query"}  # unix_socket would name a socket of the platform's machine
CONNECT_FAILED = (
    "the database could not be reached or did not accept the connection (host, port, "
    "SSL mode, user, password or database); the platform's host finds the reason in the "
    "server's log"
)

_HOST_PORT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[^:\[\]/]*)(?::(\d*))?$")


def _path_of(scheme: str, rest: str, uri: str) -> str:
    if scheme == "":
        # a workbook's plain path may carry ?sheet=...: the file is what comes before
        return uri.partition("?")[0] if is_workbook(uri) and not Path(uri).is_file() else uri
    path = rest.partition("?")[0]
    if scheme == "file":
        if path.startswith("localhost/"):
            path = path[len("localhost") :]
        path = unquote(path)
    return path


def host_and_port(entry: str, default_port: int = DEFAULT_PORT) -> tuple[str, int]:
    """``("db.example.org", 5432)`` for ``db.example.org`` or ``DB.example.org:5432``."""
    match = _HOST_PORT.match(entry.strip())
    if match is None or not match.group(1):
        raise ValueError(entry)
    port = match.group(2)
    number = int(port) if port else default_port
    if not 0 < number < 65536:
        raise ValueError(entry)
    return match.group(1).lower(), number


def check_database(uri: str, allowed_hosts: tuple[str, ...]) -> None:
    """Raise InputError unless the database URI names one allowed host and safe options."""
    scheme, rest = split_scheme(uri)
    base, _, query = rest.partition("?")
    authority = base.partition("/")[0]
    hostport = authority.rpartition("@")[2]
    shown = redact_uri(uri)
    accepted = MYSQL_OPTIONS if scheme in DEFAULT_PORTS else DATABASE_OPTIONS
    default_port = DEFAULT_PORTS.get(scheme, DEFAULT_PORT)
    for name, _value in parse_qsl(query, keep_blank_values=True):
        if name not in accepted:
            raise InputError(
                f"{shown}: option '{name}' is not accepted through the API; the options "
                f"accepted are {', '.join(sorted(accepted))}"
            )
    if not hostport or "," in hostport:
        raise InputError(
            f"{shown}: name exactly one database host in the URI "
            f"({scheme}://user:password@host:port/database?table=name)"
        )
    try:
        host, port = host_and_port(unquote(hostport), default_port)
    except ValueError:
        raise InputError(f"{shown}: the host and port cannot be read") from None
    allowed = set()
    for entry in allowed_hosts:
        try:
            allowed.add(host_and_port(entry, default_port))
        except ValueError:
            continue  # the setting's own check refuses such an entry at load
    if (host, port) not in allowed:
        listed = ", ".join(allowed_hosts) if allowed_hosts else "none"
        raise InputError(
            f"{shown}: the database host {host}:{port} is not one this platform connects to "
            f"through the API (setting api.source_hosts: {listed}); ask the platform's host "
            "to list it, or upload the data (POST /v1/datasets/upload)"
        )


def check_source(uri: str, roots: tuple[str, ...], allowed_hosts: tuple[str, ...] = ()) -> None:
    """Raise InputError unless ``uri`` is an allowed database or a file under ``roots``."""
    check_uri_text(uri)
    scheme, rest = split_scheme(uri)
    if scheme in DATABASE_SCHEMES:
        check_database(uri, allowed_hosts)
        return
    if scheme not in FILE_SCHEMES:
        raise InputError(
            f"source scheme '{scheme}://' cannot be used through the API; use a file under "
            "a folder of api.source_roots, a postgresql:// or mysql:// URI of a host in "
            "api.source_hosts, or upload the file (POST /v1/datasets/upload)"
        )
    if not roots:
        raise InputError(
            "this platform accepts no server-side file paths through the API (setting "
            "api.source_roots is empty); upload the file instead (POST /v1/datasets/upload)"
        )
    path = _path_of(scheme, rest, uri)
    if not Path(path).is_absolute():
        raise InputError("a server-side file must be named by an absolute path")
    resolved = Path(path).resolve()
    for root in roots:
        if resolved.is_relative_to(Path(root).resolve()):
            return
    raise InputError(
        "the file is not under a folder this platform allows for server-side sources "
        f"(setting api.source_roots: {', '.join(roots)}); upload it instead "
        "(POST /v1/datasets/upload)"
    )


def uniform_connect_error(exc: SourceError, uri: str) -> SourceError:
    """One message for every failure to connect; the driver's reason only in the log."""
    log.warning("database source %s: %s", redact_uri(uri), exc.message)
    return SourceError(f"cannot connect to {redact_uri(uri)}: {CONNECT_FAILED}")
