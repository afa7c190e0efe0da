"""IOTA legacy protocol library: trinary, Curl-P, Kerl, signing, transactions,
proof of work and MAM v0. Free of Home Assistant imports; the grid server
imports it as ``p2p_energy_protocol``, the integration as ``.protocol``.
"""
