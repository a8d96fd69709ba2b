"""`seatguard bench`: run the scenarios, print the table, save JSON and a chart."""

from __future__ import annotations

from pathlib import Path

import click

from ..app import SDK_PATH
from .conductor import Sizes, run_bench
from .report import sdk_gzip_bytes, table, write

__all__ = ["bench"]

SCENARIOS = ("hold", "flood", "storm", "admission", "seats", "policies", "conflict")


@click.command()
@click.option(
    "--scenario",
    "scenarios",
    multiple=True,
    type=click.Choice(SCENARIOS),
    help="Run only these (repeatable) [default: all].",
)
@click.option("--quick", is_flag=True, help="Small sizes: a smoke run of a minute or two.")
@click.option("--connections", type=int, help="Sockets held in the memory scenario.")
@click.option("--flood", type=int, help="Sockets flooding heartbeats.")
@click.option("--clients", type=int, help="Load-generating processes.")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".seatguard/bench"),
    show_default=True,
    help="Where bench.json and bench.png go.",
)
def bench(
    scenarios: tuple[str, ...],
    quick: bool,
    connections: int | None,
    flood: int | None,
    clients: int | None,
    out: Path,
) -> None:
    """Measure the presence server side by side with bare echo servers (websockets, Node
    ws): memory per connection, heartbeats per CPU-second, storms, latencies, seat checks
    and the cost of issuing seat tokens."""
    sizes = Sizes.quick() if quick else Sizes()
    changes = {"hold": connections, "flood": flood, "clients": clients}
    sizes = Sizes(**{**sizes.__dict__, **{k: v for k, v in changes.items() if v is not None}})
    result = run_bench(
        sizes, list(scenarios or SCENARIOS), lambda m: click.echo(f"... {m}", err=True)
    )
    result["sdk_gzip_bytes"] = sdk_gzip_bytes(SDK_PATH)
    click.echo(table(result))
    json_path, chart = write(result, out)
    click.echo(
        f"\nsaved {json_path}" + (f" and {chart}" if chart else " (no chart: matplotlib missing)")
    )
