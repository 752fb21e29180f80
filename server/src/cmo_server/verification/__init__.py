"""A run's recorded history checked against the graph version it ran.

What the server can verify without the graph's code (`cmoctl replay --verify` runs the code).
"""

from cmo_server.verification._history import CHECKS, Divergence, Verification, verify_history

__all__ = ["CHECKS", "Divergence", "Verification", "verify_history"]
