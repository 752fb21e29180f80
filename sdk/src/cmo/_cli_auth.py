"""`cmoctl auth token`: mint a token for a development server from a local key (`cmo-sdk[jwt]`)."""

from __future__ import annotations

import time
from pathlib import Path

import click

from cmo.durations import parse_duration

__all__ = ["auth"]

ALL_SCOPES = ("runs:read", "runs:write", "runs:admin", "workers", "registry:read", "registry:write", "metrics")


@click.group()
def auth() -> None:
    """Credentials for a server with authentication on (CMO_AUTH=jwt)."""


@auth.command("token")
@click.option(
    "--key-file",
    type=click.Path(exists=True, dir_okay=False),
    required=True,
    help="The HMAC secret, or a PEM private key.",
)
@click.option("--key-id", required=True, help="Its `kid`, as the server's key file names it.")
@click.option("--algorithm", default="HS256", show_default=True, help="HS256, RS256, ES256, EdDSA, ...")
@click.option("--issuer", required=True, help="The server's CMO_AUTH_ISSUER.")
@click.option("--audience", default="cmo", show_default=True, help="The server's CMO_AUTH_AUDIENCE.")
@click.option("--subject", default="developer", show_default=True, help="Who the token names.")
@click.option("--scope", "scopes", multiple=True, help="A scope (repeatable); every scope by default.")
@click.option("--tenant", "tenants", default="*", show_default=True, help="The tenant it may use (`*`: any).")
@click.option("--project", "projects", default="*", show_default=True, help="The project it may use (`*`: any).")
@click.option("--ttl", default="1h", show_default=True, help="How long it is valid (30m, 8h, 7d).")
def mint_token(
    key_file: str,
    key_id: str,
    algorithm: str,
    issuer: str,
    audience: str,
    subject: str,
    scopes: tuple[str, ...],
    tenants: str,
    projects: str,
    ttl: str,
) -> None:
    """Print a signed token: `export CMO_TOKEN=$(cmoctl auth token ...)`."""
    try:
        import jwt
    except ImportError:
        raise click.ClickException('minting a token needs PyJWT: pip install "cmo-sdk[jwt]"') from None
    try:
        lifetime = parse_duration(ttl)
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="--ttl") from None
    key = Path(key_file).read_bytes()
    if algorithm.startswith("HS"):
        key = key.strip()
    now = int(time.time())
    claims = {
        "iss": issuer,
        "aud": audience,
        "sub": subject,
        "iat": now,
        "exp": now + int(lifetime.total_seconds()),
        "scope": " ".join(scopes or ALL_SCOPES),
        "namespaces": [f"{tenants}/{projects}"],
    }
    try:
        click.echo(jwt.encode(claims, key, algorithm=algorithm, headers={"kid": key_id}))
    except (jwt.PyJWTError, ValueError, TypeError) as err:
        raise click.ClickException(f"cannot sign with that key and {algorithm}: {type(err).__name__}") from None
