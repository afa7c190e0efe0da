"""Simulated households (sources, producers, consumers) that trade over the real protocol.

``curves`` has the solar and load models, ``households`` the entities, ``runner``
the market (:class:`~grid_server.simulator.runner.Simulation`) used by
``p2p-energy demo``, the benchmarks and the scale tests.
"""
