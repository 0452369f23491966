"""The `postgres` stack's service-level settings, read from the running primary (the experiment
records them beside what the driver read back; named in `stack.yaml` as `services_readback`)."""

from __future__ import annotations

from typing import Any

from hopscope.deploy.base import Context
from hopscope.deploy.services.pgsync import PgSync


def read_services(ctx: Context) -> dict[str, Any]:
    return PgSync(ctx).fairness()
