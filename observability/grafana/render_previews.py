"""PNG previews of the Grafana dashboards, drawn from the same queries against a live stack.

Grafana only runs under Docker (compose/), so these show what the dashboards look like
before anyone installs anything. Each panel is drawn where its ``gridPos`` puts it, from
its own targets (``query_range``), with exemplars as dots on the panels that ask for them.
A panel with no data says so: it is drawn empty, never invented.

    make previews                         # an ephemeral stack, two minutes of traffic
    python -m observability.grafana.render_previews --prometheus http://127.0.0.1:9090
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import re
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates
import matplotlib.pyplot as plt

from observability.grafana.queries import PanelQueries, Target, load_dashboards, panels_of
from servoscope.settings import REPO_ROOT
from stack.ephemeral import Stack, ephemeral_stack, http
from stack.traffic import mixed_traffic, rated_traffic

OUT_DIR = REPO_ROOT / "docs" / "dashboards"
ROW_UNITS = 8  # a panel 8 grid units high is one row of the figure

UNITS = {
    "s": (1000, "ms"),
    "percentunit": (100, "%"),
    "bytes": (1 / 2**20, "MiB"),
    "reqps": (1, "req/s"),
    "ops": (1, "ops/s"),
    "degree": (1, "°"),
}


def fetch(prometheus: str, path: str, **params: object) -> list[dict]:
    reply = http("GET", f"{prometheus}{path}?{urllib.parse.urlencode(params)}", timeout=30)
    if reply.status != 200:
        raise RuntimeError(f"{path} {params}: {reply.status} {reply.body[:300]!r}")
    data = json.loads(reply.body)["data"]
    return data["result"] if isinstance(data, dict) else data


def legend(template: str, labels: dict[str, str]) -> str:
    text = re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), template)
    return text.strip() or ",".join(f"{k}={v}" for k, v in labels.items() if k != "__name__")


def draw_panel(ax: plt.Axes, panel: PanelQueries, prometheus: str, start: float, end: float):
    scale, suffix = UNITS.get(panel.unit, (1, ""))
    ax.set_title(panel.title, fontsize=9, loc="left")
    ax.tick_params(labelsize=7)
    drawn = 0
    if panel.kind == "stat":
        values = []
        for target in panel.targets:
            for series in fetch(prometheus, "/api/v1/query", query=target.as_sent(), time=end):
                value = float(series["value"][1])
                text = panel.mappings.get(series["value"][1]) if panel.mappings else None
                shown = text or ("NaN" if math.isnan(value) else f"{value * scale:.4g}{suffix}")
                values.append((legend(target.legend, series["metric"]), shown))
        ax.axis("off")
        for i, (name, shown) in enumerate(values):
            x = (i + 0.5) / len(values)
            ax.text(x, 0.5, shown, ha="center", fontsize=14, weight="bold")
            ax.text(x, 0.36, name, ha="center", fontsize=7, color="gray")
        drawn = len(values)
    else:
        step = max(2, int((end - start) / 200))
        for target in panel.targets:
            result = fetch(
                prometheus,
                "/api/v1/query_range",
                query=target.as_sent(),
                start=start,
                end=end,
                step=step,
            )
            for series in result:
                points = [(float(t), float(v)) for t, v in series["values"]]
                if not points:
                    continue
                times = [dt.datetime.fromtimestamp(t) for t, _ in points]
                values = [v * scale for _, v in points]
                name = legend(target.legend, series["metric"])
                if panel.kind == "state-timeline":
                    ax.step(times, values, where="post", label=name)
                else:
                    ax.plot(times, values, label=name, linewidth=1)
                drawn += 1
            if target.exemplar:
                drawn += draw_exemplars(ax, target, prometheus, start, end, scale)
        if panel.mappings:
            ax.set_yticks([float(v) for v in panel.mappings], list(panel.mappings.values()))
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S"))
        if suffix:
            ax.set_ylabel(suffix, fontsize=7)
        if drawn:
            ax.legend(fontsize=6, loc="upper left", ncol=2, framealpha=0.6)
    if not drawn:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.text(
            0.5,
            0.5,
            "no data",
            ha="center",
            va="center",
            fontsize=12,
            color="gray",
            transform=ax.transAxes,
        )


def draw_exemplars(
    ax: plt.Axes, target: Target, prometheus: str, start: float, end: float, scale: float
) -> int:
    found = fetch(
        prometheus, "/api/v1/query_exemplars", query=target.as_sent(), start=start, end=end
    )
    points = [
        (dt.datetime.fromtimestamp(float(e["timestamp"])), float(e["value"]) * scale)
        for series in found
        for e in series["exemplars"]
    ]
    if points:
        times, values = zip(*points, strict=True)
        ax.scatter(times, values, s=6, color="black", alpha=0.5, label="exemplars (trace ids)")
    return len(points)


def render_dashboard(dashboard: dict, prometheus: str, start: float, end: float) -> plt.Figure:
    panels = panels_of(dashboard)
    grid = [p["gridPos"] for p in dashboard["panels"] if p["type"] != "row"]
    rows = max(g["y"] + g["h"] for g in grid) // ROW_UNITS
    height = 3.4 * rows + 0.6
    figure = plt.figure(figsize=(16, height))
    spec = figure.add_gridspec(
        rows, 24, hspace=0.55, wspace=0.6, top=1 - 0.75 / height, bottom=0.3 / height
    )
    for panel, pos in zip(panels, grid, strict=True):
        row = pos["y"] // ROW_UNITS
        ax = figure.add_subplot(
            spec[row : row + pos["h"] // ROW_UNITS, pos["x"] : pos["x"] + pos["w"]]
        )
        draw_panel(ax, panel, prometheus, start, end)
    when = dt.datetime.fromtimestamp(end).strftime("%Y-%m-%d %H:%M")
    figure.suptitle(
        f"{dashboard['title']}  (preview from a live local stack, {when})",
        fontsize=12,
        y=1 - 0.2 / height,
    )
    return figure


def render_all(prometheus: str, minutes: float, out_dir: Path = OUT_DIR) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    end = time.time()
    written = []
    for dashboard in load_dashboards():
        figure = render_dashboard(dashboard, prometheus, end - minutes * 60, end)
        path = out_dir / f"{dashboard['uid'].removeprefix('servoscope-')}.png"
        figure.savefig(path, dpi=80, bbox_inches="tight")
        plt.close(figure)
        written.append(path)
        print(f"wrote {path}")
    return written


def drive(stack: Stack, seconds: float) -> None:
    """Traffic for ``seconds``, with the simulator slow for the middle third of it, so the
    latency panels and their exemplars show a change worth clicking."""
    rated_traffic(stack, rounds=5)
    control = stack.url("simulator_control")
    started = time.monotonic()
    slowed = False
    round_number = 0
    stop = threading.Event()
    while (elapsed := time.monotonic() - started) < seconds:
        in_middle = seconds / 3 < elapsed < 2 * seconds / 3
        if in_middle != slowed:
            if in_middle:
                http(
                    "PUT",
                    f"{control}/faults/slow",
                    body='{"latency_s": 0.23}',
                    headers={"Content-Type": "application/json"},
                )
            else:
                http("DELETE", f"{control}/faults/slow")
            slowed = in_middle
        mixed_traffic(stack, rounds=1, first=round_number)
        round_number += 1
        stop.wait(0.2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="render_previews", description=__doc__)
    parser.add_argument("--prometheus", help="a running stack's Prometheus (default: start one)")
    parser.add_argument("--seconds", type=float, default=120, help="traffic before drawing")
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    args = parser.parse_args(argv)
    if args.prometheus:
        render_all(args.prometheus.rstrip("/"), minutes=5, out_dir=args.out)
        return 0
    with (
        tempfile.TemporaryDirectory(prefix="servoscope-previews-") as work,
        ephemeral_stack(Path(work) / "run") as stack,
    ):
        drive(stack, args.seconds)
        render_all(stack.url("prometheus"), minutes=args.seconds / 60 + 0.5, out_dir=args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
