"""A consumer's optional bid: in its registration and with every usage; none by default."""

from __future__ import annotations

from .households import Home, config

BIDDING = config("consumer", "flat", max_price=42.5)
PLAIN = config("consumer", "house")


async def test_a_bidding_consumer_states_its_bid_everywhere() -> None:
    home = Home()
    await home.open(BIDDING, PLAIN)
    await home.period(1, consumer_flat=5.0, consumer_house=7.0)  # baselines
    await home.period(2, consumer_flat=5.5, consumer_house=7.25)
    await home.sync()
    registrations = home.network.registrations
    assert registrations[BIDDING.registration_id]["max_price"] == 42.5
    assert registrations[PLAIN.registration_id]["max_price"] is None
    [bid_usage] = [b for b in home.bodies("consumer-flat") if b.get("command") == "usage"]
    assert (bid_usage["usage"], bid_usage["maxPrice"]) == (0.5, 42.5)
    # Without a bid the usage is the blueprint's message, with no maxPrice at all.
    [plain_usage] = [b for b in home.bodies("consumer-house") if b.get("command") == "usage"]
    assert set(plain_usage) == {"command", "startTime", "endTime", "usage"}


async def test_an_invalid_bid_is_no_bid() -> None:
    home = Home()
    await home.open(config("consumer", "odd", max_price=-3.0))
    await home.period(1, consumer_odd=1.0)
    await home.period(2, consumer_odd=1.5)
    await home.sync()
    [usage] = [b for b in home.bodies("consumer-odd") if b.get("command") == "usage"]
    assert "maxPrice" not in usage
    assert home["consumer-odd"].registered


async def test_a_changed_bid_is_registered_again() -> None:
    """A reconfigure restarts the household with the new bid; the grid's standing bid follows,
    and a removed bid does not stay standing (the grid falls back to it for bidless usages)."""
    home = Home()
    await home.open(config("consumer", "flat", max_price=42.5))
    await home.sync()
    registration_id = BIDDING.registration_id
    assert home.network.registrations[registration_id]["max_price"] == 42.5
    for bid in (0.0, None, 30.0):
        await home.open(config("consumer", "flat", max_price=bid))
        await home.sync()
        assert home.network.registrations[registration_id]["max_price"] == bid
        assert home["consumer-flat"].state.registered_bid == bid
    # Unchanged, it is not registered again.
    del home.network.registrations[registration_id]
    await home.open(config("consumer", "flat", max_price=30.0))
    await home.sync()
    assert registration_id not in home.network.registrations
