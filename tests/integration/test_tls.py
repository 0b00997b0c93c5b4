"""`lore serve` over HTTPS: a self-signed certificate made here, the official `openai`
client connecting with it, HSTS on every answer, and bad certificate options refused."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from api.cli import app
from tests.servers import ServerProcess, free_port, lore_command, lore_env

pytestmark = pytest.mark.integration


def self_signed(folder: Path, host: str = "127.0.0.1") -> tuple[Path, Path]:
    """A certificate for `host` signed by its own key, valid for a day, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lore test")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert, private = folder / "cert.pem", folder / "key.pem"
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert, private


@pytest.fixture(scope="module")
def https_server(
    tmp_path_factory: pytest.TempPathFactory, models_dir: Path
) -> Iterator[tuple[str, Path]]:
    """`lore serve` with TLS on a free loopback port (auth off: loopback only); yields its
    https base URL and the certificate to trust."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = self_signed(folder)
    port = free_port()
    env = {
        **lore_env(folder / "data", models_dir),
        "LORE_AUTH": "false",
        "LORE_EMBEDDING_BACKEND": "hashing",
        "LORE_CONFIG": "",
    }
    server = ServerProcess("lore serve over TLS", folder / "serve.log")
    command = [*lore_command(), "serve", "--port", str(port)]
    server.spawn([*command, "--tls-cert", str(cert), "--tls-key", str(key)], env)
    url = f"https://127.0.0.1:{port}"
    trust = ssl.create_default_context(cafile=str(cert))

    def ready() -> bool:
        try:
            return httpx.get(f"{url}/readyz", verify=trust, timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    server.wait_until(ready, timeout=180)
    try:
        yield url, cert
    finally:
        server.terminate(timeout=15)


def test_a_document_goes_up_and_the_openai_client_lists_it_over_https(
    https_server: tuple[str, Path],
) -> None:
    from openai import OpenAI

    url, cert = https_server
    trust = ssl.create_default_context(cafile=str(cert))
    with httpx.Client(verify=trust, timeout=120) as http:
        uploaded = http.post(
            f"{url}/v1/documents",
            files={"file": ("ports.md", b"# Ports\n\nLore listens on port 8000.\n")},
        )
        assert uploaded.status_code == 201, uploaded.text
        client = OpenAI(base_url=f"{url}/v1", api_key="unused", http_client=http, max_retries=0)
        assert [model.id for model in client.models.list()] == ["lore:default"]


def test_every_answer_carries_hsts_and_plain_http_gets_no_answer(
    https_server: tuple[str, Path],
) -> None:
    url, cert = https_server
    answer = httpx.get(f"{url}/healthz", verify=ssl.create_default_context(cafile=str(cert)))
    assert answer.status_code == 200
    assert answer.headers["Strict-Transport-Security"] == "max-age=31536000"
    with pytest.raises(httpx.TransportError):
        httpx.get(url.replace("https://", "http://") + "/healthz", timeout=5)
    with pytest.raises(httpx.TransportError):  # a client that does not trust it
        httpx.get(f"{url}/healthz", timeout=5)


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (["cert"], "needs both a certificate and its private key"),
        (["cert", "missing"], "is not a readable file"),
        (["cert", "cert"], "do not load together"),
    ],
)
def test_bad_certificate_options_are_refused_before_serving(
    tmp_path: Path, files: list[str], message: str
) -> None:
    cert, key = self_signed(tmp_path)
    paths = {"cert": cert, "key": key, "missing": tmp_path / "nowhere.pem"}
    options = ["--tls-cert", str(paths[files[0]])]
    if len(files) > 1:
        options += ["--tls-key", str(paths[files[1]])]
    started = time.monotonic()
    result = CliRunner().invoke(
        app, ["serve", *options], env={"LORE_DATA_DIR": str(tmp_path / "d"), "LORE_CONFIG": ""}
    )
    assert result.exit_code == 2
    assert message in " ".join(result.output.replace("│", " ").split())  # unwrap the box
    assert time.monotonic() - started < 30  # refused before any model loads
