"""Live checks against the real embedded model server (not run in CI).

    .venv/bin/pytest -m live tests/test_llm_live.py

Needs the llm extra (xllamacpp + the 22 chunk packages); the first run joins the
GGUF into ``<data_dir>/models``. Starts one model server for the module (the orphan
test runs first, before it, so two servers never run at once).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, SystemMessage, ToolMessage

from agent.llm import probe
from agent.llm.client import make_chat_model
from agent.llm.server import ANSWER_SLOT, ROUTE_SLOT, EmbeddedLLMServer
from agent.tools import build_tools
from core.settings import Settings, get_settings

pytestmark = pytest.mark.live

ORPHAN_PARENT = """
import sys, time
from agent.llm.server import ANSWER_SLOT, ROUTE_SLOT, EmbeddedLLMServer
from core.settings import get_settings
srv = EmbeddedLLMServer.from_settings(get_settings()).start()
print(srv.pid, flush=True)
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_child_does_not_outlive_a_killed_parent() -> None:
    with subprocess.Popen([sys.executable, "-c", ORPHAN_PARENT], stdout=subprocess.PIPE, text=True) as parent:
        try:
            assert parent.stdout is not None
            child_pid = int(parent.stdout.readline())
            assert _alive(child_pid)
            parent.send_signal(signal.SIGKILL)  # no atexit, no cleanup: only PDEATHSIG / the pid watcher
            parent.wait(timeout=10)
            deadline = time.monotonic() + 5
            while _alive(child_pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert not _alive(child_pid), f"model server {child_pid} outlived its parent"
        finally:
            if parent.poll() is None:
                parent.kill()


@pytest.fixture(scope="module")
def settings() -> Settings:
    return get_settings().model_copy(update={"llm_base_url": None, "llm_model": None})


@pytest.fixture(scope="module")
def server(settings: Settings) -> Iterator[EmbeddedLLMServer]:
    with EmbeddedLLMServer.from_settings(settings) as srv:
        srv.warm(probe.prefix_messages(), probe.tool_schemas(), slot=ROUTE_SLOT)
        srv.warm(probe.prefix_messages(), None, slot=ANSWER_SLOT)
        yield srv


def test_llama_cpp_renders_the_template(server: EmbeddedLLMServer) -> None:
    conversation: list[dict[str, Any]] = [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "Churn risk for ACC-1?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "churn_risk", "arguments": '{"account_id": "ACC-1"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": '{"risk": 0.7}'},
        {"role": "user", "content": "thanks"},
    ]
    resp = httpx.post(
        server.root_url + "/apply-template",
        json={"messages": conversation, "tools": probe.tool_schemas()},
        timeout=60,
    )
    prompt = resp.json()["prompt"]
    system, rest = prompt.split("<|im_end|>\n", 1)
    assert system.startswith("<|im_start|>system\nS\n\n# Tools\n")
    assert "within a fenced json block" in system
    tools = system.split("<tools>\n", 1)[1].split("\n</tools>", 1)[0].splitlines()
    assert [json.loads(t) for t in tools] == probe.tool_schemas()
    assert rest == (
        "<|im_start|>user\nChurn risk for ACC-1?<|im_end|>\n"
        '<|im_start|>assistant\n```json\n{"name": "churn_risk", "arguments": {"account_id": "ACC-1"}}\n```<|im_end|>\n'
        '<|im_start|>user\n<tool_response>\n{"risk": 0.7}\n</tool_response><|im_end|>\n'
        "<|im_start|>user\nthanks\n\n(If a function can help, reply with only the ```json function call.)"
        "<|im_end|>\n<|im_start|>assistant\n"
    )


@pytest.mark.parametrize("index", [0, 1, 6], ids=["churn_risk", "get_account", "propose_recommendation"])
def test_unambiguous_questions_become_native_tool_calls(server: EmbeddedLLMServer, index: int) -> None:
    case = probe.CASES[index]
    schemas = probe.tool_schemas()
    body, timings = server.chat(probe.routing_payload(case, schemas, slot=ROUTE_SLOT))
    result = probe.check_response(case, body, schemas)
    assert result.native_tool_call, result.content
    assert result.valid, result.problems
    # The warmed prefix (system prompt + tools) is reused, not re-read.
    assert timings.cached_tokens > 900


def _messages(question: str) -> list[Any]:
    return [SystemMessage(probe.system_prompt()), HumanMessage(question)]


def test_langchain_tool_call(server: EmbeddedLLMServer, settings: Settings) -> None:
    model = make_chat_model(settings, base_url=server.base_url, slot=ROUTE_SLOT).bind_tools(build_tools())
    msg = model.invoke(_messages("Show me the profile of account DYNE-0036."))
    assert isinstance(msg, AIMessage)
    assert [(c["name"], c["args"]) for c in msg.tool_calls] == [("get_account", {"account_id": "DYNE-0036"})]
    assert msg.usage_metadata is not None and msg.usage_metadata["input_tokens"] > 900


def test_langchain_streams_tool_call_and_usage(server: EmbeddedLLMServer, settings: Settings) -> None:
    model = make_chat_model(settings, base_url=server.base_url, slot=ROUTE_SLOT).bind_tools(build_tools())
    total: AIMessageChunk | None = None
    for chunk in model.stream(_messages("What is the churn risk for account QUIN-0958?")):
        assert isinstance(chunk, AIMessageChunk)
        total = chunk if total is None else total + chunk
    assert total is not None
    assert [(c["name"], c["args"]) for c in total.tool_calls] == [("churn_risk", {"account_id": "QUIN-0958"})]
    assert total.usage_metadata is not None and total.usage_metadata["output_tokens"] > 0


def test_answer_without_tools_after_a_tool_result(server: EmbeddedLLMServer, settings: Settings) -> None:
    model = make_chat_model(settings, base_url=server.base_url, slot=ANSWER_SLOT, max_tokens=60)
    msg = model.invoke(
        [
            *_messages("What is the churn risk for account ACC-00042?"),
            AIMessage(
                content="",
                tool_calls=[{"id": "c1", "name": "churn_risk", "args": {"account_id": "ACC-00042"}}],
            ),
            ToolMessage(
                '{"account_id": "ACC-00042", "probability": 0.71, "band": "high"}', tool_call_id="c1"
            ),
        ]
    )
    assert isinstance(msg, AIMessage)
    assert not msg.tool_calls
    assert "0.71" in str(msg.content) or "71" in str(msg.content)
    assert msg.usage_metadata is not None
    assert (
        msg.response_metadata.get("token_usage", {}).get("prompt_tokens_details", {}).get("cached_tokens", 0)
        > 100
    )


def test_stop_is_quick(settings: Settings, server: EmbeddedLLMServer) -> None:
    """Last: stops the module's server (the fixture's stop is then a no-op)."""
    pid = server.pid
    begin = time.perf_counter()
    server.stop()
    assert time.perf_counter() - begin < 5
    assert pid is not None and not os.path.exists(f"/proc/{pid}")
