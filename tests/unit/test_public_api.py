import inspect

import cmo

EXPECTED = [
    "END",
    "Activity",
    "ActivityInfo",
    "ArtifactRef",
    "Client",
    "FailureInfo",
    "Graph",
    "HttpResponse",
    "McpServer",
    "McpToolResult",
    "NodeContext",
    "NodeResult",
    "PruneReport",
    "RetryPolicy",
    "RunHandle",
    "RunInfo",
    "RunProgress",
    "RunStatus",
    "StepInfo",
    "TLSConfig",
    "WaitInfo",
    "Worker",
    "__version__",
    "activity",
    "activity_info",
    "errors",
]


def test_all_is_pinned_and_sorted():
    assert cmo.__all__ == EXPECTED
    assert sorted(cmo.__all__, key=str.casefold) == sorted(EXPECTED, key=str.casefold)


def test_every_export_has_a_docstring():
    for name in cmo.__all__:
        value = getattr(cmo, name)
        if isinstance(value, str):  # END is a constant documented in its module
            continue
        assert inspect.getdoc(value), f"cmo.{name} has no docstring"


def test_errors_module_exports_the_tree():
    assert issubclass(cmo.errors.RunNotFoundError, cmo.errors.RpcError)
    assert issubclass(cmo.errors.RpcError, cmo.errors.CmoError)
    assert issubclass(cmo.errors.WaitTimeoutError, TimeoutError)
    assert issubclass(cmo.errors.SignalTimeoutError, TimeoutError)
    assert issubclass(cmo.errors.HttpStatusError, cmo.errors.ActivityError)
    assert issubclass(cmo.errors.SpecialistTimeoutError, TimeoutError)


def test_wait_outcome_error_names_match_the_server():
    from cmo_server.domain import CANCELLED_ERROR, SIGNAL_TIMEOUT_ERROR

    assert cmo.errors.RunCancelledError.__name__ == CANCELLED_ERROR
    assert cmo.errors.SignalTimeoutError.__name__ == SIGNAL_TIMEOUT_ERROR
    for name in cmo.errors.__all__:
        assert inspect.getdoc(getattr(cmo.errors, name))
