"""Attack tests on live ``p2p-energy`` processes (node, grid, portal) and the HA harness.

Each backs a claim of SECURITY.md.
"""
