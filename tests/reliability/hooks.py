"""The reliability suite's schemathesis checks and hooks, for the pytest run and for the `st` CLI
(loaded with SCHEMATHESIS_HOOKS=tests.reliability.hooks).

- `documented_503_only`: no 5xx, except a 503 the operation documents (queue full, Redis down, not
  ready); replaces schemathesis' `not_a_server_error`, which refuses every 5xx.
- `schema_valid_forms_parse`: a request generated valid by the schema is never refused as an invalid
  form (422 `invalid_request`); refusals about the content (no image, no face, a config the trainer
  rejects) are typed 4xx and allowed. Replaces `positive_data_acceptance`, which wants a 2xx for any
  schema-valid upload, random bytes included.
- `before_call`: long-polls wait at most 1 s (the schema allows 60; the answer is the same 202).
"""

from __future__ import annotations

import schemathesis

# schemathesis' own checks these replace (and negative_data_rejection: the API ignores unknown query
# parameters and headers by design, and the operator key the suite always sends would turn "a request
# without Authorization" into an authorized one; `ignored_auth` checks the keyless case on its own)
REPLACED = ("not_a_server_error", "positive_data_acceptance", "negative_data_rejection")


@schemathesis.check
def documented_503_only(ctx, response, case) -> None:
    status = response.status_code
    if status >= 500 and not (status == 503 and "503" in case.operation.definition.raw.get("responses", {})):
        raise AssertionError(f"{case.method} {case.formatted_path}: undocumented {status}: {response.text[:300]}")


@schemathesis.check
def schema_valid_forms_parse(ctx, response, case) -> None:
    if case.meta is not None and getattr(case.meta.generation.mode, "name", "") != "POSITIVE":
        return
    if response.status_code == 422 and response.json().get("code") == "invalid_request":
        raise AssertionError(f"{case.method} {case.formatted_path}: schema-valid input refused: {response.text[:300]}")


@schemathesis.hook
def before_call(ctx, case, **kwargs) -> None:
    bound_wait(case)


def bound_wait(case) -> None:
    if isinstance(case.query, dict) and isinstance(case.query.get("wait"), int | float):
        case.query["wait"] = min(case.query["wait"], 1)
