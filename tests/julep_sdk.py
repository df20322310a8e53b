"""Drives agentd with the official `julep` Python SDK (2.21.0): agent, user, session, a plain
chat, a streamed chat and the history. Every response is re-validated strictly against the
SDK's own pydantic models (the SDK itself builds them leniently), so a missing or mistyped
field fails here. Prints a JSON summary on stdout; exits non-zero on any failure.

Usage: python3 tests/julep_sdk.py BASE_URL API_KEY   (BASE_URL ends with /api)
"""

import json
import sys


def strict(obj):
    """Validates a model the SDK returned against its own type, without leniency."""
    data = obj.to_dict(mode="json", use_api_names=True)
    type(obj).model_validate(data)
    return data


def main() -> int:
    try:
        import julep
        from julep import Julep
    except ImportError as e:
        print(f"the julep package is not installed ({e}); pip install julep==2.21.0", file=sys.stderr)
        return 3
    if julep.__version__ != "2.21.0":
        print(f"julep {julep.__version__} installed, 2.21.0 expected", file=sys.stderr)
        return 3

    base_url, api_key = sys.argv[1], sys.argv[2]
    client = Julep(api_key=api_key, base_url=base_url, max_retries=0, timeout=30)

    agent = client.agents.create(name="Helper", about="Answers briefly", instructions=["Be brief."])
    strict(agent)
    user = client.users.create(name="Ada")
    strict(user)
    session = client.sessions.create(agent=agent.id, user=user.id, situation="A quick test.")
    strict(session)
    fetched = client.sessions.get(session.id)
    strict(fetched)

    reply = client.sessions.chat(
        session_id=session.id,
        messages=[{"role": "user", "content": "Hello, can you help me with a task?"}],
        max_tokens=150,
    )
    strict(reply)

    chunks = []
    streamed_text = ""
    stream = client.sessions.chat(
        session_id=session.id,
        messages=[{"role": "user", "content": "Tell me in pieces."}],
        stream=True,
    )
    for chunk in stream:
        chunks.append(strict(chunk))
        delta = chunk.choices[0].delta
        if isinstance(delta.content, str):
            streamed_text += delta.content

    # A streamed turn that runs a server tool, the tool declared the way Julep's SDK types it.
    echo_tool = {
        "name": "echo",
        "type": "function",
        "description": "Returns its arguments",
        "function": {
            "description": "Returns its arguments",
            "parameters": {"type": "object", "properties": {"text": {"type": "string"}}},
        },
    }
    tool_chunks = []
    for chunk in client.sessions.chat(
        session_id=session.id,
        messages=[{"role": "user", "content": "Echo sdk please."}],
        tools=[echo_tool],
        stream=True,
    ):
        data = strict(chunk)
        delta = chunk.choices[0].delta
        if delta.role == "tool":
            tool_chunks.append({"name": delta.name, "tool_call_id": delta.tool_call_id, "content": delta.content})
        elif delta.tool_calls and data["choices"][0].get("finish_reason") is None:
            tool_chunks.append({"calls": [c.function.name for c in delta.tool_calls], "ids": [c.id for c in delta.tool_calls]})
        if isinstance(delta.content, str) and delta.role == "assistant":
            tool_chunks.append({"text": delta.content})

    # Upstream down before any output: the SDK raises the daemon's 502, streamed or not.
    upstream_error = None
    try:
        for _ in client.sessions.chat(
            session_id=session.id,
            messages=[{"role": "user", "content": "Is anyone there?"}],
            stream=True,
        ):
            pass
    except julep.APIStatusError as e:
        upstream_error = {"status": e.status_code, "message": (e.body or {}).get("error", {}).get("message")}

    # A client tool: the call comes back to the SDK user, who sends the result.
    weather_tool = {
        "name": "get_weather",
        "type": "function",
        "function": {
            "description": "Weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
    asked = client.sessions.chat(
        session_id=session.id,
        messages=[{"role": "user", "content": "Weather in Oslo?"}],
        tools=[weather_tool],
    )
    strict(asked)
    call = asked.choices[0].message.tool_calls[0]
    answered = client.sessions.chat(
        session_id=session.id,
        messages=[{"role": "tool", "tool_call_id": call.id, "content": "sunny"}],
        tools=[weather_tool],
    )
    strict(answered)

    # Upstream cut off after some text: the stream ends with a chunk carrying an `error` object.
    cut_chunks = [
        strict(chunk)
        for chunk in client.sessions.chat(
            session_id=session.id,
            messages=[{"role": "user", "content": "Say a lot."}],
            stream=True,
        )
    ]

    history = client.sessions.history(session_id=session.id)
    strict(history)

    print(
        json.dumps(
            {
                "agent_id": agent.id,
                "user_id": user.id,
                "session_id": session.id,
                "session_agents": [str(a) for a in (getattr(fetched, "agents", None) or [])],
                "chat": {
                    "content": reply.choices[0].message.content,
                    "role": reply.choices[0].message.role,
                    "finish_reason": reply.choices[0].finish_reason,
                    "total_tokens": reply.usage.total_tokens,
                },
                "stream": {
                    "chunks": len(chunks),
                    "text": streamed_text,
                    "finish_reasons": [c["choices"][0].get("finish_reason") for c in chunks],
                    "last_usage": chunks[-1].get("usage") if chunks else None,
                },
                "tool_stream": tool_chunks,
                "upstream_error": upstream_error,
                "cut_stream": {
                    "chunks": len(cut_chunks),
                    "text": "".join(
                        c["choices"][0]["delta"].get("content") or "" for c in cut_chunks if not c.get("error")
                    ),
                    "last_error": cut_chunks[-1].get("error") if cut_chunks else None,
                },
                "client_tool": {
                    "finish_reason": asked.choices[0].finish_reason,
                    "name": call.function.name,
                    "arguments": call.function.arguments,
                    "answer": answered.choices[0].message.content,
                },
                "history": {
                    "session_id": history.session_id,
                    "roles": [e.role for e in history.entries],
                    "contents": [e.content for e in history.entries],
                },
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
