"""The shared inbox: conversations, messages, comments, assignment, snippets, files."""

from tertulia.conversations import merge as merge  # registers the contact-merge hook
