"""The durable event log: typed facts written in the same transaction as the change they record,
delivered to registered consumers at least once, in order. See docs/events.md."""
