"""HTTP handlers of the grid: registration, storage, health and the OpenAPI document."""
