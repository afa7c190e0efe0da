"""Market mechanisms that match consumers with producers (bids and asks).

Unlike the uniform strategies of :mod:`.pricing` (one price for all local energy,
every consumer paying the same blended rate), these decide who buys how much
local energy from whom and at what price; what a consumer does not buy locally is
imported at the retail price, what a producer does not sell is exported at the
feed-in price (:func:`.engine.settle_clearing` does the money).

A consumer's bid is the most it pays per kWh of local energy; without one it bids
the retail import price (what it pays anyway). A producer's ask is the least it
takes; without one it asks the feed-in export price (what it gets anyway). Bids are
taken at most at the import price and asks at least at the export price, so local
trade never leaves anybody worse off than trading with the main grid.

* ``pay-as-clear``: a double auction. Bids from the highest, asks from the lowest,
  are matched while the bid covers the ask; everybody trades at one clearing price,
  the midpoint of the last matched bid and ask, so no matched consumer pays above
  its bid and no matched producer gets below its ask.
* ``pay-as-bid``: the same matching, but each match is at the consumer's bid
  (two-sided pay-as-bid); a consumer's preferred producers are matched first.
* ``allocation-static`` / ``allocation-dynamic``: energy-community allocation keys.
  Production is shared among consumers by fixed shares (static; a consumer takes at
  most what it used, an unused share is exported) or in proportion to consumption
  (dynamic), all at one fixed community price; bids and asks are not used.

Energy is whole mWh, prices micro-IOTA per kWh, values mWh x micro-IOTA per kWh
(exact integers). Ties go to the smaller registration id.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING

from .split import allocate

if TYPE_CHECKING:
    from .pricing import Offer, Tariff


@dataclass(frozen=True, slots=True)
class Bid:
    """What one consumer used in a settlement and the most it pays per kWh."""

    registration_id: str
    energy_milliwh: int
    bid_micro: int | None


@dataclass(frozen=True, slots=True)
class MarketParameters:
    """A grid's settings for the mechanisms (recorded with every slot for replays)."""

    community_price_micro: int | None = None
    """Allocation keys' price per kWh; None: midway between import and export."""
    shares: tuple[tuple[str, int], ...] = ()
    """Static allocation key: each consumer's share (relative weights)."""
    preferences: tuple[tuple[str, tuple[str, ...]], ...] = ()
    """Pay-as-bid: a consumer's preferred producers, matched first in this order."""

    def to_json(self) -> dict[str, object]:
        return {
            "communityPriceMicro": self.community_price_micro,
            "shares": dict(self.shares),
            "preferences": {consumer: list(order) for consumer, order in self.preferences},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> MarketParameters:
        price = data.get("communityPriceMicro")
        shares = data.get("shares") or {}
        preferences = data.get("preferences") or {}
        if not isinstance(shares, dict) or not isinstance(preferences, dict):
            raise ValueError("market parameters need 'shares' and 'preferences' objects")
        return cls(
            community_price_micro=int(price) if isinstance(price, int) else None,
            shares=tuple(sorted((str(k), int(v)) for k, v in shares.items())),
            preferences=tuple(
                sorted((str(k), tuple(str(p) for p in v)) for k, v in preferences.items())
            ),
        )


@dataclass(frozen=True, slots=True)
class Clearing:
    """Who bought and sold how much local energy, and its value."""

    price_micro: int | None
    """The slot's recorded price: the clearing price, the community price, or (pay-as-bid)
    the energy-weighted mean of the matches; None when nothing traded locally."""
    bought: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    """Consumer id -> (local mWh, value in mWh x micro-IOTA per kWh)."""
    sold: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    """Producer id -> (local mWh, value in mWh x micro-IOTA per kWh)."""


ClearingMechanism = Callable[
    ["Sequence[Offer]", "Sequence[Bid]", "Tariff", MarketParameters], Clearing
]


def bid_price(bid: Bid, tariff: Tariff) -> int:
    """The consumer's bid (at most the retail import price), or that price without one."""
    if bid.bid_micro is None:
        return tariff.import_price_micro
    return min(bid.bid_micro, tariff.import_price_micro)


def ask_price(offer: Offer, tariff: Tariff) -> int:
    """The producer's ask (at least the feed-in export price), or that price without one."""
    if offer.price_micro is None:
        return tariff.export_price_micro
    return max(offer.price_micro, tariff.export_price_micro)


def _bid_order(bids: Sequence[Bid], tariff: Tariff) -> list[tuple[str, int, int]]:
    ordered = [(b.registration_id, b.energy_milliwh, bid_price(b, tariff)) for b in bids]
    return sorted((b for b in ordered if b[1] > 0), key=lambda b: (-b[2], b[0]))


def _ask_order(offers: Sequence[Offer], tariff: Tariff) -> list[tuple[str, int, int]]:
    ordered = [(o.registration_id, o.energy_milliwh, ask_price(o, tariff)) for o in offers]
    return sorted((o for o in ordered if o[1] > 0), key=lambda o: (o[2], o[0]))


@dataclass(slots=True)
class _Book:
    """Matches made so far: (consumer, producer, mWh, price) and what is left."""

    demand: dict[str, int]
    supply: dict[str, int]
    matches: list[tuple[str, str, int, int]] = field(default_factory=list)

    def match(self, consumer: str, producer: str, price: int) -> None:
        energy = min(self.demand[consumer], self.supply[producer])
        if energy > 0:
            self.demand[consumer] -= energy
            self.supply[producer] -= energy
            self.matches.append((consumer, producer, energy, price))

    def clearing(self, price: int | None, price_of: Callable[[int], int]) -> Clearing:
        bought: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        sold: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for consumer, producer, energy, matched_price in self.matches:
            value = energy * price_of(matched_price)
            bought[consumer][0] += energy
            bought[consumer][1] += value
            sold[producer][0] += energy
            sold[producer][1] += value
        return Clearing(
            price,
            {k: (v[0], v[1]) for k, v in bought.items()},
            {k: (v[0], v[1]) for k, v in sold.items()},
        )


def _match_merit(
    book: _Book, bids: list[tuple[str, int, int]], asks: list[tuple[str, int, int]]
) -> tuple[int, int] | None:
    """Match the highest bids with the lowest asks while bid >= ask; the last pair's prices."""
    last: tuple[int, int] | None = None
    i = j = 0
    while i < len(bids) and j < len(asks):
        consumer, _, bid = bids[i]
        producer, _, ask = asks[j]
        if book.demand[consumer] == 0:
            i += 1
            continue
        if book.supply[producer] == 0:
            j += 1
            continue
        if bid < ask:
            break
        book.match(consumer, producer, bid)
        last = (bid, ask)
    return last


def pay_as_clear(
    offers: Sequence[Offer], bids: Sequence[Bid], tariff: Tariff, params: MarketParameters
) -> Clearing:
    """Double auction at one clearing price (midpoint of the marginal bid and ask)."""
    bid_book, ask_book = _bid_order(bids, tariff), _ask_order(offers, tariff)
    book = _Book({b[0]: b[1] for b in bid_book}, {a[0]: a[1] for a in ask_book})
    last = _match_merit(book, bid_book, ask_book)
    if last is None:
        return Clearing(None)
    price = round(Fraction(last[0] + last[1], 2))
    return book.clearing(price, lambda _matched: price)


def pay_as_bid(
    offers: Sequence[Offer], bids: Sequence[Bid], tariff: Tariff, params: MarketParameters
) -> Clearing:
    """Each match at the consumer's bid; preferred producers first."""
    bid_book, ask_book = _bid_order(bids, tariff), _ask_order(offers, tariff)
    book = _Book({b[0]: b[1] for b in bid_book}, {a[0]: a[1] for a in ask_book})
    asks = {a[0]: a[2] for a in ask_book}
    preferred = dict(params.preferences)
    for consumer, _, bid in bid_book:
        for producer in preferred.get(consumer, ()):
            if producer in asks and asks[producer] <= bid:
                book.match(consumer, producer, bid)
    _match_merit(book, bid_book, ask_book)
    energy = sum(m[2] for m in book.matches)
    if energy == 0:
        return Clearing(None)
    mean = round(Fraction(sum(m[2] * m[3] for m in book.matches), energy))
    return book.clearing(mean, lambda matched: matched)


def community_price(tariff: Tariff, params: MarketParameters) -> int:
    """The allocation keys' fixed price (configured, or midway between import and export)."""
    if params.community_price_micro is not None:
        return params.community_price_micro
    return (tariff.import_price_micro + tariff.export_price_micro) // 2


def _allocated(bought_energy: Mapping[str, int], offers: Sequence[Offer], price: int) -> Clearing:
    local = sum(bought_energy.values())
    if local == 0:
        return Clearing(None)
    producing = [o for o in offers if o.energy_milliwh > 0]
    sold = allocate(
        local, [o.energy_milliwh for o in producing], [o.registration_id for o in producing]
    )
    return Clearing(
        price,
        {c: (e, e * price) for c, e in bought_energy.items() if e > 0},
        {o.registration_id: (e, e * price) for o, e in zip(producing, sold, strict=True) if e},
    )


def allocation_dynamic(
    offers: Sequence[Offer], bids: Sequence[Bid], tariff: Tariff, params: MarketParameters
) -> Clearing:
    """Production shared in proportion to consumption, at the community price."""
    produced = sum(max(o.energy_milliwh, 0) for o in offers)
    using = [b for b in bids if b.energy_milliwh > 0]
    consumed = sum(b.energy_milliwh for b in using)
    local = min(produced, consumed)
    energies = allocate(
        local, [b.energy_milliwh for b in using], [b.registration_id for b in using]
    )
    bought = {b.registration_id: e for b, e in zip(using, energies, strict=True)}
    return _allocated(bought, offers, community_price(tariff, params))


def allocation_static(
    offers: Sequence[Offer], bids: Sequence[Bid], tariff: Tariff, params: MarketParameters
) -> Clearing:
    """Production shared by fixed shares (capped at use; unused shares exported)."""
    produced = sum(max(o.energy_milliwh, 0) for o in offers)
    shares = [(consumer, share) for consumer, share in params.shares if share > 0]
    if not shares:
        return Clearing(None)
    entitled = dict(
        zip(
            (c for c, _ in shares),
            allocate(produced, [s for _, s in shares], [c for c, _ in shares]),
            strict=True,
        )
    )
    bought = {
        b.registration_id: min(b.energy_milliwh, entitled.get(b.registration_id, 0))
        for b in bids
        if b.energy_milliwh > 0
    }
    return _allocated(bought, offers, community_price(tariff, params))
