"""The Harper stack's service-level settings, read from the running nodes (the experiment
records them beside what each driver read back; named in `stack.yaml` as `services_readback`)."""

from __future__ import annotations

from typing import Any

from hopscope.deploy.base import Context
from hopscope.deploy.services.harper import Harper


def read_services(ctx: Context) -> dict[str, Any]:
    return Harper(ctx).fairness()
