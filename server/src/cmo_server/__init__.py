"""The CMO orchestrator server."""
