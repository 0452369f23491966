"""The services hopscope knows, in start order (dependencies first)."""

from __future__ import annotations

import importlib

from hopscope.deploy.base import Context, Service

#: name -> "module:Class"; `up` starts them in this order, `down` stops them in reverse.
SERVICES: dict[str, str] = {
    "postgres": "hopscope.deploy.services.postgres:Postgres",
    "pgsync": "hopscope.deploy.services.pgsync:PgSync",
    "redis": "hopscope.deploy.services.redis:Redis",
    "kafka": "hopscope.deploy.services.kafka:Kafka",
    "connect": "hopscope.deploy.services.kafka:Connect",
    "harper": "hopscope.deploy.services.harper:Harper",
    "jaeger": "hopscope.deploy.services.jaeger:Jaeger",
    "collector": "hopscope.deploy.services.collector:Collector",
    "prometheus": "hopscope.deploy.services.prometheus:Prometheus",
}

#: Named groups for `up --only` (deploy knows services, not stacks: the command layer expands a
#: stack's name into the services its declaration needs).
GROUPS: dict[str, tuple[str, ...]] = {
    "telemetry": ("jaeger", "collector", "prometheus"),
}


class UnknownService(ValueError):
    pass


def service_class(name: str) -> type[Service]:
    module_name, _, cls_name = SERVICES[name].partition(":")
    module = importlib.import_module(module_name)
    try:
        return getattr(module, cls_name)
    except AttributeError as exc:
        raise UnknownService(f"service {name!r} is not implemented in {module_name}") from exc


def available() -> list[str]:
    """Services whose implementation exists (all of them once deploy/ is complete)."""
    out = []
    for name in SERVICES:
        try:
            service_class(name)
            out.append(name)
        except UnknownService:
            pass
    return out


def resolve(only: str | None, with_dependencies: bool = True) -> list[str]:
    """Expand `--only a,b,group` into service names in start order (with their dependencies for `up`)."""
    if not only:
        return available()
    wanted: set[str] = set()
    for item in (x.strip() for x in only.split(",") if x.strip()):
        if item in GROUPS:
            wanted.update(GROUPS[item])
        elif item in SERVICES:
            wanted.add(item)
        else:
            known = ", ".join([*SERVICES, *GROUPS])
            raise UnknownService(f"unknown service {item!r}; known: {known}")
    # Dependencies come along: a Connect worker without Kafka is no use.
    changed = with_dependencies
    while changed:
        changed = False
        for name in list(wanted):
            for dep in service_class(name).depends_on:
                if dep not in wanted:
                    wanted.add(dep)
                    changed = True
    return [name for name in SERVICES if name in wanted]


def instantiate(names: list[str], ctx: Context) -> list[Service]:
    return [service_class(name)(ctx) for name in names]
