"""A producer announces its expected output once, on its next output message."""

from __future__ import annotations

from dataclasses import replace

from p2p_energy_protocol.expected_output import ExpectedOutput
from p2p_energy_protocol.household import Producer

from .households import MINUTE, T0, Home, config, ms

PRODUCER = config("producer", "inverter", price=50.0)


async def test_the_announcement_rides_on_the_next_output_once() -> None:
    home = Home()
    await home.open(PRODUCER)
    producer = home["producer-inverter"]
    assert isinstance(producer, Producer)
    await home.period(1, producer_inverter=100.0)  # baseline
    expected = ExpectedOutput(ms(T0 + 2 * MINUTE), 900_000, (0.5, 1.25))
    producer.announce_expected_output(expected)
    await home.period(2, producer_inverter=101.0)
    await home.period(3, producer_inverter=102.0)
    bodies = [body for body in home.bodies("producer-inverter") if body.get("command") == "output"]
    assert [body.get("expectedOutput") for body in bodies] == [expected.to_json(), None]
    assert producer.expected_output is None


async def test_an_announcement_that_has_ended_is_not_sent() -> None:
    home = Home()
    await home.open(replace(PRODUCER))
    producer = home["producer-inverter"]
    assert isinstance(producer, Producer)
    await home.period(1, producer_inverter=100.0)
    producer.announce_expected_output(ExpectedOutput(ms(T0) - 3_600_000, 60_000, (1.0,)))
    await home.period(2, producer_inverter=101.0)
    bodies = [body for body in home.bodies("producer-inverter") if body.get("command") == "output"]
    assert len(bodies) == 1
    assert "expectedOutput" not in bodies[0]
