"""The shared inbox: conversations, messages, comments, assignment, snippets, files."""
