"""The grid: registration and storage APIs, channel following, settlement and payouts.

Run it with ``p2p-energy grid``; embed it with :class:`grid_server.grid.server.GridServer`.
"""
