"""Client-chosen metric labels stay bounded."""

from __future__ import annotations

from cmo_server.telemetry._metrics import OTHER, BoundedLabels, kind_label


def test_the_first_values_keep_their_names_and_later_ones_are_other() -> None:
    labels = BoundedLabels(limit=2)
    assert labels.of("g1", "a") == ("g1", "a")
    assert labels.of("g2", "a") == ("g2", "a")
    assert labels.of("g3", "a") == (OTHER, OTHER)
    assert labels.of("g1", "a") == ("g1", "a")  # seen before the bound: still its own
    assert labels.of("g1", "b") == (OTHER, OTHER)


def test_an_activity_kind_is_a_known_one_or_other() -> None:
    for kind in ("call", "http", "artifact.put", "artifact.get", "signal", "timer"):
        assert kind_label(kind) == kind
    assert kind_label("kind.7") == OTHER
