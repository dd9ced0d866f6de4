"""Tertulia: self-hosted omnichannel customer-conversation CRM."""

__version__ = "0.1.0"
