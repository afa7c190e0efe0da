"""The grid: its Tangle node, registration and storage APIs, settlement and portal."""
