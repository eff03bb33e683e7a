"""The checks below HTTP: DNS, TCP to every address, the TLS certificate, and the proxy environment.

Each takes plain values (host, port, timeouts) and returns a :class:`~tether.doctor.report.Check`, so each can
be run and tested on its own; :func:`tether.doctor.checks.diagnose` runs them in order.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import ssl
import time
from collections.abc import Callable

import httpx2
from cryptography import x509

from tether.client.build import environment_proxy
from tether.doctor.report import Check, fail, ok, warn
from tether.observe.redact import redact_url
from tether.observe.tls import certificate_expiry

__all__ = ["Resolver", "check_dns", "check_proxy", "check_tcp", "check_tls", "system_resolver"]

Resolver = Callable[[str, int], list[str]]
"""Resolves a host name to its addresses (``socket.getaddrinfo`` by default); raises ``OSError`` when it cannot."""

_PROXY_VARIABLES = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY")
_TRUST_VARIABLES = ("SSL_CERT_FILE", "SSL_CERT_DIR")


def system_resolver(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to, in the order the system returns them, without duplicates."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def check_dns(host: str, port: int, *, resolve: Resolver = system_resolver, proxied: bool = False) -> Check:
    """Resolve ``host`` and list every address; with ``proxied``, a failure is only a warning (the proxy resolves)."""
    if _is_ip(host):
        return ok("dns", f"{host} is an IP address; nothing to resolve", addresses=[host])
    started = time.perf_counter()
    try:
        addresses = resolve(host, port)
    except OSError as exc:
        cause = f"{host} does not resolve on this machine: {exc.strerror or exc}"
        fix = (
            "check the host in base_url for typos; if it resolves elsewhere, check this machine's DNS "
            "(/etc/resolv.conf), VPN or split-horizon DNS (internal names need the internal resolver)"
        )
        if proxied:
            return warn("dns", f"{host} does not resolve here (calls go through the proxy)", cause=cause, fix=fix)
        return fail("dns", f"{host} does not resolve", cause=cause, fix=fix)
    elapsed = time.perf_counter() - started
    listed = ", ".join(addresses)
    return ok("dns", f"{host} → {listed} ({elapsed * 1000:.0f} ms)", addresses=addresses, seconds=round(elapsed, 4))


def check_tcp(addresses: list[str], port: int, *, timeout: float, proxied: bool = False) -> Check:
    """Open a TCP connection to ``port`` on every address; one that fails is one bad backend (or firewall rule)."""
    results: dict[str, str] = {}
    seconds: dict[str, float] = {}
    for address in addresses:
        started = time.perf_counter()
        try:
            with socket.create_connection((address, port), timeout=timeout):
                pass
        except TimeoutError:
            results[address] = f"no answer within {timeout:g}s"
        except ConnectionRefusedError:
            results[address] = "connection refused"
        except OSError as exc:
            results[address] = exc.strerror or str(exc)
        else:
            results[address] = "ok"
            seconds[address] = round(time.perf_counter() - started, 4)
    bad = {address: reason for address, reason in results.items() if reason != "ok"}
    details = {"port": port, "results": results, "seconds": seconds}
    if not bad:
        slowest = max(seconds.values(), default=0.0)
        count = len(addresses)
        every = "the address accepts" if count == 1 else f"all {count} addresses accept"
        return ok("tcp", f"{every} connections on port {port} (slowest {slowest * 1000:.0f} ms)", **details)
    where = "; ".join(f"{_join(address, port)}: {reason}" for address, reason in bad.items())
    good = len(addresses) - len(bad)
    summary = f"{good} of {len(addresses)} addresses accept connections on port {port}"
    reasons = set(bad.values())
    if reasons == {"connection refused"}:
        fix = "nothing listens there: the service is down on that address, or the port in base_url is wrong"
    elif any(reason.startswith("no answer") for reason in reasons):
        fix = (
            "packets are dropped: a firewall, security group or egress rule blocks the port, or the host is down; "
            f"a timeout.connect of {timeout:g}s may also be too short for a distant host"
        )
    else:
        fix = "no route to the address: check this machine's network, VPN and routes"
    if good:
        fix += (
            "; the other addresses work, so one backend behind the name is down: tell the provider which one "
            "(calls that land on it fail intermittently)"
        )
    if proxied:
        return warn("tcp", summary + " directly (calls go through the proxy)", cause=where, fix=fix, **details)
    return fail("tcp", summary, cause=where, fix=fix, **details)


def _join(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def check_tls(host: str, port: int, *, ca_bundle: str | None, timeout: float, warn_within: float | None) -> Check:
    """The server's certificate: trusted chain, expiry and days left, host name, self-signed.

    Args:
        host: The host name in base_url (what the certificate must be for).
        port: The TLS port.
        ca_bundle: The integration's extra CAs (absolute path), trusted besides the system's.
        timeout: Seconds for the connection and each handshake.
        warn_within: Warn when the certificate expires within this many seconds (the ``tls_expiry`` alert).
    """
    try:
        info = certificate_expiry(host, port, ca_bundle=ca_bundle, timeout=timeout)
    except OSError as exc:
        return fail(
            "tls",
            "no TLS handshake",
            cause=f"{host}:{port} did not complete a TLS handshake: {exc}",
            fix="check that the port speaks HTTPS (http:// vs https:// in base_url, and the port number)",
        )
    expires = info.not_after.date().isoformat()
    details = {
        "not_after": info.not_after.isoformat(),
        "days_left": round(info.days_left, 1),
        "issuer": info.issuer,
        "subject": info.subject,
        "self_signed": info.self_signed,
        "hostname_ok": info.hostname_ok,
        "trusted": info.trusted,
        "error": info.error,
    }
    if info.days_left < 0:
        return fail(
            "tls",
            f"certificate expired on {expires} ({_days(-info.days_left)} ago)",
            cause=f"the certificate of {host} expired on {expires}; every client refuses it",
            fix=(
                "the provider must renew it (tell them, with this date); if only this machine sees it, check its "
                "clock, or a TLS-inspecting proxy that presents an old certificate"
            ),
            **details,
        )
    if info.self_signed:
        return fail(
            "tls",
            f"self-signed certificate ({info.subject})",
            cause=f"{host} presents a certificate signed by its own key, which nothing trusts by default",
            fix=(
                "if this is a private or staging server you trust, put its certificate (PEM) in ca_bundle in "
                "tether.toml; otherwise something intercepts the connection or the server is misconfigured: "
                "never turn verification off"
            ),
            **details,
        )
    if not info.hostname_ok:
        names = _certificate_names(host, port, timeout)
        details["names"] = names
        return fail(
            "tls",
            f"certificate is for {', '.join(names) or info.subject}, not {host}",
            cause=f"hostname mismatch: the certificate {host} presents is not valid for {host}",
            fix=(
                "use a host name the certificate covers in base_url (the provider's documented API host), or ask "
                "the provider to fix the certificate; a wrong DNS entry or a shared load balancer also does this"
            ),
            **details,
        )
    if not info.trusted:
        return fail(
            "tls",
            f"certificate issued by {info.issuer}, which this machine does not trust",
            cause=f"untrusted issuer: {info.error or 'the chain does not verify'}",
            fix=(
                "if the provider uses a private CA or a TLS-inspecting proxy sits in between, add that CA (PEM) "
                "as ca_bundle in tether.toml; otherwise update the system CA store (ca-certificates) or "
                "SSL_CERT_FILE"
            ),
            **details,
        )
    days = f"{_days(info.days_left)} left"
    summary = f"trusted, valid for {host}, expires {expires} ({days}), issuer {info.issuer}"
    if warn_within is not None and info.days_left * 86400 < warn_within:
        return warn(
            "tls",
            summary,
            cause=f"the certificate expires within the tls_expiry alert's {warn_within / 86400:.0f} days",
            fix="make sure the provider renews it before then (most renew automatically a few weeks ahead)",
            **details,
        )
    return ok("tls", summary, **details)


def _days(days: float) -> str:
    whole = max(0, round(days))
    return f"{whole} day{'s' if whole != 1 else ''}"


def _certificate_names(host: str, port: int, timeout: float) -> list[str]:
    """The names a certificate is valid for (its subject alternative names), read over an unverified handshake."""
    blind = ssl.create_default_context()
    blind.check_hostname = False
    blind.verify_mode = ssl.CERT_NONE  # only to read the names of a certificate already refused
    try:
        with (
            socket.create_connection((host, port), timeout=timeout) as raw,
            blind.wrap_socket(raw, server_hostname=host) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
        if der is None:
            return []
        names = x509.load_der_x509_certificate(der).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except (OSError, x509.ExtensionNotFound, ValueError):
        return []
    dns = names.value.get_values_for_type(x509.DNSName)
    return [*dns, *(str(address) for address in names.value.get_values_for_type(x509.IPAddress))]


def check_proxy(base_url: str, *, timeout: float) -> Check:
    """The proxy and trust-store variables in effect, and whether the proxy tether will use answers at all."""
    env = os.environ
    found = {
        name: redact_url(value) if name != "NO_PROXY" else value
        for name in (*_PROXY_VARIABLES, *_TRUST_VARIABLES)
        for value in (env.get(name) or env.get(name.lower()),)
        if value
    }
    proxy = environment_proxy(base_url)
    details = {"variables": found, "proxy": redact_url(proxy) if proxy else None}
    listed = ", ".join(f"{name}={value}" for name, value in found.items())
    if proxy is None:
        summary = "no proxy applies to this URL" + (f" (set: {listed})" if listed else "")
        return ok("proxy", summary, **details)
    url = httpx2.URL(proxy)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.host, port), timeout=timeout):
            pass
    except OSError as exc:
        return fail(
            "proxy",
            f"calls go through the proxy {redact_url(proxy)}, which does not answer",
            cause=f"{url.host}:{port}: {exc.strerror or exc}; every call through tether will fail",
            fix="fix or unset the proxy variable, or add the API's host to NO_PROXY",
            **details,
        )
    return ok("proxy", f"calls go through the proxy {redact_url(proxy)} ({listed})", **details)
