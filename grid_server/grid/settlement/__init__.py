"""Settlement of time slots: pricing strategies, the pure engine and the database service."""
