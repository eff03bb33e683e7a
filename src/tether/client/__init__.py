"""The client core: the policy transports and the network transports under them."""

from tether.client.response import TetherResponse
from tether.client.transport import AsyncRetryTransport, Call, CallSpec, RetryTransport

__all__ = ["AsyncRetryTransport", "Call", "CallSpec", "RetryTransport", "TetherResponse"]
