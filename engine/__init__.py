"""Customer-journey engine: the domain core (synchronous, no Kafka or Redis imports)."""
