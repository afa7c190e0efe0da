"""Tests of the P2P Energy Grid integration."""
