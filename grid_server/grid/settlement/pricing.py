"""Consensus price strategies among the producers of one settlement.

Every strategy gets the producers' offers (energy delivered and asking price) and
the consumers' demand, and returns one price in micro-IOTA per kWh, or ``None``
when no producer delivered energy (then nothing is traded locally). Only offers
with energy and a price take part.

* ``mean``: the plain average of the asking prices.
* ``weighted-mean`` (default, as the blueprint suggests): asking prices weighted
  by the energy each producer delivered.
* ``merit-order``: uniform-price clearing. Offers are taken cheapest first until
  they cover the demand; the ask of the last (marginal) offer taken is everybody's
  price, capped at the retail import price (consumers would import instead). With
  no demand the cheapest ask stands; when supply falls short every offer is taken.
* ``supply-demand``: supply-demand ratio pricing (Liu et al., 2017). With
  ``SDR = supply / demand``: for ``SDR < 1`` the price is
  ``import * export / ((import - export) * SDR + export)``, falling from the retail
  import price (no supply) to the feed-in export price (supply meets demand); for
  ``SDR >= 1`` it is the export price. Asking prices are not used.

:data:`STRATEGIES` is the one list of a grid's market mechanisms: these uniform
strategies and the matching mechanisms of :mod:`.mechanisms` (``pay-as-clear``,
``pay-as-bid``, ``allocation-static``, ``allocation-dynamic``). The grid's
configuration validates against it and the add-on's options are derived from it (its
``config.yaml`` schema is checked against it by the tests).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Final, Literal, get_args

from .mechanisms import (
    ClearingMechanism,
    MarketParameters,
    allocation_dynamic,
    allocation_static,
    pay_as_bid,
    pay_as_clear,
)


class PricingError(ValueError):
    """A strategy was asked for that does not exist or got inconsistent input."""


@dataclass(frozen=True, slots=True)
class Offer:
    """What one producer delivered in a settlement and asks for it."""

    registration_id: str
    energy_milliwh: int
    price_micro: int | None


@dataclass(frozen=True, slots=True)
class Tariff:
    """The main grid's prices and the grid's cut."""

    import_price_micro: int
    """Retail price of energy imported from the main grid (micro-IOTA per kWh)."""
    export_price_micro: int
    """Feed-in price of surplus exported to the main grid (micro-IOTA per kWh)."""
    grid_cut_ppm: int
    """The grid's share of the value traded locally, in parts per million."""

    def __post_init__(self) -> None:
        if not 0 <= self.export_price_micro <= self.import_price_micro:
            raise PricingError("the tariff needs 0 <= export price <= import price")
        if not 0 <= self.grid_cut_ppm <= 1_000_000:
            raise PricingError("the grid cut must be between 0 and 1,000,000 ppm")


PricingStrategy = Callable[[Sequence[Offer], int, Tariff], int | None]


def _priced(offers: Sequence[Offer]) -> list[tuple[Offer, int]]:
    return [
        (offer, offer.price_micro)
        for offer in offers
        if offer.energy_milliwh > 0 and offer.price_micro is not None
    ]


def mean_price(offers: Sequence[Offer], demand_milliwh: int, tariff: Tariff) -> int | None:
    """The plain average of the asking prices."""
    priced = _priced(offers)
    if not priced:
        return None
    return round(Fraction(sum(price for _, price in priced), len(priced)))


def weighted_mean_price(offers: Sequence[Offer], demand_milliwh: int, tariff: Tariff) -> int | None:
    """The asking prices weighted by the energy each producer delivered."""
    priced = _priced(offers)
    if not priced:
        return None
    weight = sum(offer.energy_milliwh for offer, _ in priced)
    return round(Fraction(sum(offer.energy_milliwh * price for offer, price in priced), weight))


def merit_order_price(offers: Sequence[Offer], demand_milliwh: int, tariff: Tariff) -> int | None:
    """Uniform-price clearing: the marginal ask that covers the demand."""
    priced = sorted(_priced(offers), key=lambda item: (item[1], item[0].registration_id))
    if not priced:
        return None
    marginal = priced[-1][1]
    covered = 0
    for offer, price in priced:
        covered += offer.energy_milliwh
        if covered >= demand_milliwh:
            marginal = price
            break
    return min(marginal, tariff.import_price_micro)


