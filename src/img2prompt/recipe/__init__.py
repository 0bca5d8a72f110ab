"""The recipe: the chain of stage commands (``plan``) and its runner (``run``); the quickstart is one recipe."""
