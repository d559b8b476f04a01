"""Sending what a WASM exchange plugin encoded: the host's half of `encode-order`.

An exchange plugin returns a `VenueRequest` whose headers carry the `{{api-key}}` placeholder where the
account's API key goes (the plugin signed the body through the host's `sign` capability and never saw
the secret, nor the key). `send_plugin_request` fills the key in from the `Signer`, optionally moves the
request to another base URL (a testnet, or `allele venue emulator`), and sends it with httpx.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import httpx

from allele.kernel.domain import VenueRequest
from allele.vault.signing import Signer

API_KEY_PLACEHOLDER = "{{api-key}}"


def resolve_request(request: VenueRequest, signer: Signer, account: str, *,
                    base_url: str | None = None) -> tuple[str, str, dict[str, str], str]:
    """(method, url, headers, body) ready to send: the API key filled in, the URL moved to `base_url`."""
    url = request.url
    if base_url is not None:
        target, origin = urlsplit(base_url), urlsplit(url)
        url = urlunsplit((target.scheme, target.netloc, target.path.rstrip("/") + origin.path, origin.query, ""))
    headers = {name: value.replace(API_KEY_PLACEHOLDER, signer.api_key(account)) if API_KEY_PLACEHOLDER in value
               else value for name, value in request.headers}
    return request.method, url, headers, request.body


async def send_plugin_request(request: VenueRequest, signer: Signer, account: str, *, base_url: str | None = None,
                              timeout_s: float = 10.0) -> httpx.Response:
    """Send a plugin-encoded request for `account`; the venue's answer, whatever its status."""
    method, url, headers, body = resolve_request(request, signer, account, base_url=base_url)
    async with httpx.AsyncClient(timeout=timeout_s) as client:
        return await client.request(method, url, headers=headers, content=body.encode())
