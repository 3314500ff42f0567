"""Every test is sorted: exactly one of the kinds that `make test-fast` and `-m` select by."""

from __future__ import annotations

import pytest

from tests.suite import KINDS


def test_every_collected_test_is_exactly_one_kind(request: pytest.FixtureRequest) -> None:
    kinds = {
        item.nodeid: {mark.name for mark in item.iter_markers() if mark.name in KINDS} for item in request.session.items
    }
    unsorted = {nodeid: sorted(found) for nodeid, found in kinds.items() if len(found) != 1}

    assert kinds
    assert unsorted == {}
