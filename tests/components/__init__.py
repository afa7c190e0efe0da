"""Home Assistant tests of the custom integrations."""
