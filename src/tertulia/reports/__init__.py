"""Reports: per-conversation facts and rollups kept by an event-log consumer, and the reports read
from them (docs/reports.md)."""
