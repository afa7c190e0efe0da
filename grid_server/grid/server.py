"""The running grid: database, node (remote or in-process), HTTP API, background work.

``async with GridServer(config) as grid:`` starts everything; leaving the block
(or :meth:`GridServer.stop`) shuts down gracefully: the HTTP server stops taking
requests, each background worker finishes the step it is in (a slot being settled
is committed or rolled back, never left half done), the leader lease is released
and the database is closed.

Several grid processes may share one PostgreSQL database: each serves the API,
and only the holder of the leader lease runs the background work, the stages of
:mod:`.pipeline` (follow → settle → bill → pay, and collect).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Self

import aiohttp
from aiohttp import web
from p2p_energy_protocol.client import IriClient
from p2p_energy_protocol.errors import NodeError
from p2p_energy_protocol.signing import generate_address
from p2p_energy_protocol.trinary import random_trytes
from sqlalchemy import func, select

from ..config_loading import ConfigError
from ..database_availability import database_unavailable, wait_for_database
from ..http_safety import GuardedAppRunner, HttpTimeouts
from .api.context import GridServices
from .app import create_app
from .billing import PaymentMonitor, PaymentRequests
from .clock import system_clock
from .db.engine import Database
from .db.models import GridSetting, Settlement
from .follower import BulkMamReader, ChannelFollower
from .lease import LeaderLease
from .pipeline import GridPipeline
from .proof_of_work import ProcessPoolProofOfWork
from .registrations import RegistrationLimits, RegistrationService
from .return_channels import ReturnChannels
from .settlement.service import SettlementService
from .statements import StatementService
from .storage import StorageService
from .tangle import MamTangle
from .units import micro_to_price
from .wallet import GridWallet

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

    from sqlalchemy.orm import Session

    from grid_server.node.app import NodeServer
    from grid_server.node.config import NodeConfig

    from .clock import Clock
    from .config import GridConfig

_LOGGER = logging.getLogger(__name__)
WALLET_SEED_SETTING = "wallet_seed"


def _stored_seed(session: Session, now: int) -> str:
    """The wallet seed kept in the database, created on first use."""
    row = session.get(GridSetting, WALLET_SEED_SETTING)
    if row is None:
        row = GridSetting(name=WALLET_SEED_SETTING, value=random_trytes(), created_at=now)
        session.add(row)
    return row.value


class GridServer:
    def __init__(
        self,
        config: GridConfig,
        *,
        node_document: Mapping[str, Any] | None = None,
        app_setup: Callable[[web.Application, str], None] | None = None,
        clock: Clock = system_clock,
    ) -> None:
        """``node_document`` is the configuration file's ``[node]`` table (in-process node);
        ``app_setup(app, node_url)`` may add routes (the portal) before serving starts."""
        self.config = config
        self._node_document = node_document or {}
        self._app_setup = app_setup
        self._clock = clock
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.url = ""
        self.node_url = config.node_url or ""
        self.db: Database | None = None
        self._session: aiohttp.ClientSession | None = None
        self._node_server: NodeServer | None = None
        self._runner: web.AppRunner | None = None
        self._cpu: ThreadPoolExecutor | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()
        self._pipeline: GridPipeline | None = None
        self._lease: LeaderLease | None = None
        self.settlement: SettlementService | None = None
        self.wallet: GridWallet | None = None
        self._node_client: IriClient | None = None
        self._proof_of_work: ProcessPoolProofOfWork | None = None
        self.app: web.Application | None = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        """Database, wallet seed, node, services, HTTP; then the pipeline under the lease."""
        db = await self._open_database()
        seed = await self._wallet_seed(db)
        self._cpu = ThreadPoolExecutor(max_workers=1, thread_name_prefix="grid-cpu")
        self._session = aiohttp.ClientSession()
        node_client = await self._connect_node(seed)
        services, pipeline = await self._assemble(db, node_client, seed)
        await self._serve(services)
        self._lease = LeaderLease(db, "grid", self.holder, self.config.lease_seconds, self._clock)
        self._pipeline = pipeline
        self._tasks = [asyncio.create_task(self._keep_lease(), name="grid-lease")]
        self._tasks += [
            self._worker(stage.name, stage.interval, stage.run, stage.wake)
            for stage in pipeline.stages()
        ]
        _LOGGER.info(
            "grid listening on %s (node %s, database %s, leader candidate %s)",
            self.url,
            self.node_url,
            db,
            self.holder,
        )

    async def _open_database(self) -> Database:
        self.db = db = Database(self.config.database_url)
        # A database server that starts alongside the grid (or restarts) is waited for.
        await wait_for_database(
            functools.partial(db.run, db.migrate),
            purpose="bringing the grid's database schema up to date",
            wait_seconds=self.config.database_wait,
        )
        return db

    async def _wallet_seed(self, db: Database) -> str:
        if self.config.wallet_seed is not None:
            return self.config.wallet_seed
        return await db.run_write(functools.partial(_stored_seed, now=self._clock()))

    async def _connect_node(self, seed: str) -> IriClient:
        """The client of the grid's node, starting the node in-process without ``node_url``."""
        config = self.config
        assert self._cpu is not None
        assert self._session is not None
        if config.node_url is None:
            loop = asyncio.get_running_loop()
            treasury = await loop.run_in_executor(
                self._cpu, generate_address, seed, 0, config.wallet_security
            )
            self.node_url = await self._start_node(treasury)
        if config.local_pow_workers > 0:  # the grid's own bundles: PoW in worker processes
            self._proof_of_work = ProcessPoolProofOfWork(config.local_pow_workers)
        self._node_client = IriClient(
            self._session,
            self.node_url,
            timeout=config.node_timeout,
            proof_of_work=self._proof_of_work,
        )
        return self._node_client

    async def _assemble(
        self, db: Database, node_client: IriClient, seed: str
    ) -> tuple[GridServices, GridPipeline]:
        """The services behind the HTTP API and the pipeline of background stages."""
        config = self.config
        assert self._cpu is not None
        self.wallet = wallet = GridWallet(
            db,
            node_client,
            seed,
            self._clock,
            self._cpu,
            security=config.wallet_security,
            depth=config.depth,
            min_weight_magnitude=config.min_weight_magnitude,
            batch_size=config.payout_batch_size,
            bundles_in_flight=config.payout_bundles_in_flight,
            reattach_seconds=config.reattach_seconds,
        )
        await wallet.treasury_address()
        tangle = MamTangle(
            node_client, depth=config.depth, min_weight_magnitude=config.min_weight_magnitude
        )
        # Batched MAM creation on the proof-of-work workers too: off the grid's GIL.
        return_channels = ReturnChannels(
            db, tangle, self._cpu, self._clock, offload=self._proof_of_work
        )
        self.settlement = SettlementService(db, config, self._clock, self.holder)
        pipeline = GridPipeline(
            config,
            follower=ChannelFollower(db, BulkMamReader(node_client), self._clock, config),
            settlement=self.settlement,
            requests=PaymentRequests(
                db, return_channels, wallet, self._clock, rate=config.currency_rate
            ),
            return_channels=return_channels,
            wallet=wallet,
            monitor=PaymentMonitor(
                db,
                node_client,
                self._clock,
                unconfirmable_seconds=config.payment_unconfirmable_seconds,
                pending_expiry_seconds=config.payment_pending_expiry,
            ),
            stopping=self._stopping,
            clock=self._clock,
        )
        services = GridServices(
            config=config,
            db=db,
            registrations=RegistrationService(
                db,
                tangle,
                return_channels,
                self._clock,
                auth=config.storage_auth,
                hello_search_limit=config.hello_search_limit,
                notify_outbox=pipeline.bill_due.set,
                limits=RegistrationLimits.from_config(config),
            ),
            storage=StorageService(
                db,
                self._clock,
                auth=config.storage_auth,
                max_item_bytes=config.max_item_bytes,
                max_items=config.max_items_per_registration,
            ),
            health=self.health,
            statements=StatementService(db, config, self._clock),
        )
        return services, pipeline

    async def _serve(self, services: GridServices) -> None:
        config = self.config
        self.app = create_app(services)
        if self._app_setup is not None:
            self._app_setup(self.app, self.node_url)
        self._runner = GuardedAppRunner(
            self.app,
            HttpTimeouts(config.http_idle_timeout, config.http_request_timeout),
            access_log=None,
            shutdown_timeout=config.shutdown_timeout,
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, config.host, config.port)
        await site.start()
        port = self._runner.addresses[0][1] if self._runner.addresses else config.port
        host = f"[{config.host}]" if ":" in config.host else config.host
        self.url = f"http://{host}:{port}"

    async def _start_node(self, treasury: str) -> str:
        from grid_server.node.app import NodeServer
        from grid_server.node.config import (
            NodeConfig,
            config_from_mapping,
            default_database_url,
        )

        node_config: NodeConfig = config_from_mapping(self._node_document, NodeConfig())
        if "database" not in self._node_document:
            node_config = replace(
                node_config, database_url=default_database_url(self.config.data_dir)
            )
        if not node_config.genesis and self.config.wallet_genesis_balance > 0:
            node_config = replace(
                node_config, genesis={treasury: self.config.wallet_genesis_balance}
            )
        if node_config.min_weight_magnitude > self.config.min_weight_magnitude:
            if self.config.local_pow_workers > 0:
                # Work done here is not raised to the node's minimum: all of it would be refused.
                raise ConfigError(
                    f"min_weight_magnitude {self.config.min_weight_magnitude} is below the "
                    f"node's {node_config.min_weight_magnitude}: the node would refuse every "
                    "bundle the grid attaches with local_pow_workers; raise the grid's weight"
                )
            _LOGGER.warning(
                "the node requires weight %d but the grid attaches with %d (the node raises it)",
                node_config.min_weight_magnitude,
                self.config.min_weight_magnitude,
            )
        self._node_server = NodeServer(node_config, session=self._session)
        await self._node_server.start()
        _LOGGER.info("started the grid's node in-process at %s", self._node_server.url)
        return self._node_server.url

    def _worker(
        self,
        name: str,
        interval: float,
        work: Callable[[], Awaitable[Any]],
        wake: asyncio.Event | None = None,
    ) -> asyncio.Task[None]:
        async def run() -> None:
            while not self._stopping.is_set():
                if self._lease is not None and self._lease.held:
                    try:
                        await work()
                    except Exception as err:
                        if not database_unavailable(err):
                            _LOGGER.exception("the %s worker failed; retrying next round", name)
                        else:
                            # Expected while PostgreSQL restarts: one line, no traceback.
                            _LOGGER.warning("the %s worker waits for the database: %s", name, err)
                await self._pause(interval, wake)

        return asyncio.create_task(run(), name=f"grid-{name}")

    async def _pause(self, seconds: float, wake: asyncio.Event | None) -> None:
        waiters = [asyncio.ensure_future(self._stopping.wait())]
        if wake is not None:
            waiters.append(asyncio.ensure_future(wake.wait()))
        try:
            await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)
        if wake is not None:
            wake.clear()

    async def _keep_lease(self) -> None:
        assert self._lease is not None
        while not self._stopping.is_set():
            was_leader = self._lease.held
            try:
                await self._lease.acquire_or_renew()
            except Exception as err:
                if not database_unavailable(err):
                    _LOGGER.exception("cannot renew the leader lease")
                else:
                    _LOGGER.warning("cannot renew the leader lease: %s", err)
                self._lease.held = False
            if self._lease.held and not was_leader and self._pipeline is not None:
                self._pipeline.became_leader()
            await self._pause(self.config.lease_seconds / 3, None)

    @property
    def is_leader(self) -> bool:
        return self._lease is not None and self._lease.held

    async def health(self) -> tuple[bool, dict[str, Any]]:
        """(healthy, details): the database must answer; a node outage degrades."""
        details: dict[str, Any] = {
            "storageAuth": self.config.storage_auth,
            "leader": self.is_leader,
        }
        db = self.db
        try:
            assert db is not None
            revision, last_slot, price_micro = await asyncio.wait_for(
                db.run_read(
                    lambda session: (
                        db.schema_revision(),
                        session.scalar(select(func.max(Settlement.slot_start))),
                        session.scalar(
                            select(Settlement.consensus_price_micro)
                            .where(Settlement.consensus_price_micro.is_not(None))
                            .order_by(Settlement.slot_start.desc())
                            .limit(1)
                        ),
                    )
                ),
                timeout=5,
            )
            # Households show the market price without an operator login (HA sensor).
            details.update(
                database="ok",
                schemaRevision=revision,
                lastSettledSlot=last_slot,
                consensusPrice=None if price_micro is None else micro_to_price(price_micro),
            )
            # The operator's fixed rate beside the price (absent without one).
            rate = self.config.currency_rate
            if rate is not None:
                details.update(rate.to_json())
        except Exception as err:  # any database failure makes the grid unhealthy
            _LOGGER.warning("health: database unavailable: %s", err)
            details.update(status="error", database="unavailable", node="unknown")
            return False, details
        node = "ok"
        try:
            assert self._node_client is not None
            await asyncio.wait_for(self._node_client.get_node_info(), timeout=5)
        except (NodeError, TimeoutError, AssertionError):
            node = "unavailable"
        details.update(node=node, status="ok" if node == "ok" else "degraded")
        return True, details

    async def stop(self) -> None:
        """Graceful shutdown (safe to call more than once)."""
        self._stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._tasks:
            done, pending = await asyncio.wait(self._tasks, timeout=self.config.shutdown_timeout)
            for task in pending:
                _LOGGER.warning("stopping %s without waiting further", task.get_name())
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            del done
            self._tasks = []
        if self._lease is not None and self._lease.held:
            with contextlib.suppress(Exception):
                await self._lease.release()
        if self._node_server is not None:
            await self._node_server.stop()
            self._node_server = None
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._cpu is not None:
            self._cpu.shutdown(wait=True)
            self._cpu = None
        if self._proof_of_work is not None:
            await self._proof_of_work.close()
            self._proof_of_work = None
        if self.db is not None:
            self.db.close()
            self.db = None
        _LOGGER.info("grid stopped")
