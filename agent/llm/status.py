"""Which LLM endpoint is in use and how fast it is: one short fixed request, timed.

llama.cpp returns ``timings`` (prompt and generation tokens/s measured inside the
server); other OpenAI-compatible endpoints only return ``usage``, so their rates are
derived from wall-clock time and labelled as such.
"""

from __future__ import annotations

import os
import time
from typing import Any, Literal

import httpx
from pydantic import BaseModel

from agent.llm.client import EMBEDDED_API_KEY, NO_API_KEY, Endpoint
from agent.llm.probe import RoutingResult
from core.settings import Settings

# About 200 prompt tokens: enough for a stable prompt rate, short enough for a slow CPU.
SPEED_PROMPT = (
    "Porter's value chain splits a company into primary activities (inbound logistics, "
    "operations, outbound logistics, marketing and sales, service) and support activities "
    "(firm infrastructure, human resource management, technology development, procurement). "
    "Each activity adds cost and, if done well, adds more value than it costs; the difference "
    "across the chain is the margin. Analysts map where costs sit, compare them with "
    "competitors, and look for linkages where spending more in one activity lowers cost or "
    "raises value in another, such as better inbound quality control reducing service "
    "returns. A margin leak is value the company creates but fails to capture, for example "
    "discounts given without a reason, services delivered but never billed, or accounts that "
    "cost more to serve than they pay. In one sentence, what is the margin in Porter's model?"
)
SPEED_MAX_TOKENS = 32


class SpeedSample(BaseModel):
    """One timed request."""

    wall_s: float
    prompt_tokens: int
    completion_tokens: int
    prompt_tokens_per_s: float | None
    gen_tokens_per_s: float | None
    source: Literal["server timings", "wall clock"]
    reply: str


class LLMStatus(BaseModel):
    """What `valuechain llm status` reports."""

    embedded: bool
    base_url: str | None
    model: str
    model_path: str | None = None
    cold_start_s: float | None = None
    speed: SpeedSample | None = None
    load_average_1m: float | None = None
    """Run-queue length when measured: above ~1 per core, other work is slowing the model."""
    cpu_count: int | None = None
    routing: list[RoutingResult] | None = None
    """The routing probe's graded replies (`--routing`)."""


def measure_speed(endpoint: Endpoint, settings: Settings, client: httpx.Client | None = None) -> SpeedSample:
    """Send the fixed request to `endpoint` and time it (raises httpx.HTTPError on failure)."""
    if endpoint.base_url is None:
        raise ValueError("the endpoint has no base_url; start the embedded server first")
    payload: dict[str, Any] = {
        "model": endpoint.model,
        "messages": [{"role": "user", "content": SPEED_PROMPT}],
        "max_tokens": SPEED_MAX_TOKENS,
        "temperature": 0.0,
    }
    if endpoint.embedded:
        payload["cache_prompt"] = False  # llama.cpp extension: process the whole prompt every time
        key = EMBEDDED_API_KEY
    else:
        key = settings.llm_api_key or NO_API_KEY
    begin = time.perf_counter()
    with client or httpx.Client(timeout=settings.llm_timeout_s) as http:
        resp = http.post(
            endpoint.base_url + "/chat/completions",
            json=payload,
            headers={"Authorization": f"Bearer {key}"},
        )
        resp.raise_for_status()
    wall = time.perf_counter() - begin
    body = resp.json()
    usage = body.get("usage") or {}
    prompt_n = int(usage.get("prompt_tokens", 0))
    gen_n = int(usage.get("completion_tokens", 0))
    reply = (body["choices"][0]["message"].get("content") or "").strip()
    timings = body.get("timings")
    if isinstance(timings, dict) and "predicted_per_second" in timings:
        return SpeedSample(
            wall_s=wall,
            prompt_tokens=prompt_n,
            completion_tokens=gen_n,
            prompt_tokens_per_s=float(timings.get("prompt_per_second", 0.0)),
            gen_tokens_per_s=float(timings["predicted_per_second"]),
            source="server timings",
            reply=reply,
        )
    return SpeedSample(
        wall_s=wall,
        prompt_tokens=prompt_n,
        completion_tokens=gen_n,
        prompt_tokens_per_s=None,
        gen_tokens_per_s=gen_n / wall if wall > 0 else None,  # a floor: includes prompt time
        source="wall clock",
        reply=reply,
    )


def load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None
