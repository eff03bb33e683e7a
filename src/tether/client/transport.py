"""The policy transports: thin sync and async drivers around a :class:`~tether.client.call.Call`.

``RetryTransport`` and ``AsyncRetryTransport`` are twins: each line of one has its counterpart in the other,
and every decision (admission, time limits, whether to retry, how long to wait, which error to raise) is a
method of ``Call``, which does no I/O. The only I/O here is the state backend's round trips (in-process for
``memory``), the inner transport, and sleeping. Options per request travel in
``request.extensions["tether.*"]``; outcomes come back in ``response.extensions["tether.*"]``.

Per-request options:
    ``tether.stream`` (bool): do not buffer the response body inside the retry loop (large downloads).
    ``tether.raise_for_status`` (bool): override the transport's choice of raising typed status errors.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import httpx2

from tether.client.call import Call, CallSpec
from tether.policies.ratelimit import RateLimitSignal
from tether.state.base import Admission

__all__ = ["AsyncRetryTransport", "Call", "CallSpec", "RetryTransport"]

_NO_SIGNAL = RateLimitSignal()


class RetryTransport(httpx2.BaseTransport):
    """The sync policy transport: drives a :class:`Call` around an inner transport."""

    def __init__(
        self, inner: httpx2.BaseTransport, spec: CallSpec, *, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self.inner, self.spec, self._sleep = inner, spec, sleep

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        call = Call(self.spec, request)
        while True:
            again = True
            while again:  # twice when an endpoint group's slot comes first, then the integration's
                admission = self._admit(call)
                delay, again = call.admitted(admission), admission.again
                if delay:
                    self._sleep(delay)
            response, error = self._attempt(call, request)
            if response is None:
                assert error is not None
                self._report(call, call.error_outcome(error))
                wait = call.after_error(error)
                if wait is None:
                    raise call.failure(error) from error
            else:
                self._report(call, call.response_outcome(response))
                wait = call.after_response(response)
                if wait is None:
                    return call.finish(response)
                response.close()
            self._sleep(wait)

    def _attempt(
        self, call: Call, request: httpx2.Request
    ) -> tuple[httpx2.Response | None, httpx2.TransportError | None]:
        """One attempt, inside the bulkhead: send, and read the body when it is buffered."""
        bulkhead = self.spec.bulkhead
        if bulkhead is not None and not bulkhead.acquire(call.max_wait()):
            raise call.crowded()
        call.begin_attempt()
        try:
            response = self.inner.handle_request(request)
            if call.should_read(response) or response.status_code >= 400:
                try:
                    response.read()
                except httpx2.TransportError:
                    response.close()
                    raise
            return response, None
        except httpx2.TransportError as exc:
            return None, exc
        except BaseException:
            if call.probe_outstanding():  # interrupted: give the probe permit back as a failure
                self._report(call, (True, _NO_SIGNAL))
            raise
        finally:
            if bulkhead is not None:
                bulkhead.release()

    def _admit(self, call: Call) -> Admission:
        spec = self.spec
        return spec.state.admit(spec.integration, call.admission_limits(), max_wait=call.max_wait())

    def _report(self, call: Call, outcome: tuple[bool | None, RateLimitSignal]) -> None:
        spec = self.spec
        failure, signal = outcome
        if failure is not None or signal:
            new_state = spec.state.report(
                spec.integration, call.route.limits, failure=failure, signal=signal, probe=call.probe()
            )
            call.reported(new_state)

    def close(self) -> None:
        self.inner.close()


class AsyncRetryTransport(httpx2.AsyncBaseTransport):
    """The async twin of :class:`RetryTransport`."""

    def __init__(
        self,
        inner: httpx2.AsyncBaseTransport,
        spec: CallSpec,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.inner, self.spec, self._sleep = inner, spec, sleep

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        call = Call(self.spec, request)
        while True:
            again = True
            while again:  # twice when an endpoint group's slot comes first, then the integration's
                admission = await self._admit(call)
                delay, again = call.admitted(admission), admission.again
                if delay:
                    await self._sleep(delay)
            response, error = await self._attempt(call, request)
            if response is None:
                assert error is not None
                await self._report(call, call.error_outcome(error))
                wait = call.after_error(error)
                if wait is None:
                    raise call.failure(error) from error
            else:
                await self._report(call, call.response_outcome(response))
                wait = call.after_response(response)
                if wait is None:
                    return call.finish(response)
                await response.aclose()
            await self._sleep(wait)

    async def _attempt(
        self, call: Call, request: httpx2.Request
    ) -> tuple[httpx2.Response | None, httpx2.TransportError | None]:
        """One attempt, inside the bulkhead: send, and read the body when it is buffered."""
        bulkhead = self.spec.bulkhead
        if bulkhead is not None and not await bulkhead.aacquire(call.max_wait()):
            raise call.crowded()
        call.begin_attempt()
        try:
            response = await self.inner.handle_async_request(request)
            if call.should_read(response) or response.status_code >= 400:
                try:
                    await response.aread()
                except httpx2.TransportError:
                    await response.aclose()
                    raise
            return response, None
        except httpx2.TransportError as exc:
            return None, exc
        except BaseException:
            if call.probe_outstanding():  # interrupted or cancelled: give the probe permit back as a failure
                await self._report(call, (True, _NO_SIGNAL))
            raise
        finally:
            if bulkhead is not None:
                bulkhead.arelease()

    async def _admit(self, call: Call) -> Admission:
        spec = self.spec
        return await spec.state.aadmit(spec.integration, call.admission_limits(), max_wait=call.max_wait())

    async def _report(self, call: Call, outcome: tuple[bool | None, RateLimitSignal]) -> None:
        spec = self.spec
        failure, signal = outcome
        if failure is not None or signal:
            new_state = await spec.state.areport(
                spec.integration, call.route.limits, failure=failure, signal=signal, probe=call.probe()
            )
            call.reported(new_state)

    async def aclose(self) -> None:
        await self.inner.aclose()
