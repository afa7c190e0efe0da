"""The grid's Tangle node: the legacy IRI HTTP API over a private IOTA network.

Run it with ``p2p-energy node`` or in-process::

    async with NodeServer(NodeConfig(port=0, database_url=...)) as node:
        ...  # node.url
"""

from ..config_loading import ConfigError
from .app import NodeServer, create_node_app
from .config import ApiLimits, CoordinatorConfig, NodeConfig, load_config_file
from .errors import CommandError
from .runtime import NodeRuntime

__all__ = [
    "ApiLimits",
    "CommandError",
    "ConfigError",
    "CoordinatorConfig",
    "NodeConfig",
    "NodeRuntime",
    "NodeServer",
    "create_node_app",
    "load_config_file",
]
