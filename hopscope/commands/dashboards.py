"""CLI commands of this folder: `hopscope dashboards build` and `hopscope dashboards publish`."""

from __future__ import annotations

import os

import typer
from rich.console import Console


def register(app: typer.Typer) -> None:
    """Add the `dashboards` command group to the main app."""
    group = typer.Typer(
        help="Grafana dashboards as code: build the JSON, publish to a Grafana.", no_args_is_help=True
    )

    @group.command("build")
    def build_cmd(
        check: bool = typer.Option(
            False, "--check", help="Only tell whether the committed files are current."
        ),
    ) -> None:
        """Regenerate dashboards/json/*.json and dashboards/provisioning/ from the builders."""
        from hopscope.dashboards import build

        console = Console()
        if check:
            stale = build.check()
            for path in stale:
                console.print(f"[red]stale[/red] {path}")
            if stale:
                console.print("run `hopscope dashboards build` and commit the result")
                raise typer.Exit(1)
            console.print(f"all {len(build.render())} generated files are current")
            return
        changed = build.write()
        for path in changed:
            console.print(f"[green]wrote[/green] {path}")
        console.print(f"{len(changed)} of {len(build.render())} generated files changed")

    @group.command("publish")
    def publish_cmd(
        url: str = typer.Option(..., "--url", help="Grafana base URL, e.g. http://127.0.0.1:3000"),
        token_env: str = typer.Option("GRAFANA_TOKEN", help="Environment variable holding the API token."),
        prometheus_url: str | None = typer.Option(None, help="URL Grafana uses to reach Prometheus."),
        tempo_url: str | None = typer.Option(None, help="URL Grafana uses to reach Tempo."),
        jaeger_url: str | None = typer.Option(None, help="URL Grafana uses to reach Jaeger's query API."),
        postgres_host: str | None = typer.Option(None, help="host:port Grafana uses to reach Postgres."),
        postgres_password_env: str = typer.Option(
            "HOPSCOPE_PG_PASSWORD", help="Environment variable with the results database password."
        ),
    ) -> None:
        """Create or update the hopscope folder, datasources and dashboards (idempotent)."""
        from hopscope.dashboards import datasources as d
        from hopscope.dashboards.publish import connect, publish

        console = Console()
        token = os.environ.get(token_env)
        if not token:
            console.print(f"[yellow]{token_env} is not set: sending no token[/yellow]")
        urls = {
            uid: value
            for uid, value in (
                (d.PROMETHEUS.uid, prometheus_url),
                (d.TEMPO.uid, tempo_url),
                (d.JAEGER.uid, jaeger_url),
                (d.POSTGRES.uid, postgres_host),
            )
            if value
        }
        password = os.environ.get(postgres_password_env)
        secrets = {d.POSTGRES.uid: {"password": password}} if password else {}
        changes = publish(connect(url, token), urls=urls, secrets=secrets)  # PublishError: exit 1
        for change in changes:
            console.print(str(change))
        changed = sum(c.action != "unchanged" for c in changes)
        console.print(f"{changed} of {len(changes)} objects changed on {url}")

    app.add_typer(group, name="dashboards")
