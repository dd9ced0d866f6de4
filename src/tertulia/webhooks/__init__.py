"""Outgoing webhooks: endpoints a workspace registers, fed from the event log, signed with the
Standard Webhooks scheme, retried, in order per contact. See docs/webhooks.md."""
