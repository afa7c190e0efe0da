"""Simulated households (sources, producers, consumers) that trade over the real protocol.

The households are the household engine's (``p2p_energy_protocol.household``), the
code Home Assistant runs; only their meters are simulated. ``curves`` has the solar
and load models and the meters over them, ``runner`` the market
(:class:`~grid_server.simulator.runner.Simulation`) of ``p2p-energy demo``,
``durable`` the crash-safe households of ``p2p-energy households``.
"""
