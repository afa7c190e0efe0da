"""Tests against a real Home Assistant: a ``hass`` process with its frontend, as users run it."""
