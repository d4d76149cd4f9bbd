#!/usr/bin/env python3
"""A small OpenID Connect provider for the dashboard's SSO tests: discovery, an /authorize that
signs the configured person in at once (no login form), a /token endpoint for the authorization
code grant with PKCE (S256) and client authentication (HTTP Basic or form), and a JWKS. ID tokens
are RS256 JWTs (PyJWT + cryptography, from the test virtualenv) carrying the nonce, the email
(verified) and the extra claims given with --claims.

    python tests/oidc/provider.py --port 8765 --client-id gh --client-secret s3cret \
        --email ann@acme.example --claims '{"gatehouse_tenant": "acme"}' [--issuer URL]

Prints "ready" once it listens. Every request is checked as a strict provider would: a wrong
client, redirect URI, PKCE verifier or a reused code answers 400/401.
"""

import argparse
import base64
import hashlib
import json
import secrets
import sys
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--issuer", default=None)
    ap.add_argument("--client-id", required=True)
    ap.add_argument("--client-secret", required=True)
    ap.add_argument("--email", required=True)
    ap.add_argument("--email-verified", default="true")
    ap.add_argument("--claims", default="{}")
    args = ap.parse_args()
    issuer = args.issuer or f"http://127.0.0.1:{args.port}"
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update(kid="test-key-1", use="sig", alg="RS256")
    extra = json.loads(args.claims)
    codes = {}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def reply(self, status, body=None, headers=()):
            data = json.dumps(body).encode() if body is not None else b""
            self.send_response(status)
            if body is not None:
                self.send_header("Content-Type", "application/json")
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            url = urllib.parse.urlparse(self.path)
            q = dict(urllib.parse.parse_qsl(url.query))
            if url.path == "/.well-known/openid-configuration":
                return self.reply(200, {
                    "issuer": issuer,
                    "authorization_endpoint": f"{issuer}/authorize",
                    "token_endpoint": f"{issuer}/token",
                    "jwks_uri": f"{issuer}/jwks",
                    "response_types_supported": ["code"],
                    "subject_types_supported": ["public"],
                    "id_token_signing_alg_values_supported": ["RS256"],
                    "code_challenge_methods_supported": ["S256"],
                })
            if url.path == "/jwks":
                return self.reply(200, {"keys": [jwk]})
            if url.path == "/authorize":
                ok = (q.get("response_type") == "code" and q.get("client_id") == args.client_id
                      and "openid" in q.get("scope", "").split() and q.get("code_challenge_method") == "S256"
                      and q.get("code_challenge") and q.get("redirect_uri") and q.get("state") and q.get("nonce"))
                if not ok:
                    return self.reply(400, {"error": "invalid_request"})
                code = secrets.token_urlsafe(24)
                codes[code] = {"redirect_uri": q["redirect_uri"], "challenge": q["code_challenge"], "nonce": q["nonce"]}
                target = q["redirect_uri"] + "?" + urllib.parse.urlencode({"code": code, "state": q["state"]})
                return self.reply(302, headers=[("Location", target)])
            return self.reply(404, {"error": "not_found"})

        def do_POST(self):
            if urllib.parse.urlparse(self.path).path != "/token":
                return self.reply(404, {"error": "not_found"})
            length = int(self.headers.get("Content-Length", "0"))
            form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
            client_id, client_secret = form.get("client_id"), form.get("client_secret")
            auth = self.headers.get("Authorization", "")
            if auth.startswith("Basic "):
                raw = base64.b64decode(auth[6:]).decode()
                client_id, client_secret = (urllib.parse.unquote_plus(p) for p in raw.split(":", 1))
            if client_id != args.client_id or client_secret != args.client_secret:
                return self.reply(401, {"error": "invalid_client"})
            grant = codes.pop(form.get("code", ""), None)
            if form.get("grant_type") != "authorization_code" or grant is None or form.get("redirect_uri") != grant["redirect_uri"]:
                return self.reply(400, {"error": "invalid_grant"})
            verifier = form.get("code_verifier", "")
            challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
            if challenge != grant["challenge"]:
                return self.reply(400, {"error": "invalid_grant", "error_description": "PKCE verification failed"})
            now = int(time.time())
            claims = {"iss": issuer, "sub": "user-" + hashlib.sha256(args.email.encode()).hexdigest()[:12], "aud": args.client_id,
                      "iat": now, "exp": now + 300, "nonce": grant["nonce"], "email": args.email,
                      "email_verified": args.email_verified == "true", **extra}
            id_token = jwt.encode(claims, key, algorithm="RS256", headers={"kid": "test-key-1"})
            return self.reply(200, {"access_token": secrets.token_urlsafe(24), "token_type": "Bearer", "expires_in": 300, "id_token": id_token})

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