def supply_demand_price(offers: Sequence[Offer], demand_milliwh: int, tariff: Tariff) -> int | None:
    """Supply-demand ratio pricing between the export and import prices."""
    supply = sum(offer.energy_milliwh for offer in offers if offer.energy_milliwh > 0)
    if supply == 0:
        return None
    buy, sell = tariff.import_price_micro, tariff.export_price_micro
    if demand_milliwh <= 0 or supply >= demand_milliwh:
        return sell
    if sell == 0:
        raise PricingError("supply-demand pricing needs a positive export price")
    ratio = Fraction(supply, demand_milliwh)
    return round(Fraction(buy * sell) / ((buy - sell) * ratio + sell))


PricingStrategyName = Literal[
    "mean",
    "weighted-mean",
    "merit-order",
    "supply-demand",
    "pay-as-clear",
    "pay-as-bid",
    "allocation-static",
    "allocation-dynamic",
]


@dataclass(frozen=True, slots=True)
class StrategyInfo:
    """A mechanism: a uniform price strategy or a matching mechanism, and its needs."""

    price: PricingStrategy | None = None
    """Uniform strategies: the one price of all local energy."""
    clear: ClearingMechanism | None = None
    """Matching mechanisms: who buys how much from whom at what price."""
    needs_export_price: bool = False
    """The strategy divides by the export price, so it must be positive."""
    needs_shares: bool = False
    """Static allocation keys: the consumers' shares must be configured."""
    uses_preferences: bool = False
    """Consumers' preferred producers are matched first."""
    uses_community_price: bool = False
    """Local energy is at the grid's fixed community price."""
    bids_respected: bool = False
    """No consumer pays above its bid, no producer gets below its ask for local energy."""


STRATEGIES: Final[Mapping[PricingStrategyName, StrategyInfo]] = {
    "mean": StrategyInfo(mean_price),
    "weighted-mean": StrategyInfo(weighted_mean_price),
    "merit-order": StrategyInfo(merit_order_price),
    "supply-demand": StrategyInfo(supply_demand_price, needs_export_price=True),
    "pay-as-clear": StrategyInfo(clear=pay_as_clear, bids_respected=True),
    "pay-as-bid": StrategyInfo(clear=pay_as_bid, uses_preferences=True, bids_respected=True),
    "allocation-static": StrategyInfo(
        clear=allocation_static, needs_shares=True, uses_community_price=True
    ),
    "allocation-dynamic": StrategyInfo(clear=allocation_dynamic, uses_community_price=True),
}
STRATEGY_NAMES: Final[tuple[PricingStrategyName, ...]] = get_args(PricingStrategyName)
DEFAULT_STRATEGY: Final[PricingStrategyName] = "weighted-mean"
if set(STRATEGIES) != set(STRATEGY_NAMES):  # the type and the registry are one list
    raise AssertionError("PricingStrategyName and STRATEGIES name different strategies")


def strategy_by_name(name: str) -> StrategyInfo:
    """The strategy called ``name`` (see the module documentation)."""
    for known, strategy in STRATEGIES.items():
        if known == name:
            return strategy
    raise PricingError(f"unknown pricing strategy {name!r}; choose one of {', '.join(STRATEGIES)}")


def check_strategy(
    name: str, tariff: Tariff, params: MarketParameters | None = None
) -> StrategyInfo:
    """The mechanism called ``name`` if it can settle with ``tariff`` and ``params``.

    Raises :class:`PricingError` naming what is missing or does not fit.
    """
    strategy = strategy_by_name(name)
    params = params or MarketParameters()
    if strategy.needs_export_price and tariff.export_price_micro <= 0:
        raise PricingError(f"the {name} strategy needs a positive export price")
    if strategy.needs_shares and not any(share > 0 for _, share in params.shares):
        raise PricingError(f"the {name} mechanism needs the consumers' allocation shares")
    if params.shares and not strategy.needs_shares:
        raise PricingError(f"allocation shares are only used by allocation-static, not {name}")
    if any(share < 0 for _, share in params.shares):
        raise PricingError("allocation shares must not be negative")
    if params.preferences and not strategy.uses_preferences:
        raise PricingError(f"preferences are only used by pay-as-bid, not {name}")
    price = params.community_price_micro
    if price is not None:
        if not strategy.uses_community_price:
            raise PricingError(f"a community price is only used by allocation keys, not {name}")
        if not tariff.export_price_micro <= price <= tariff.import_price_micro:
            raise PricingError("the community price must lie between the export and import prices")
    return strategy


def relevant_parameters(strategy: StrategyInfo, params: MarketParameters) -> MarketParameters:
    """``params`` without what ``strategy`` does not use (a replay under another mechanism)."""
    return MarketParameters(
        community_price_micro=params.community_price_micro
        if strategy.uses_community_price
        else None,
        shares=params.shares if strategy.needs_shares else (),
        preferences=params.preferences if strategy.uses_preferences else (),
    )
