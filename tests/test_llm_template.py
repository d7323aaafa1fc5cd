"""The ChatML tool template renders tools, earlier tool calls and tool results as the model expects.

Rendered with jinja2 here (when installed); the live tests render the same file with
llama.cpp's own engine through the server's /apply-template.
"""

from __future__ import annotations

import json
from typing import Any

import jinja2

from agent.llm.server import CHAT_TEMPLATE_PATH

TOOL = {
    "type": "function",
    "function": {
        "name": "churn_risk",
        "description": "Churn risk of one account.",
        "parameters": {
            "type": "object",
            "properties": {"account_id": {"type": "string"}},
            "required": ["account_id"],
        },
    },
}

CONVERSATION: list[dict[str, Any]] = [
    {"role": "system", "content": "You are Copilot."},
    {"role": "user", "content": "Churn risk for ACC-1 and ACC-2?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "c1",
                "type": "function",
                "function": {"name": "churn_risk", "arguments": '{"account_id": "ACC-1"}'},
            },
            {
                "id": "c2",
                "type": "function",
                "function": {"name": "churn_risk", "arguments": {"account_id": "ACC-2"}},
            },
        ],
    },
    {"role": "tool", "tool_call_id": "c1", "content": '{"risk": 0.7}'},
    {"role": "tool", "tool_call_id": "c2", "content": '{"risk": 0.1}'},
    {"role": "assistant", "content": "ACC-1 is at risk (0.7); ACC-2 is not (0.1)."},
    {"role": "user", "content": [{"type": "text", "text": "thanks"}]},
]


REMINDER = "\n\n(If a function can help, reply with only the ```json function call.)"


def render(
    messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None, add_generation_prompt: bool = True
) -> str:
    env = jinja2.Environment(undefined=jinja2.Undefined)
    template = env.from_string(CHAT_TEMPLATE_PATH.read_text(encoding="utf-8"))
    return template.render(messages=messages, tools=tools, add_generation_prompt=add_generation_prompt)


def test_full_conversation_with_tools() -> None:
    prompt = render(CONVERSATION, [TOOL])

    system, rest = prompt.split("<|im_end|>\n", 1)
    assert system.startswith("<|im_start|>system\nYou are Copilot.\n\n# Tools\n")
    # jinja2's tojson sorts keys, llama.cpp's keeps their order: check content, not order.
    tools_block = system.split("<tools>\n", 1)[1].split("\n</tools>", 1)[0]
    assert json.loads(tools_block) == TOOL
    assert "return a json object with function name and arguments within a fenced json block" in system
    assert '```json\n{"name": <function-name>, "arguments": <args-json-object>}\n```' in system
    assert rest == (
        "<|im_start|>user\nChurn risk for ACC-1 and ACC-2?<|im_end|>\n"
        "<|im_start|>assistant\n"
        '```json\n{"name": "churn_risk", "arguments": {"account_id": "ACC-1"}}\n```\n'
        '```json\n{"name": "churn_risk", "arguments": {"account_id": "ACC-2"}}\n```<|im_end|>\n'
        "<|im_start|>user\n"
        '<tool_response>\n{"risk": 0.7}\n</tool_response>\n'
        '<tool_response>\n{"risk": 0.1}\n</tool_response><|im_end|>\n'
        "<|im_start|>assistant\nACC-1 is at risk (0.7); ACC-2 is not (0.1).<|im_end|>\n"
        "<|im_start|>user\nthanks" + REMINDER + "<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_without_tools_is_plain_chatml() -> None:
    prompt = render([{"role": "user", "content": "hi"}], None, add_generation_prompt=False)
    assert prompt == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n"
    )


def test_reminder_only_on_the_last_user_turn_and_only_with_tools() -> None:
    with_tools = render(CONVERSATION, [TOOL])
    assert with_tools.count(REMINDER) == 1
    assert "ACC-2?" + REMINDER not in with_tools
    assert REMINDER not in render(CONVERSATION, None)


def test_prefix_is_stable_across_turns() -> None:
    """The system turn (the cached prefix) must not change as the conversation grows."""
    short = render(CONVERSATION[:2], [TOOL])
    long = render(CONVERSATION, [TOOL])
    head = short.split("<|im_start|>user", 1)[0]
    assert long.startswith(head)
