"""Rego v1 policies evaluated in-process (`pip install cmo-sdk[policy]`).

```python
bundle = PolicyBundle.load("policies")
decision = bundle.decide("step_before", {"run": {"id": "r-1"}, "step": {"index": 3}})
if not decision.allowed:
    print(decision.denial.policy, decision.denial.rule, decision.denial.reason)
```

The gates, their inputs and how to write a policy: docs/policy.md.
"""

from cmo.policy._bundle import GATES, Decision, Denial, PolicyBundle, PolicyError
from cmo.policy._golden import CaseResult, GoldenCase, load_cases, run_cases
from cmo.policy._wire import WireGatePolicy

__all__ = [
    "GATES",
    "CaseResult",
    "Decision",
    "Denial",
    "GoldenCase",
    "PolicyBundle",
    "PolicyError",
    "WireGatePolicy",
    "load_cases",
    "run_cases",
]
