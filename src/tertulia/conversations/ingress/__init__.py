"""The inbox's entry points: the web-chat widget (widget.py) and provider callbacks (callbacks.py)."""
