"""``p2p-energy grid``: run the whole grid from one command."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config_loading import ConfigError, config_section, read_config_document
from ..database_availability import DatabaseUnavailableError
from .config import GridConfig, load_config
from .db.engine import DatabaseError
from .logs import configure_logging

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from aiohttp import web

_LOGGER = logging.getLogger(__name__)


def add_grid_command(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the ``grid`` subcommand on the ``p2p-energy`` parser."""
    parser = subparsers.add_parser(
        "grid",
        help="run the grid: registration and storage APIs, settlement and payouts",
        description=(
            "Run the grid server. Settings come from defaults, then the [grid] table of "
            "--config (TOML or JSON; its [node] table configures the in-process node), then "
            "P2P_ENERGY_GRID_* variables, then flags. Without --node-url the grid starts "
            "its own node in-process."
        ),
    )
    configure_grid_parser(parser)
    parser.set_defaults(handler=run_grid)


def configure_grid_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (default 8080)")
    parser.add_argument(
        "--database",
        help="SQLAlchemy URL (default sqlite:///<data folder>/grid.sqlite3; "
        "postgresql+psycopg://user@host/db for PostgreSQL)",
    )
    parser.add_argument("--node-url", help="the grid's IRI node (default: start one in-process)")
    parser.add_argument("--config", type=Path, help="configuration file (.toml or .json)")
    parser.add_argument("--data-dir", type=Path, help="data folder (default ./data)")
    # Its own dest: the p2p-energy wrapper reads ``log_level`` before the grid configures logs.
    parser.add_argument("--log-level", dest="grid_log_level", help="DEBUG, INFO, WARNING or ERROR")
    parser.add_argument("--log-format", choices=("json", "text"), help="log lines as JSON or text")
    parser.add_argument(
        "--stop-with-parent",
        action="store_true",
        help="stop gracefully when the process that started the grid is gone (used by the demo, "
        "which starts the grid in its own session: a killed demo leaves no grid behind)",
    )


def config_from_args(
    args: argparse.Namespace,
) -> tuple[GridConfig, Mapping[str, Any], Mapping[str, Any]]:
    """The grid configuration, the file's [node] table and the whole document."""
    node_document: Mapping[str, Any] = {}
    document: Mapping[str, Any] = {}
    if args.config is not None:
        document = read_config_document(args.config)
        node_document = config_section(document, "node")
    overrides = {
        "host": args.host,
        "port": args.port,
        "database": args.database,
        "node_url": args.node_url,
        "data_dir": args.data_dir,
        "log_level": args.grid_log_level,
        "log_format": args.log_format,
    }
    return load_config(args.config, overrides), node_document, document


async def _watch_parent(stop: asyncio.Event, interval: float = 1.0) -> None:
    """Set ``stop`` once this process's parent is gone (it is then re-parented).

    Comparing ``getppid`` avoids trusting a parent PID that the system may reuse.
    """
    parent = os.getppid()
    while not stop.is_set():
        if os.getppid() != parent:
            _LOGGER.warning("the process that started the grid (pid %d) is gone; stopping", parent)
            stop.set()
            return
        await asyncio.sleep(interval)


async def serve_grid(
    config: GridConfig,
    node_document: Mapping[str, Any],
    document: Mapping[str, Any],
    *,
    stop_with_parent: bool = False,
) -> None:
    """Run until SIGINT or SIGTERM (or the parent's end), then shut down gracefully."""
    from grid_server.portal.app import setup_portal
    from grid_server.portal.config import load_portal_config

    from .server import GridServer

    portal = load_portal_config(document)

    def mount_portal(app: web.Application, node_url: str) -> None:
        setup_portal(app, portal, data_dir=config.data_dir, node_url=node_url)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    watcher = asyncio.create_task(_watch_parent(stop)) if stop_with_parent else None
    try:
        async with GridServer(config, node_document=node_document, app_setup=mount_portal) as grid:
            print(f"p2p-energy grid listening on {grid.url} (node {grid.node_url})", flush=True)
            await stop.wait()
    finally:
        if watcher is not None:
            watcher.cancel()


def run_grid(args: argparse.Namespace) -> int:
    try:
        config, node_document, document = config_from_args(args)
    except ConfigError as err:
        print(f"p2p-energy grid: configuration error: {err}", file=sys.stderr)
        return 2
    configure_logging(config.log_level, config.log_format)
    try:
        asyncio.run(
            serve_grid(config, node_document, document, stop_with_parent=args.stop_with_parent)
        )
    except (ConfigError, DatabaseError, DatabaseUnavailableError, ValueError) as err:
        print(f"p2p-energy grid: {err}", file=sys.stderr)
        return 1
    except OSError as err:
        print(f"p2p-energy grid: cannot start: {err}", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``p2p-energy grid`` options as a stand-alone parser."""
    parser = argparse.ArgumentParser(prog="p2p-energy grid", description="Run the grid server.")
    configure_grid_parser(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point usable without the ``p2p-energy`` wrapper (``python -m grid_server.grid``)."""
    return run_grid(build_parser().parse_args(argv))
