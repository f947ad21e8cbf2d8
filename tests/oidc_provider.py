"""A small OpenID Connect provider for the tests: a real HTTP server on 127.0.0.1 with the
authorization-code flow and ID tokens signed RS256 with a key made at start (its public
half served as a JWKS).

/authorize signs in `user` at once (no login form: the provider's own screen is not what is
tested) and sends the browser back with a one-time code; /token exchanges the code, checking
the client's secret and redirect URI, for an access token and an ID token carrying the nonce;
/userinfo answers the access token with the user's claims; /jwks serves the key.
"""

import base64
import json
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlparse

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

CLIENT_ID = "handoff-tests"
CLIENT_SECRET = "tests-only-client-secret"
KID = "test-key-1"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def int_b64url(n: int) -> str:
    return b64url(n.to_bytes((n.bit_length() + 7) // 8, "big"))


@dataclass
class Provider:
    base: str = ""
    user: dict = field(default_factory=dict)  # the claims of whoever signs in next
    key: rsa.RSAPrivateKey = field(default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048))
    codes: dict = field(default_factory=dict)  # code -> (claims, nonce, redirect_uri)
    tokens: dict = field(default_factory=dict)  # access token -> claims
    requests: list = field(default_factory=list)  # paths asked for, in order

    def sign(self, claims: dict) -> str:
        header = b64url(json.dumps({"alg": "RS256", "typ": "JWT", "kid": KID}).encode())
        payload = b64url(json.dumps(claims).encode())
        signature = self.key.sign(f"{header}.{payload}".encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{header}.{payload}.{b64url(signature)}"

    def jwks(self) -> dict:
        numbers = self.key.public_key().public_numbers()
        return {"keys": [{"kty": "RSA", "use": "sig", "alg": "RS256", "kid": KID, "n": int_b64url(numbers.n), "e": int_b64url(numbers.e)}]}

    def settings(self) -> dict:
        """The Handoff settings that point at this provider."""
        return {
            "OIDC_RP_CLIENT_ID": CLIENT_ID,
            "OIDC_RP_CLIENT_SECRET": CLIENT_SECRET,
            "OIDC_OP_AUTHORIZATION_ENDPOINT": f"{self.base}/authorize",
            "OIDC_OP_TOKEN_ENDPOINT": f"{self.base}/token",
            "OIDC_OP_USER_ENDPOINT": f"{self.base}/userinfo",
            "OIDC_OP_JWKS_ENDPOINT": f"{self.base}/jwks",
            "OIDC_PROVIDER_NAME": "Test SSO",
        }


def handler_for(provider: Provider) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def answer(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            url = urlparse(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            provider.requests.append(url.path)
            if url.path == "/authorize":
                if query.get("client_id") != CLIENT_ID or query.get("response_type") != "code":
                    return self.answer(400, {"error": "invalid_request"})
                code = secrets.token_urlsafe(16)
                provider.codes[code] = (dict(provider.user), query.get("nonce"), query["redirect_uri"])
                self.send_response(302)
                self.send_header("Location", query["redirect_uri"] + "?" + urlencode({"code": code, "state": query["state"]}))
                self.end_headers()
            elif url.path == "/jwks":
                self.answer(200, provider.jwks())
            elif url.path == "/userinfo":
                token = self.headers.get("Authorization", "").removeprefix("Bearer ")
                claims = provider.tokens.get(token)
                self.answer(200, claims) if claims else self.answer(401, {"error": "invalid_token"})
            else:
                self.answer(404, {"error": "not_found"})

        def do_POST(self) -> None:
            provider.requests.append(self.path)
            if self.path != "/token":
                return self.answer(404, {"error": "not_found"})
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode()).items()}
            if (form.get("client_id"), form.get("client_secret")) != (CLIENT_ID, CLIENT_SECRET):
                return self.answer(401, {"error": "invalid_client"})
            found = provider.codes.pop(form.get("code", ""), None)  # one use
            if found is None or found[2] != form.get("redirect_uri"):
                return self.answer(400, {"error": "invalid_grant"})
            claims, nonce, _ = found
            now = int(time.time())
            id_token = provider.sign(
                {"iss": provider.base, "sub": claims["sub"], "aud": CLIENT_ID, "iat": now, "exp": now + 300, "nonce": nonce, "email": claims.get("email")}
            )
            access = secrets.token_urlsafe(24)
            provider.tokens[access] = claims
            self.answer(200, {"access_token": access, "token_type": "Bearer", "expires_in": 300, "id_token": id_token})

    return Handler


@contextmanager
def running(user: dict) -> Iterator[Provider]:
    provider = Provider(user=user)
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(provider))
    provider.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield provider
    finally:
        server.shutdown()
        server.server_close()
