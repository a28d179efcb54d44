"""The public names of the admission package are pinned: the passes moved into
modules of their own must not change what other packages import."""

from __future__ import annotations

import policies.admission as admission

PINNED = {
    "ARTICLE",
    "DIALECT",
    "FUNCTIONS_FILE",
    "GRANTABLE_FAMILIES",
    "MAX_NESTING",  # issue 19: the nesting limit, checked before a job is recorded
    "AdmittedQuery",
    "Clause",
    "FunctionPolicy",
    "QueryScope",
    "TableScope",
    "admit",
    "aggregate_argument",
    "check_nesting",
    "function_name",
    "load_function_policy",
    "unwrap_aggregate",
}


def test_admission_exports_exactly_its_pinned_names():
    assert set(admission.__all__) == PINNED
    for name in PINNED:
        assert getattr(admission, name) is not None, name
    assert admission.FUNCTIONS_FILE.is_file(), "the allow-lists ship beside the package"
