"""The OTLP receivers' optional bearer token (`[collector] otlp_auth = "bearer"`).

Off by default: the receivers listen on loopback, where the Security table in
deploy/README.md says who can reach them. When they must be reachable from elsewhere
(`otlp_listen`), the collector's bearertokenauth extension refuses any request without
`authorization: Bearer <token>`, and every exporter hopscope starts sends it. The token comes
from HOPSCOPE_OTLP_TOKEN, else it is generated once into the state dir's secrets (mode 0600)
and written to the file the collector reads (mode 0600).

Exporters learn it the OpenTelemetry way: `OTEL_EXPORTER_OTLP_HEADERS`, which the Python and
JavaScript SDKs read by themselves and the Streams app's Java reads explicitly. The `hopscope`
command sets it for itself and so for every process it starts (glue, Streams app, Harper).
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote

from hopscope.deploy.base import Context, write_private

TOKEN_ENV = "HOPSCOPE_OTLP_TOKEN"
#: the exporters' standard variable: comma-separated key=value, values URL-encoded
HEADERS_ENV = "OTEL_EXPORTER_OTLP_HEADERS"
SECRET_NAME = "otlp_token"
TOKEN_FILE = "otlp-token"


def enabled(ctx: Context) -> bool:
    return ctx.config.collector.otlp_auth == "bearer"


def token(ctx: Context) -> str | None:
    """The shared token, or None when the receivers take no auth."""
    if not enabled(ctx):
        return None
    return os.environ.get(TOKEN_ENV) or ctx.secret(SECRET_NAME)


def token_file(ctx: Context) -> Path | None:
    """The file the collector's bearertokenauth extension reads (written now, mode 0600)."""
    value = token(ctx)
    if value is None:
        return None
    path = ctx.service_dir("collector") / TOKEN_FILE
    write_private(path, value)
    return path


def headers(ctx: Context) -> dict[str, str]:
    """What an OTLP request to our collector must carry ({} without auth)."""
    value = token(ctx)
    return {} if value is None else {"authorization": f"Bearer {value}"}


def headers_env_value(value: str) -> str:
    return f"authorization={quote('Bearer ' + value)}"


def export_to_environment(ctx: Context, environ: dict[str, str] | None = None) -> bool:
    """Put the token where every exporter started from here finds it; a value the user set
    already wins (e.g. an external collector with its own header). True when set here."""
    env = os.environ if environ is None else environ
    value = token(ctx)
    if value is None or env.get(HEADERS_ENV):
        return False
    env[HEADERS_ENV] = headers_env_value(value)
    return True
