"""Plotly figures of the report. Each function returns a Figure, or None when there is
nothing to draw; the caller says so in words."""

from __future__ import annotations

import math

import networkx as nx
import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .context import ReportContext
from .tables import fmt_ms


def finish_layout(
    fig: go.Figure, height: int, title: str | None = None, legend_y: float = 1.04, **extra: object
) -> None:
    """One layout update per figure (plotly copies its template on every update, which is slow).

    Section headings carry the plot's name, so a figure title is only set when it says
    something the heading does not; the legend sits above the plot area.
    """
    top = 40 + (30 if title else 0) + (50 if legend_y > 1.07 else 30)
    fig.update_layout(
        template="plotly_white",
        margin=dict(l=60, r=20, t=top, b=50),
        legend=dict(orientation="h", yanchor="bottom", y=legend_y, x=0),
        font=dict(size=12),
        height=height,
        title=dict(text=title, x=0, y=0.99, yanchor="top", font=dict(size=13)) if title else None,
        **extra,
    )


METRIC_DASH = {"p50_ms": "solid", "p99_ms": "dash", "p999_ms": "dot"}
METRIC_LABEL = {"p50_ms": "p50", "p99_ms": "p99", "p999_ms": "p99.9"}


def _ecdf_points(values: np.ndarray, max_points: int = 1200) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, F(x), P(X ≥ x)) thinned to a few hundred points, dense in the tail where the ranks matter."""
    v = np.sort(values)
    n = len(v)
    body = np.linspace(0, n - 1, max_points // 2).astype(int)
    tail = n - np.unique(np.logspace(0, math.log10(n), max_points // 2).astype(int))
    idx = np.unique(np.concatenate([body, tail, [0, n - 1]]))
    idx = idx[(idx >= 0) & (idx < n)]
    return v[idx], (idx + 1) / n, (n - idx) / n


def e2e_cdf(ctx: ReportContext, workload: str) -> go.Figure | None:
    stacks = ctx.stacks_with_data(workload)
    if not stacks:
        return None
    fig = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=("CDF of end-to-end latency", "tail: P(latency ≥ x)"),
        horizontal_spacing=0.09,
    )
    hidden = []
    for stack in stacks:
        values = ctx.deliveries(stack, workload)["e2e_ms"].dropna().to_numpy(dtype=float)
        positive = values[values > 0]
        if len(positive) < len(values):
            hidden.append(f"{stack}: {len(values) - len(positive)} ≤ 0 ms")
        if len(positive) == 0:
            continue
        x, cdf, ccdf = _ecdf_points(positive)
        color = ctx.stack_color(stack)
        common = dict(x=x, mode="lines", line=dict(color=color, width=2), legendgroup=stack)
        fig.add_trace(go.Scatter(y=cdf, name=f"{stack} (n={len(positive):,})", **common), row=1, col=1)
        fig.add_trace(go.Scatter(y=ccdf, name=stack, showlegend=False, **common), row=1, col=2)
    fig.update_xaxes(type="log", minorloglabels="complete", title_text="end-to-end latency (ms, log)")
    fig.update_yaxes(title_text="fraction of deliveries", range=[0, 1.02], row=1, col=1)
    fig.update_yaxes(type="log", minorloglabels="complete", title_text="fraction ≥ x (log)", row=1, col=2)
    title = f"not on the log axis: {', '.join(hidden)}" if hidden else None
    finish_layout(fig, 450, title, legend_y=1.1)
    return fig


def _per_stack_bars(
    ctx: ReportContext,
    workload: str,
    metrics: dict[str, str],
    y_title: str,
    percent: bool = False,
) -> go.Figure | None:
    stacks = [s for s in ctx.stacks_with_data(workload) if not ctx.hops(s, workload).empty]
    if not stacks:
        return None
    fig = make_subplots(
        rows=1, cols=len(stacks), subplot_titles=stacks, shared_yaxes=True, horizontal_spacing=0.04
    )
    palette = ["#4C72B0", "#DD8452", "#C44E52", "#8172B3"]
    for col, stack in enumerate(stacks, start=1):
        hops = ctx.hops(stack, workload)
        for i, (field, label) in enumerate(metrics.items()):
            if field not in hops:
                continue
            y = hops[field].to_numpy(dtype=float)
            fig.add_trace(
                go.Bar(
                    x=hops["hop"],
                    y=y * 100 if percent else y,
                    name=label,
                    marker_color=palette[i % len(palette)],
                    legendgroup=label,
                    showlegend=col == 1,
                    hovertemplate=f"{stack} %{{x}}<br>{label}: %{{y:.3g}}{' %' if percent else ' ms'}<extra></extra>",
                ),
                row=1,
                col=col,
            )
    finish_layout(fig, 450, None, legend_y=1.1, barmode="group")
    fig.update_xaxes(tickangle=-30, automargin=True)
    fig.update_yaxes(title_text=y_title, row=1, col=1)
    return fig


def hop_breakdown(ctx: ReportContext, workload: str) -> go.Figure | None:
    return _per_stack_bars(
        ctx,
        workload,
        {"p50_ms": "median (p50)", "p99_ms": "p99"},
        "hop latency (ms)",
    )


def shares(ctx: ReportContext, workload: str) -> go.Figure | None:
    return _per_stack_bars(
        ctx,
        workload,
        {
            "var_share": "variance share",
            "tail_share_p99": "tail share p99",
            "tail_share_p999": "tail share p99.9",
            "crit_share": "critical-path share",
        },
        "share (%)",
        percent=True,
    )


def tail_growth(ctx: ReportContext, workload: str) -> go.Figure | None:
    stacks = [s for s in ctx.stacks_with_data(workload) if not ctx.growth(s, workload).empty]
    if not stacks:
        return None
    fig = go.Figure()
    max_len = 0
    for stack in stacks:
        g = ctx.growth(stack, workload)
        pos = np.arange(1, len(g) + 1)
        max_len = max(max_len, len(g))
        color = ctx.stack_color(stack)
        for field, dash in METRIC_DASH.items():
            if field not in g:
                continue
            label = METRIC_LABEL[field]
            fig.add_trace(
                go.Scatter(
                    x=pos,
                    y=g[field],
                    name=f"{stack} {label}",
                    mode="lines+markers+text" if field == "p99_ms" else "lines+markers",
                    text=list(g["hop"]) if field == "p99_ms" else None,
                    textposition="top left",
                    textfont=dict(size=10, color=color),
                    line=dict(color=color, dash=dash, width=2),
                    customdata=g["hop"],
                    hovertemplate=f"{stack} after %{{customdata}}<br>{label}: %{{y:.3g}} ms<extra></extra>",
                )
            )
    finish_layout(fig, 480)
    fig.update_xaxes(
        title_text="after hop number (hop names on the p99 line)",
        tickmode="array",
        tickvals=list(range(1, max_len + 1)),
        range=[0.5, max_len + 0.5],
    )
    fig.update_yaxes(type="log", minorloglabels="complete", title_text="partial-sum latency (ms, log)")
    return fig


def _layout_left_to_right(graph: nx.DiGraph) -> dict[object, tuple[float, float]]:
    """x = position along the path (longest distance from a source), y = spread within a column."""
    if nx.is_directed_acyclic_graph(graph):
        layers = [list(layer) for layer in nx.topological_generations(graph)]
    else:
        # A cycle (a retry loop, say) has no topological order: fall back to BFS depth.
        sources = [n for n, d in graph.in_degree() if d == 0] or [next(iter(graph.nodes))]
        depth: dict[object, int] = {}
        for s in sources:
            for n, d in nx.single_source_shortest_path_length(graph, s).items():
                depth[n] = min(depth.get(n, d), d)
        for n in graph.nodes:
            depth.setdefault(n, 0)
        layers = [[n for n in graph.nodes if depth[n] == k] for k in range(max(depth.values()) + 1)]
    pos: dict[object, tuple[float, float]] = {}
    for x, layer in enumerate(layers):
        for j, node in enumerate(sorted(layer, key=str)):
            pos[node] = (float(x), (len(layer) - 1) / 2 - j)
    return pos


def hop_graph(ctx: ReportContext, stack: str, workload: str) -> go.Figure | None:
    graph = ctx.graph(stack, workload)
    if graph is None or graph.number_of_nodes() == 0:
        return None
    pos = _layout_left_to_right(graph)
    color = ctx.stack_color(stack)
    p99s = [float(d.get("p99_ms", 0) or 0) for _, _, d in graph.edges(data=True)]
    top = max(p99s) if p99s else 0.0
    fig = go.Figure()
    annotations = []
    # Long hop and checkpoint names crowd a long chain: labels alternate between two heights.
    for k, (u, v, data) in enumerate(graph.edges(data=True)):
        (x0, y0), (x1, y1) = pos[u], pos[v]
        p99 = float(data.get("p99_ms", 0) or 0)
        width = 1.5 + 6 * (p99 / top if top > 0 else 0)
        fig.add_trace(
            go.Scatter(
                x=[x0, x1],
                y=[y0, y1],
                mode="lines",
                line=dict(color=color, width=width),
                opacity=0.55,
                hoverinfo="skip",
                showlegend=False,
            )
        )
        annotations.append(
            dict(x=x1, y=y1, ax=x0, ay=y0, xref="x", yref="y", axref="x", ayref="y", text="",
                 showarrow=True, arrowhead=2, arrowsize=1, arrowwidth=1.5, arrowcolor=color, standoff=9)
        )  # fmt: skip
        hop = data.get("hop", f"{u}→{v}")
        annotations.append(
            dict(x=(x0 + x1) / 2, y=(y0 + y1) / 2, xref="x", yref="y", yanchor="bottom",
                 yshift=6 if k % 2 == 0 else 34, text=f"<b>{hop}</b><br>p99 {fmt_ms(p99)} ms",
                 showarrow=False, font=dict(size=10), bgcolor="rgba(255,255,255,0.85)")
        )  # fmt: skip
    nodes = list(graph.nodes)
    xs = [pos[n][0] for n in nodes]
    ys = [pos[n][1] for n in nodes]
    for k, n in enumerate(nodes):
        annotations.append(
            dict(x=pos[n][0], y=pos[n][1], xref="x", yref="y", yanchor="top", yshift=-10 if k % 2 == 0 else -26,
                 text=str(n), showarrow=False, font=dict(size=10, color="#333"))
        )  # fmt: skip
    fig.add_trace(
        go.Scatter(
            x=xs,
            y=ys,
            mode="markers",
            marker=dict(size=14, color="white", line=dict(color=color, width=2)),
            hovertext=[str(n) for n in nodes],
            hoverinfo="text",
            showlegend=False,
        )
    )
    span_y = max(ys) - min(ys) if ys else 0
    finish_layout(
        fig,
        int(230 + 110 * span_y),
        f"{stack} · {workload}: hop graph (edge width ∝ p99)",
        annotations=annotations,
    )
    fig.update_xaxes(visible=False, range=[min(xs) - 0.4, max(xs) + 0.4])
    fig.update_yaxes(visible=False, range=[min(ys) - 0.8, max(ys) + 0.8])
    return fig
