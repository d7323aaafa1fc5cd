"""One typed route per registered tool: call it with the arguments the agent would set.

`POST /api/v1/tools/call/<name>` takes the tool's parameter model (the schema the model
reads, unknown fields refused) as the JSON body and returns the core's full result model, so
an analyst can reproduce exactly what the agent was told. Derived from the tool registry: a
new tool gets its route with no code here. A mistake the caller can fix is a 422 with the
tool's message. Tools exempt from the API (see the registry) have no route.
"""

# No `from __future__ import annotations`: FastAPI reads each endpoint's parameter types at
# registration, and the body type is made per tool inside `_endpoint`.

from typing import Any

from fastapi import APIRouter, Request
from pydantic import ConfigDict

from api.deps import AUTH_RESPONSES, AnalystDep, SessionDep, get_knowledge_store
from api.metrics import observe_tool
from tools.registry import ALL_TOOLS, Params, ToolSpec, strict_params

router = APIRouter(prefix="/api/v1/tools/call", tags=["tools"])

CALL_RESPONSES: dict[int | str, dict[str, Any]] = {
    **AUTH_RESPONSES,
    422: {"description": "A mistake the caller can fix (unknown id, metric, period, argument); the message "
          "lists what is valid"},
}


def body_model_for(spec: ToolSpec[Any, Any]) -> type[Params]:
    """The tool's parameters as a request body: unknown fields refused, integers bounded
    (`strict_params`), and no type coercion (`true` is not 1, "5" is not 5)."""
    model = strict_params(spec.params)
    return type(model.__name__, (model,), {"model_config": ConfigDict(extra="forbid", strict=True),
                                           "__module__": model.__module__, "__doc__": model.__doc__})


def _endpoint(spec: ToolSpec[Any, Any]) -> Any:
    body_model = body_model_for(spec)

    def endpoint(body: Params, session: SessionDep, _user: AnalystDep, request: Request) -> Any:
        kwargs = spec.core_kwargs(body.model_dump(exclude_unset=True))
        with observe_tool(spec.name):
            return spec.call(kwargs, session=session, store=lambda: get_knowledge_store(request))

    endpoint.__annotations__["body"] = body_model  # FastAPI reads the body's schema from here
    endpoint.__name__ = f"call_{spec.name}"
    return endpoint


def api_tools() -> list[ToolSpec[Any, Any]]:
    """The registered tools served here (all but those exempt from the API)."""
    return [spec for spec in ALL_TOOLS if "api" not in spec.exempt]


for _spec in api_tools():
    router.add_api_route(
        f"/{_spec.name}",
        _endpoint(_spec),
        methods=["POST"],
        response_model=_spec.result,
        summary=_spec.description.split(". ")[0].rstrip(".").replace("\n", " "),
        description=_spec.description.replace("\n", " ") + "\n\nThe same call the agent makes, with the "
        "same arguments; the full result (the agent reads a short projection of it).",
        operation_id=f"call_{_spec.name}",
        responses=CALL_RESPONSES,
    )
