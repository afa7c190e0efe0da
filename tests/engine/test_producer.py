"""A producer prices energy in the slot it was produced: its sources' readings join
the output of the period they belong to, whenever the producer reads them."""

from __future__ import annotations

from dataclasses import replace

from p2p_energy_protocol.household import Producer

from .households import MINUTE, T0, Home, config, ms

SOURCE = config("source", "pv")
REMOTE = config("source", "wind", producer_url="http://elsewhere.example/api")
PRODUCER = config("producer", "inverter", price=50.0, sources=("source-pv",))


def outputs(home: Home) -> list[tuple[float, int, int]]:
    """The producer's outputs: (kWh, start, end) in minutes after T0."""
    return [
        (
            float(str(body["output"])),
            (int(str(body["startTime"])) - ms(T0)) // 60_000,
            (int(str(body["endTime"])) - ms(T0)) // 60_000,
        )
        for body in home.bodies("producer-inverter")
        if body.get("command") == "output"
    ]


async def test_a_local_source_joins_the_same_period() -> None:
    home = Home()
    await home.open(SOURCE, PRODUCER)
    await home.period(1, source_pv=10.0, producer_inverter=100.0)  # baselines
    await home.period(2, source_pv=10.5, producer_inverter=101.0)
    await home.period(3, source_pv=10.75, producer_inverter=101.0)
    assert outputs(home) == [(1.5, 1, 2), (0.25, 2, 3)]
    producer = home["producer-inverter"]
    assert isinstance(producer, Producer)
    assert producer.state.source_readings == []
    assert producer.state.published_until_ms == ms(T0 + 3 * MINUTE)


async def test_after_a_node_outage_each_period_gets_its_own_source_energy() -> None:
    """The case seen in a real Home Assistant: the node was down, so the producer could
    not read its source; the source energy must not all land in one later slot."""
    home = Home()
    await home.open(SOURCE, PRODUCER)
    await home.period(1, source_pv=10.0, producer_inverter=100.0)
    home.network.node_up = False
    await home.period(2, source_pv=10.5, producer_inverter=100.005)
    await home.period(3, source_pv=11.25, producer_inverter=100.01)
    await home.period(4, source_pv=11.5, producer_inverter=100.015)
    # Nothing could be sent; the producer created nothing it would have to take back.
    assert [item.kind for item in home["producer-inverter"].state.queue] == []
    assert len(home["source-pv"].state.queue) == 3
    home.network.node_up = True
    await home.sync(5)
    assert outputs(home) == [(0.505, 1, 2), (0.755, 2, 3), (0.255, 3, 4)]
    # The next period goes out as usual, with its own source reading.
    await home.period(5, source_pv=11.75, producer_inverter=100.015)
    assert outputs(home)[-1] == (0.25, 4, 5)
    assert home["producer-inverter"].state.energy_published_kwh == 1.765


async def test_a_quiet_source_holds_a_period_only_until_the_deadline() -> None:
    home = Home()
    await home.open(SOURCE, PRODUCER)
    await home.period(1, source_pv=10.0, producer_inverter=100.0)
    # The source's meter is unavailable: no reading for the period.
    await home.period(2, source_pv=None, producer_inverter=101.0)
    assert outputs(home) == []
    await home.sync(10)
    assert outputs(home) == []  # still within the 20 s the producer waits
    await home.sync(15)
    assert outputs(home) == [(1.0, 1, 2)]
    # Back: the source's delta covers both periods and belongs to the one it ends in.
    await home.period(3, source_pv=11.0, producer_inverter=101.5)
    assert outputs(home)[-1] == (1.5, 2, 3)


async def test_a_reading_read_after_its_period_went_out_keeps_its_own_period() -> None:
    """A remote source reports late: its reading goes out alone, in its own period, so
    the grid prices it in its slot (as an adjustment if that slot is settled)."""
    home = Home()
    remote_side = Home(network=home.network)
    await home.open(replace(PRODUCER, sources=()))
    await remote_side.open(REMOTE)
    producer = home["producer-inverter"]
    assert isinstance(producer, Producer)
    await home.sync()
    await remote_side.sync()
    wind = remote_side["source-wind"]
    assert wind.channel_root is not None
    await producer.register_source(
        wind.registration_id, {"root": wind.channel_root, "sideKey": wind.side_key}
    )
    await remote_side.period(1, source_wind=5.0)
    await home.period(1, producer_inverter=100.0)
    await home.period(2, producer_inverter=101.0)
    await home.sync(30)  # the source said nothing beyond minute 1: the deadline passed
    assert outputs(home) == [(1.0, 1, 2)]
    remote_side.clock.now = home.clock.now
    await remote_side.period(2, source_wind=5.4)  # the wind's reading of minute 1 to 2
    await home.sync()
    assert outputs(home) == [(1.0, 1, 2), (0.4, 1, 2)]
    assert producer.state.source_readings == []
