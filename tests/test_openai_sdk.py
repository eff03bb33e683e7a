"""The official OpenAI SDK works through tether's clients and transports, against a local OpenAI-style fake."""

from __future__ import annotations

from collections.abc import Iterator

import httpx2
import openai
import pytest

import tether
from tether.config import parse_config
from tether.sandbox.server import SandboxServer, running_sandbox

TOKEN = "tok_sandbox"


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxServer]:
    with running_sandbox() as server:
        yield server


@pytest.fixture
def hub(sandbox: SandboxServer) -> tether.Hub:
    config = parse_config(
        f"""
        [integrations.openai]
        base_url = "{sandbox.url}/v1"
        auth = {{ type = "bearer", token = "${{OPENAI_API_KEY}}" }}
        retry = {{ backoff = "10ms" }}
        """,
        env={"OPENAI_API_KEY": TOKEN},
    )
    return tether.Hub(config)


def test_openai_chat_completion_goes_through_hub_client(hub: tether.Hub, sandbox: SandboxServer) -> None:
    with hub.client("openai") as http_client:
        client = openai.OpenAI(api_key="unused", base_url=f"{sandbox.url}/v1", http_client=http_client, max_retries=0)
        completion = client.chat.completions.create(model="sandbox-1", messages=[{"role": "user", "content": "hello"}])
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.role == "assistant"
    assert completion.usage is not None
    assert completion.usage.total_tokens > 0


def test_openai_sdk_calls_are_retried_by_tether(hub: tether.Hub, sandbox: SandboxServer) -> None:
    with hub.client("openai") as http_client:
        client = openai.OpenAI(api_key="unused", base_url=f"{sandbox.url}/v1", http_client=http_client, max_retries=0)
        raw = client.models.with_raw_response.list(
            extra_query={"fault": "status:503", "fail_times": "2", "key": "openai-retry"}
        )
    assert [model.id for model in raw.parse().data] == ["sandbox-1"]
    attempts = raw.http_response.extensions["tether.attempts"]
    assert [attempt.status for attempt in attempts] == [503, 503, 200]


def test_openai_sdk_errors_stay_the_sdks_own(hub: tether.Hub, sandbox: SandboxServer) -> None:
    """tether does not raise for statuses inside SDKs: the SDK's error handling keeps working."""
    with hub.client("openai") as http_client:
        client = openai.OpenAI(api_key="unused", base_url=f"{sandbox.url}/v1", http_client=http_client, max_retries=0)
        with pytest.raises(openai.BadRequestError) as caught:
            client.models.list(extra_query={"fault": "status:400"})
    assert caught.value.status_code == 400


async def test_async_openai_through_hub_async_client(hub: tether.Hub, sandbox: SandboxServer) -> None:
    async with hub.async_client("openai") as http_client:
        client = openai.AsyncOpenAI(
            api_key="unused", base_url=f"{sandbox.url}/v1", http_client=http_client, max_retries=0
        )
        completion = await client.chat.completions.create(
            model="sandbox-1", messages=[{"role": "user", "content": "hello"}]
        )
    assert completion.choices[0].message.content


def test_openai_sdk_over_hub_transport(hub: tether.Hub, sandbox: SandboxServer) -> None:
    with httpx2.Client(transport=hub.transport("openai")) as http_client:
        client = openai.OpenAI(api_key=TOKEN, base_url=f"{sandbox.url}/v1", http_client=http_client, max_retries=0)
        assert client.models.list().data[0].id == "sandbox-1"
