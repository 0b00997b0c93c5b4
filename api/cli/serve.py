"""`lore serve`: the HTTP API and the web page, on uvicorn."""

from __future__ import annotations

import ipaddress
import ssl
from pathlib import Path
from typing import Annotated

import typer

from api.cli.components import read_settings
from api.cli.options import CollectionOption


def serve(
    host: Annotated[
        str | None, typer.Option(help="Address to bind (default: settings.host).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: settings.port).")] = None,
    collection: CollectionOption = None,
    tls_cert: Annotated[
        Path | None,
        typer.Option(help="PEM certificate (with its chain): serve HTTPS (default: settings)."),
    ] = None,
    tls_key: Annotated[
        Path | None, typer.Option(help="The certificate's PEM private key (default: settings).")
    ] = None,
) -> None:
    """Serve the HTTP API and the web page; `--collection` is the one requests get by default."""
    import uvicorn

    from api.app import create_app
    from api.observability import configure_json_logging

    settings = read_settings()
    if collection is not None:
        settings = settings.model_copy(update={"collection": collection})
    bind = host or settings.host
    if not settings.auth and not is_loopback(bind):
        raise typer.BadParameter(
            f"auth is off, so the server binds only to loopback (127.0.0.1 or ::1), not {bind}. "
            "Turn auth on and make keys with `lore keys create` to serve a network.",
            param_hint="--host",
        )
    cert, key = tls_cert or settings.tls_cert, tls_key or settings.tls_key
    if cert is not None or key is not None:
        check_tls(cert, key)
        settings = settings.model_copy(update={"tls_cert": cert, "tls_key": key})
    if settings.database_url is not None:
        check_database(settings.database_url.get_secret_value())
    else:
        from ingest.doctor import check_stores_open

        check_stores_open(settings)  # a damaged file: a sentence and exit 1, not a trace
    configure_json_logging()
    uvicorn.run(
        create_app(settings),
        host=bind,
        port=port or settings.port,
        ssl_certfile=str(cert) if cert else None,
        ssl_keyfile=str(key) if key else None,
        log_level="info",
        log_config=None,
        # Behind a load balancer, the client's address comes from X-Forwarded-For, and
        # only when the balancer itself is one of trusted_proxies.
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=settings.trusted_proxies or None,
        # SIGTERM (a rolling restart): new connections are refused at once, answers
        # under way may finish, for as long as one may take.
        timeout_graceful_shutdown=int(settings.generation_timeout_s) + 5,
    )


def check_tls(cert: Path | None, key: Path | None) -> None:
    """Refuse, with a sentence, a certificate without its key (or the reverse), an
    unreadable file, or a pair that does not load together."""
    if cert is None or key is None:
        raise typer.BadParameter(
            "HTTPS needs both a certificate and its private key: give --tls-cert and "
            "--tls-key (or tls_cert and tls_key in the settings).",
            param_hint="--tls-cert/--tls-key",
        )
    for path, flag in ((cert, "--tls-cert"), (key, "--tls-key")):
        if not path.is_file():
            raise typer.BadParameter(f"{path} is not a readable file.", param_hint=flag)
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as exc:
        raise typer.BadParameter(
            f"the certificate {cert} and the key {key} do not load together ({exc}): both "
            "must be PEM files, the key the certificate's own and not encrypted.",
            param_hint="--tls-cert/--tls-key",
        ) from exc


def is_loopback(host: str) -> bool:
    """Whether `host` is `localhost` or a loopback address (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_database(url: str) -> None:
    """Return when cluster mode's database answers with this release's schema; else raise
    the LoreError that says why in a sentence (unreachable, or `lore db upgrade` needed),
    so the server refuses to start rather than fail each request."""
    from rag.postgres.database import Database

    database = Database(url)
    try:
        database.check_schema()
    finally:
        database.close()
