"""The server's policy gates: Rego v1 policies (cmo.policy) on steps and agent registrations.

They are asked before and after each step and on each registration, reloaded on SIGHUP or when a
file changes, and every decision is logged.

Off unless CMO_POLICY_DIR names a directory. A bundle that does not build stops the start; on a
reload the last good one stays (fail closed either way, as a decision the policies cannot make is
a denial).
"""

from cmo_server.policy._decisions import DecisionLog
from cmo_server.policy._gates import PolicyGates
from cmo_server.policy._reload import PolicyReloader

__all__ = ["DecisionLog", "PolicyGates", "PolicyReloader"]
