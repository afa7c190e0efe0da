"""Constants of the P2P Energy Grid integration."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Final

DOMAIN: Final = "p2p_energy"
LOGGER = logging.getLogger(__package__)

# Config entry data: one entry per grid connection.
CONF_GRID_URL: Final = "grid_url"
CONF_NODE_URL: Final = "node_url"
CONF_MIN_WEIGHT_MAGNITUDE: Final = "min_weight_magnitude"

# Config entry options.
CONF_PUBLISH_INTERVAL: Final = "publish_interval"
CONF_MAX_POWER: Final = "max_power"
CONF_PROOF_OF_WORK: Final = "proof_of_work"
# Where this household's bundles get their proof of work: in Home Assistant's executor
# threads, or on the grid's node (attachToTangle, one request at a time for everyone).
POW_LOCAL: Final = "local"
POW_NODE: Final = "node"
PROOF_OF_WORK_CHOICES: Final = (POW_LOCAL, POW_NODE)
DEFAULT_PROOF_OF_WORK: Final = POW_LOCAL

# Subentries: one per source, producer or consumer.
SUBENTRY_SOURCE: Final = "source"
SUBENTRY_PRODUCER: Final = "producer"
SUBENTRY_CONSUMER: Final = "consumer"
SUBENTRY_TYPES: Final = (SUBENTRY_SOURCE, SUBENTRY_PRODUCER, SUBENTRY_CONSUMER)

CONF_METER: Final = "meter"
CONF_SEED: Final = "seed"
CONF_SIDE_KEY: Final = "side_key"
CONF_WALLET_SEED: Final = "wallet_seed"
CONF_REGISTRATION_ID: Final = "registration_id"
CONF_ITEM_TYPE: Final = "item_type"
CONF_PRODUCER_URL: Final = "producer_url"
CONF_SOURCES: Final = "sources"
CONF_PRICE: Final = "price"
# A consumer's bid: the most it pays per kWh of local energy (IOTA per kWh; absent: no bid).
CONF_MAX_PRICE: Final = "max_price"
CONF_FORECAST_ENTITY: Final = "forecast_entity"
CONF_API_TOKEN: Final = "api_token"

DEFAULT_NODE_PORT: Final = 14265
DEFAULT_MIN_WEIGHT_MAGNITUDE: Final = 9
DEFAULT_PUBLISH_INTERVAL: Final = 900
MIN_PUBLISH_INTERVAL: Final = 10
MAX_PUBLISH_INTERVAL: Final = 86_400
DEFAULT_MAX_POWER: Final = 250.0

# Network state is polled; what is published is pushed on the period timer.
UPDATE_INTERVAL: Final = timedelta(seconds=30)
# The repair issue is raised once the grid has been unreachable this long.
UNREACHABLE_ISSUE_AFTER: Final = timedelta(minutes=15)


# The producer registration API of the blueprint, one base URL per producer:
#   PUT    {base}/registration/{registrationId}
#   DELETE {base}/registration/{registrationId}/{sideKey}
PRODUCER_API_BASE: Final = "/api/p2p_energy/producer/{token}"

ISSUE_GRID_UNREACHABLE: Final = "grid_unreachable"
ISSUE_CURRENCY_MISMATCH: Final = "currency_mismatch"
# Kept with the connection's facts: the grid's last published currency rate.
CONF_CURRENCY_RATE: Final = "currency_rate"

ATTR_DEVICE_ID: Final = "device_id"
SERVICE_PAY_BILL: Final = "pay_bill"
SERVICE_PUBLISH_NOW: Final = "publish_now"
SERVICE_ROTATE_CHANNEL: Final = "rotate_channel"
SERVICE_DEREGISTER: Final = "deregister"
SERVICE_SEND_IOTA: Final = "send_iota"
SERVICE_EXPORT_SEED: Final = "export_seed"
SERVICE_GET_STATEMENT: Final = "get_statement"
ATTR_ADDRESS: Final = "address"
ATTR_AMOUNT: Final = "amount"

UNIT_IOTA: Final = "IOTA"
UNIT_IOTA_PER_KWH: Final = "IOTA/kWh"
