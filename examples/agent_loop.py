"""A plain-SDK agent loop through the gateway, with tool-call voting.

Start a gateway first, e.g.::

    testtime serve --backend embedded:qwen2.5-coder-0.5b,slots=5 --port 8000

then run ``python examples/agent_loop.py``. Each step of the loop is answered by
``self-consistency:n=5``: five samples, and the tool call (or the reply) most of them agree on.
"""

from __future__ import annotations

import json
import os

from openai import OpenAI

URL = os.environ.get("GATEWAY_URL", "http://127.0.0.1:8000/v1")
MODEL = os.environ.get("GATEWAY_MODEL", "self-consistency:n=5@qwen2.5-coder-0.5b")
TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}]


def get_weather(city: str) -> str:
    """The tool itself (a real agent would call a weather API here)."""
    return json.dumps({"city": city, "temperature_c": 18, "sky": "sunny"})


def main() -> None:
    """Run the loop until the model answers in text (at most four steps)."""
    client = OpenAI(base_url=URL, api_key=os.environ.get("GATEWAY_KEY", "none"), timeout=600)
    messages: list[dict[str, object]] = [
        {"role": "system", "content": "Call a tool only for information you do not have yet. "
         "Once a tool result answers the question, reply to the user in one sentence."},
        {"role": "user", "content": "What's the weather in Paris right now?"}]
    for step in range(1, 5):
        # A 0.5B model calls the tool again and again; once it has a result, ask for the reply.
        choice_mode = "none" if any(m["role"] == "tool" for m in messages) else "auto"
        reply = client.chat.completions.create(
            model=MODEL, messages=messages, tools=TOOLS, tool_choice=choice_mode,  # type: ignore[arg-type]
            max_tokens=40, seed=3, extra_body={"testtime": {"details": True}})
        choice = reply.choices[0]
        details = (choice.model_extra or {})["testtime"]
        print(f"step {step}: finish_reason={choice.finish_reason} "
              f"aggregation={details.get('aggregation')} votes={details['votes']}")
        messages.append(choice.message.model_dump(exclude_none=True))
        if not choice.message.tool_calls:
            print("answer:", choice.message.content)
            return
        for call in choice.message.tool_calls:
            args = json.loads(call.function.arguments)  # type: ignore[union-attr]
            result = get_weather(**args)
            print(f"  call {call.function.name}({args}) -> {result}")  # type: ignore[union-attr]
            messages.append({"role": "tool", "tool_call_id": call.id, "content": result})


if __name__ == "__main__":
    main()
