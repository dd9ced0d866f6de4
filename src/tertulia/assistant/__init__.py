"""The assistant: the knowledge matrix and the offline retrieval that answers from it."""
