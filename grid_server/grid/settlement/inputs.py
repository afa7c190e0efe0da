"""What a slot was settled from, as stored with it (``settlements.inputs_json``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .engine import ConsumerDemand, ProducerSupply
from .mechanisms import MarketParameters
from .pricing import Tariff


class ReplayError(ValueError):
    """A slot cannot be replayed (unknown slot, unreadable inputs, unusable mechanism)."""


INPUTS_VERSION = 1


@dataclass(frozen=True, slots=True)
class SlotInputs:
    """Everything one slot was settled from."""

    mechanism: str
    params: MarketParameters
    tariff: Tariff
    producers: tuple[ProducerSupply, ...]
    consumers: tuple[ConsumerDemand, ...]

    def to_text(self) -> str:
        return json.dumps(
            {
                "version": INPUTS_VERSION,
                "mechanism": self.mechanism,
                "parameters": self.params.to_json(),
                "tariff": {
                    "importPriceMicro": self.tariff.import_price_micro,
                    "exportPriceMicro": self.tariff.export_price_micro,
                    "gridCutPpm": self.tariff.grid_cut_ppm,
                },
                # [id, mWh, adjustment mWh, ask]: where a payout goes does not change any
                # amount (it is in the payouts table), so it is not repeated here.
                "producers": [
                    [
                        p.registration_id,
                        p.energy_milliwh,
                        p.adjustment_milliwh,
                        p.price_micro,
                    ]
                    for p in self.producers
                ],
                # [id, mWh, adjustment mWh, bid]
                "consumers": [
                    [c.registration_id, c.energy_milliwh, c.adjustment_milliwh, c.bid_micro]
                    for c in self.consumers
                ],
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_text(cls, text: str) -> SlotInputs:
        try:
            data = json.loads(text)
            if data.get("version") != INPUTS_VERSION:
                raise ReplayError(f"stored inputs of version {data.get('version')!r}")
            tariff = data["tariff"]
            return cls(
                mechanism=str(data["mechanism"]),
                params=MarketParameters.from_json(data["parameters"]),
                tariff=Tariff(
                    int(tariff["importPriceMicro"]),
                    int(tariff["exportPriceMicro"]),
                    int(tariff["gridCutPpm"]),
                ),
                producers=tuple(
                    ProducerSupply(str(p[0]), int(p[1]), _optional_int(p[3]), None, int(p[2]))
                    for p in data["producers"]
                ),
                consumers=tuple(
                    ConsumerDemand(str(c[0]), int(c[1]), int(c[2]), _optional_int(c[3]))
                    for c in data["consumers"]
                ),
            )
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as err:
            if isinstance(err, ReplayError):
                raise
            raise ReplayError(f"the stored inputs are unreadable: {err}") from err


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)
