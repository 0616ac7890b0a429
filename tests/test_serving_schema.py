"""Property-based run of schemathesis against the served OpenAPI schema (a bounded number of generated requests
per operation): no 5xx, every status code documented, every response matching its schema."""

from __future__ import annotations

from collections import Counter

import pytest

pytest.importorskip("fastapi")
schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from schemathesis.checks import (  # noqa: E402
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

import symcere  # noqa: E402
from symcere.api import Run  # noqa: E402
from symcere.serving import Service  # noqa: E402
from symcere.serving.app import create_app  # noqa: E402

MAX_EXAMPLES = 25  # generated requests per operation


@pytest.fixture(scope="module")
def served_schema(tmp_path_factory, tiny_dataset_dir):
    """The OpenAPI schema of a SymCERE run (packaged MiniLM, 32 tokens) served in-process."""
    root = tmp_path_factory.mktemp("schema")
    config = {
        "model.dim": 16,
        "model.layers": 2,
        "train.threads": 1,
        "train.batch_size": 64,
        "train.eval_every_steps": 1,
        "train.max_epochs": 2,
        "text.max_tokens": 32,
        "text.cache_dir": str(root / "cache"),
    }
    run = symcere.fit(tiny_dataset_dir, "symcere", config=config, out=root / "run", progress=False)
    app = create_app(Service(Run.load(run.run_dir, device="cpu"), explain_cache=8))
    return schemathesis.openapi.from_asgi("/openapi.json", app)


OPERATIONS = [
    ("GET", "/health"),
    ("GET", "/recommend"),
    ("GET", "/similar-items"),
    ("POST", "/cold-start"),
    ("GET", "/explain"),
]


def test_the_schema_lists_every_operation(served_schema):
    listed = {(r.ok().method.upper(), r.ok().path) for r in served_schema.get_all_operations()}
    assert listed == set(OPERATIONS)


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_every_generated_request(served_schema, method, path):
    operation = served_schema[path][method]
    service = served_schema.app.state.service
    known = {"user": service.user_ids[:5], "item": service.item_ids[:5]}

    def with_known_ids(case, draw):  # half of the cases name a user / item the run has
        for name, ids in known.items():
            if case.query and name in case.query and draw(st.booleans()):
                case.query[name] = draw(st.sampled_from(ids))
        return case

    strategy = st.composite(lambda draw: with_known_ids(draw(operation.as_strategy()), draw))()
    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]

    @given(case=strategy)
    @settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    def check(case):
        statuses[case.call_and_validate(checks=checks).status_code] += 1

    statuses: Counter[int] = Counter()
    check()
    assert sum(statuses.values()) >= MAX_EXAMPLES // 2 or path == "/health"
    if path in ("/recommend", "/similar-items", "/explain"):
        assert statuses[200] and statuses[404]  # both known and unknown ids were tried
