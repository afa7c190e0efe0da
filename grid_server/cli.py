"""The ``p2p-energy`` command line: one subcommand per service."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config_loading import ConfigError
from .database_availability import DatabaseUnavailableError
from .grid.main import add_grid_command
from .node.config import NodeConfig, load_config
from .node.storage import StorageError
from .simulator.demo import add_demo_command
from .simulator.durable import add_households_command

if TYPE_CHECKING:
    from collections.abc import Sequence

_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _add_node_command(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "node",
        help="run a Tangle node speaking the legacy IRI API",
        description=(
            "Run a node of the grid's private IOTA network. Settings come from defaults, "
            "then --config (TOML or JSON), then P2P_ENERGY_NODE_* variables, then flags."
        ),
    )
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (default 14265)")
    parser.add_argument(
        "--database",
        help="SQLAlchemy URL (default sqlite:///$P2P_ENERGY_DATA_DIR/node.sqlite3, "
        "e.g. postgresql+psycopg://user@host/db)",
    )
    parser.add_argument("--config", type=Path, help="configuration file (.toml or .json)")
    parser.add_argument(
        "--min-weight-magnitude", type=int, help="proof of work required (default 9)"
    )
    parser.add_argument(
        "--neighbor",
        action="append",
        default=[],
        metavar="URL",
        help="a neighbour node's URL (repeatable)",
    )
    parser.add_argument(
        "--milestone-interval", type=float, help="seconds between milestones (coordinator)"
    )
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    parser.set_defaults(handler=_run_node)


def node_config_from_args(args: argparse.Namespace) -> NodeConfig:
    config = load_config(args.config)
    changes: dict[str, Any] = {}
    if args.host is not None:
        changes["host"] = args.host
    if args.port is not None:
        changes["port"] = args.port
    if args.database is not None:
        changes["database_url"] = args.database
    if args.min_weight_magnitude is not None:
        changes["min_weight_magnitude"] = args.min_weight_magnitude
    if args.neighbor:
        changes["neighbors"] = (*config.neighbors, *args.neighbor)
    if args.milestone_interval is not None:
        changes["coordinator"] = replace(config.coordinator, interval=args.milestone_interval)
    return replace(config, **changes) if changes else config


async def serve_node(config: NodeConfig) -> None:
    """Run a node until SIGINT or SIGTERM, then shut it down cleanly."""
    from .node.app import NodeServer

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with NodeServer(config) as node:
        print(f"p2p-energy node listening on {node.url}", flush=True)
        await stop.wait()


def _run_node(args: argparse.Namespace) -> int:
    try:
        config = node_config_from_args(args)
    except ConfigError as err:
        print(f"p2p-energy node: configuration error: {err}", file=sys.stderr)
        return 2
    try:
        asyncio.run(serve_node(config))
    except (StorageError, ConfigError, DatabaseUnavailableError) as err:
        print(f"p2p-energy node: {err}", file=sys.stderr)
        return 1
    except OSError as err:
        print(
            f"p2p-energy node: cannot listen on {config.host}:{config.port}: {err}", file=sys.stderr
        )
        return 1
    return 0


def _add_replay_command(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from .grid.settlement.pricing import STRATEGY_NAMES

    parser = subparsers.add_parser(
        "replay",
        help="recompute a settled slot from its stored inputs (or under another mechanism)",
        description=(
            "Settle a slot again from the inputs stored with it (readings, asks, bids, "
            "mechanism and parameters) and compare with what was settled, to the last IOTA; "
            "with --mechanism, show what the slot would have cost under another mechanism. "
            "The grid's database comes from --database, else the grid's configuration "
            "(--config, P2P_ENERGY_GRID_* variables, the data folder)."
        ),
    )
    parser.add_argument(
        "--slot",
        required=True,
        help="'latest', or a time in the slot: Unix milliseconds or ISO 8601 "
        "(2026-12-07T10:05Z; UTC without a zone)",
    )
    parser.add_argument(
        "--mechanism",
        choices=STRATEGY_NAMES,
        help="settle the slot's inputs under this one (parameters the slot's grid did not "
        "set, such as allocation shares, come from the grid's configuration)",
    )
    parser.add_argument("--database", help="the grid's SQLAlchemy URL")
    parser.add_argument("--config", type=Path, help="the grid's configuration file")
    parser.add_argument("--data-dir", type=Path, help="the grid's data folder")
    parser.add_argument("--json", action="store_true", help="print the replay as JSON")
    parser.set_defaults(handler=_run_replay)


def _run_replay(args: argparse.Namespace) -> int:
    import json

    from .grid.config import load_config as load_grid_config
    from .grid.db.engine import Database
    from .grid.settlement.replay import ReplayError, load_slot, render_text, replay, report

    try:
        config = load_grid_config(
            args.config, overrides={"database": args.database, "data_dir": args.data_dir}
        )
    except ConfigError as err:
        print(f"p2p-energy replay: configuration error: {err}", file=sys.stderr)
        return 2
    db = Database(config.database_url, threads=1)
    try:
        if db.schema_revision() != Database.head_revision():
            print(
                "p2p-energy replay: the database is not at this version's schema; "
                "start the grid once to migrate it",
                file=sys.stderr,
            )
            return 1
        with db.read() as session:
            stored = load_slot(session, args.slot, config.market_parameters)
        outcome = replay(stored.inputs, args.mechanism, config.market_parameters)
    except ReplayError as err:
        print(f"p2p-energy replay: {err}", file=sys.stderr)
        return 1
    finally:
        db.close()
    data = report(stored, outcome, args.mechanism or stored.inputs.mechanism)
    print(json.dumps(data, indent=2) if args.json else render_text(data))
    return 1 if data["differences"] else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="p2p-energy", description="P2P Energy Grid: the grid's services"
    )
    subparsers = parser.add_subparsers(dest="service", required=True, metavar="SERVICE")
    _add_node_command(subparsers)
    add_grid_command(subparsers)
    add_demo_command(subparsers)
    add_households_command(subparsers)
    _add_replay_command(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = getattr(args, "log_level", "INFO")
    logging.basicConfig(level=str(level).upper(), format=_LOG_FORMAT)
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
