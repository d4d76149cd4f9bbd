"""Conformance of Gatehouse's auth server with real client libraries (docs/auth.md §14).

Drives a running Gatehouse (started and seeded by ops/conformance.sh) with authlib,
requests-oauthlib, PyJWT, the openai SDK and raw httpx. Environment:
  AS, AUD                      issuer (no trailing slash) and access-token audience
  CID_A, CS_A                  client A, tenant T1, scopes "chat:completions models:read"
  CID_B, CS_B                  client B, tenant T2, same scopes
  CID_NOSCOPE, CS_NOSCOPE      client in T1 with only "chat:completions"
  KEY                          API key K of T1, scopes "models:read chat:completions"
  GATEHOUSE_SERVER_LOG         optional: the server's log file, checked last for leaked secrets
"""

import json
import os
import secrets
import string

import httpx
import jwt
import openai
import pytest
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata
from oauthlib.oauth2 import BackendApplicationClient
from requests.auth import HTTPBasicAuth
from requests_oauthlib import OAuth2Session as RequestsOAuth2Session

os.environ.setdefault("OAUTHLIB_INSECURE_TRANSPORT", "1")  # oauthlib refuses plain http otherwise

_NAMES = ("AS", "AUD", "CID_A", "CS_A", "CID_B", "CS_B", "CID_NOSCOPE", "CS_NOSCOPE", "KEY")
_missing = [n for n in _NAMES if not os.environ.get(n)]
if _missing:
    raise RuntimeError(f"set {', '.join(_missing)} (run the suite through ops/conformance.sh)")

AS = os.environ["AS"]
AUD = os.environ["AUD"]
CID_A, CS_A = os.environ["CID_A"], os.environ["CS_A"]
CID_B, CS_B = os.environ["CID_B"], os.environ["CS_B"]
CID_NOSCOPE, CS_NOSCOPE = os.environ["CID_NOSCOPE"], os.environ["CS_NOSCOPE"]
KEY = os.environ["KEY"]

TOKEN_URL = f"{AS}/oauth2/token"
REVOKE_URL = f"{AS}/oauth2/revoke"
INTROSPECT_URL = f"{AS}/oauth2/introspect"
JWKS_URL = f"{AS}/.well-known/jwks.json"
METADATA_URL = f"{AS}/.well-known/oauth-authorization-server"
MODELS_URL = f"{AS}/v1/models"
BOTH_SCOPES = "chat:completions models:read"
INTROSPECTION_CLAIMS = ("scope", "client_id", "sub", "aud", "iss", "exp", "iat", "nbf", "jti", "tenant_id")
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


# --- helpers -------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def http():
    with httpx.Client(timeout=10) as client:
        yield client


@pytest.fixture(scope="session")
def jwks_client():
    return jwt.PyJWKClient(JWKS_URL)


def fetch_token(http, cid, cs, scope=None):
    data = {"grant_type": "client_credentials"}
    if scope is not None:
        data["scope"] = scope
    r = http.post(TOKEN_URL, data=data, auth=(cid, cs))
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


def verify(jwks_client, at):
    """PyJWT verification with RFC 9068 / auth.md §5 requirements; returns the claims."""
    header = jwt.get_unverified_header(at)
    assert header["typ"] == "at+jwt"
    assert header["alg"] == "ES256"
    assert header.get("kid")
    for forbidden in ("jku", "x5u", "jwk", "x5c", "crit", "zip"):
        assert forbidden not in header
    key = jwks_client.get_signing_key_from_jwt(at).key
    claims = jwt.decode(
        at,
        key,
        algorithms=["ES256"],
        audience=AUD,
        issuer=AS,
        leeway=30,
        options={"require": ["exp", "iat", "nbf", "iss", "aud", "sub", "jti"]},
    )
    assert claims["client_id"] == claims["sub"]
    assert isinstance(claims["scope"], str)
    assert claims["tenant_id"]
    return claims


def bearer(at):
    return {"Authorization": f"Bearer {at}"}


def assert_no_store(r):
    assert "no-store" in r.headers.get("cache-control", ""), dict(r.headers)


def assert_oauth_error(r, status, error):
    """RFC 6749 §5.2 error: status, JSON {"error", "error_description"?}, no-store."""
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers.get("content-type", "").startswith("application/json"), dict(r.headers)
    body = r.json()
    assert body["error"] == error, body
    if "error_description" in body:
        assert isinstance(body["error_description"], str)
    assert_no_store(r)
    return body


def assert_openai_list(r):
    assert r.status_code == 200, (r.status_code, r.text)
    body = r.json()
    assert body["object"] == "list", body
    assert isinstance(body["data"], list), body
    return body


def wrong_secret(cs):
    return cs[:-1] + ("y" if cs.endswith("x") else "x")


def random_client_id():
    alphabet = string.ascii_letters + string.digits
    return "cli_" + "".join(secrets.choice(alphabet) for _ in range(22))


# --- happy paths with real clients ---------------------------------------------------------------


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
def test_authlib_token_verify_introspect_revoke(method, http, jwks_client):
    s = OAuth2Session(
        CID_A,
        CS_A,
        scope=BOTH_SCOPES,
        token_endpoint_auth_method=method,
        revocation_endpoint_auth_method=method,
    )
    t = s.fetch_token(TOKEN_URL, grant_type="client_credentials")
    assert t["token_type"].lower() == "bearer"
    assert "refresh_token" not in t
    assert set(t["scope"].split()) == set(BOTH_SCOPES.split())
    assert isinstance(t["expires_in"], int) and 0 < t["expires_in"] <= 3600
    at = t["access_token"]

    claims = verify(jwks_client, at)
    assert claims["client_id"] == CID_A
    assert claims["aud"] == AUD and claims["iss"] == AS
    assert set(claims["scope"].split()) == set(BOTH_SCOPES.split())
    assert claims["nbf"] == claims["iat"]
    assert claims["exp"] - claims["iat"] == t["expires_in"]

    r = s.introspect_token(INTROSPECT_URL, token=at)
    assert r.status_code == 200, r.text
    intro = r.json()
    assert intro["active"] is True, intro
    for name in INTROSPECTION_CLAIMS:
        assert intro[name] == claims[name], (name, intro, claims)
    assert intro["token_type"].lower() == "bearer"

    assert_openai_list(http.get(MODELS_URL, headers=bearer(at)))

    r = s.revoke_token(REVOKE_URL, token=at, token_type_hint="access_token")
    assert r.status_code == 200, r.text
    assert_no_store(r)

    r = s.introspect_token(INTROSPECT_URL, token=at)
    assert r.status_code == 200, r.text
    assert r.json() == {"active": False}

    r = http.get(MODELS_URL, headers=bearer(at))
    assert r.status_code == 401, r.text
    www = r.headers.get("www-authenticate", "")
    assert www.startswith("Bearer"), www
    assert 'error="invalid_token"' in www, www


def test_requests_oauthlib_backend_application(jwks_client):
    s = RequestsOAuth2Session(client=BackendApplicationClient(client_id=CID_A))
    t = s.fetch_token(token_url=TOKEN_URL, auth=HTTPBasicAuth(CID_A, CS_A), scope=["models:read"])
    assert t["token_type"].lower() == "bearer"
    assert "refresh_token" not in t
    claims = verify(jwks_client, t["access_token"])
    assert claims["scope"] == "models:read"
    assert claims["client_id"] == CID_A
    r = s.get(MODELS_URL)  # the session sends the Bearer token itself
    assert r.status_code == 200, r.text
    assert r.json()["object"] == "list" and isinstance(r.json()["data"], list)


def test_token_response_headers_and_shape(http):
    r = http.post(TOKEN_URL, data={"grant_type": "client_credentials", "scope": "models:read"}, auth=(CID_A, CS_A))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert_no_store(r)
    assert "no-cache" in r.headers.get("pragma", ""), dict(r.headers)
    body = r.json()
    assert body["token_type"] == "Bearer"
    assert body["scope"] == "models:read"
    assert "refresh_token" not in body


def test_jwks_document(http):
    r = http.get(JWKS_URL)
    assert r.status_code == 200, r.text
    cc = r.headers.get("cache-control", "")
    assert "public" in cc and "max-age=300" in cc, cc
    keys = r.json()["keys"]
    assert keys
    for k in keys:
        assert k["kty"] == "EC" and k["crv"] == "P-256" and k["use"] == "sig" and k["alg"] == "ES256", k
        assert k["kid"] and k["x"] and k["y"]
        assert "d" not in k  # public parameters only


def test_api_key_models_httpx(http):
    assert_openai_list(http.get(MODELS_URL, headers=bearer(KEY)))


def test_openai_sdk_with_jwt(http):
    at = fetch_token(http, CID_A, CS_A)
    page = OpenAI_(at).models.list()
    assert isinstance(page.data, list)


def test_openai_sdk_with_api_key():
    page = OpenAI_(KEY).models.list()
    assert isinstance(page.data, list)


def test_openai_sdk_errors_map_to_exceptions(http):
    """auth.md §7: 401 → AuthenticationError, 403 → PermissionDeniedError."""
    with pytest.raises(openai.AuthenticationError):
        OpenAI_("not-a-token").models.list()
    at = fetch_token(http, CID_NOSCOPE, CS_NOSCOPE)
    with pytest.raises(openai.PermissionDeniedError):
        OpenAI_(at).models.list()


def OpenAI_(api_key):  # noqa: N802 - reads like the class it builds
    return openai.OpenAI(base_url=f"{AS}/v1", api_key=api_key, max_retries=0, timeout=10)


# --- metadata ------------------------------------------------------------------------------------


def test_authorization_server_metadata(http):
    r = http.get(METADATA_URL)
    assert r.status_code == 200, r.text
    cc = r.headers.get("cache-control", "")
    assert "public" in cc and "max-age=3600" in cc, cc
    m = r.json()
    assert m["issuer"] == AS  # byte-identical, no trailing slash (RFC 8414 §3.3)
    assert m["token_endpoint"] == TOKEN_URL
    assert m["jwks_uri"] == JWKS_URL
    assert m["revocation_endpoint"] == REVOKE_URL
    assert m["introspection_endpoint"] == INTROSPECT_URL
    assert m["grant_types_supported"] == ["client_credentials"]
    assert m["response_types_supported"] == []
    for key in (
        "token_endpoint_auth_methods_supported",
        "revocation_endpoint_auth_methods_supported",
        "introspection_endpoint_auth_methods_supported",
    ):
        assert {"client_secret_basic", "client_secret_post"} <= set(m[key]), (key, m.get(key))
    assert {"chat:completions", "audio:align", "models:read"} <= set(m["scopes_supported"])

    # authlib's RFC 8414 validators, minus response_types_supported: it treats the honest [] as
    # missing (auth.md §12). Loopback http counts as secure transport for authlib.
    meta = AuthorizationServerMetadata(m)
    for key in meta.REGISTRY_KEYS:
        if key != "response_types_supported":
            getattr(meta, f"validate_{key}")()


def test_no_openid_configuration(http):
    assert http.get(f"{AS}/.well-known/openid-configuration").status_code == 404


# --- negative matrix: token endpoint -------------------------------------------------------------


def test_no_client_auth_is_invalid_client(http):
    r = http.post(TOKEN_URL, data={"grant_type": "client_credentials"})
    assert_oauth_error(r, 401, "invalid_client")
    assert 'Basic realm="oauth2"' in r.headers.get("www-authenticate", ""), dict(r.headers)


def test_wrong_secret_basic_is_invalid_client(http):
    r = http.post(TOKEN_URL, data={"grant_type": "client_credentials"}, auth=(CID_A, wrong_secret(CS_A)))
    assert_oauth_error(r, 401, "invalid_client")
    assert 'Basic realm="oauth2"' in r.headers.get("www-authenticate", ""), dict(r.headers)


def test_wrong_secret_post_is_invalid_client(http):
    r = http.post(
        TOKEN_URL, data={"grant_type": "client_credentials", "client_id": CID_A, "client_secret": wrong_secret(CS_A)}
    )
    assert_oauth_error(r, 401, "invalid_client")


def test_unknown_client_looks_like_wrong_secret(http):
    """auth.md §3: unknown client and wrong secret give one identical 401."""
    wrong = http.post(TOKEN_URL, data={"grant_type": "client_credentials"}, auth=(CID_A, "gth_cs_" + "x" * 49))
    unknown = http.post(TOKEN_URL, data={"grant_type": "client_credentials"}, auth=(random_client_id(), "gth_cs_" + "x" * 49))
    assert_oauth_error(wrong, 401, "invalid_client")
    assert_oauth_error(unknown, 401, "invalid_client")
    assert wrong.json() == unknown.json()
    assert wrong.headers.get("www-authenticate") == unknown.headers.get("www-authenticate")


def test_basic_plus_body_secret_is_invalid_request(http):
    r = http.post(
        TOKEN_URL, data={"grant_type": "client_credentials", "client_id": CID_A, "client_secret": CS_A}, auth=(CID_A, CS_A)
    )
    assert_oauth_error(r, 400, "invalid_request")


def test_password_grant_is_unsupported(http):
    r = http.post(TOKEN_URL, data={"grant_type": "password", "username": "u", "password": "p"}, auth=(CID_A, CS_A))
    assert_oauth_error(r, 400, "unsupported_grant_type")


def test_missing_grant_type_is_invalid_request(http):
    r = http.post(TOKEN_URL, data={"scope": "models:read"}, auth=(CID_A, CS_A))
    assert_oauth_error(r, 400, "invalid_request")


def test_duplicate_scope_is_invalid_request(http):
    body = "grant_type=client_credentials&scope=models%3Aread&scope=chat%3Acompletions"
    r = http.post(TOKEN_URL, content=body, headers=FORM, auth=(CID_A, CS_A))
    assert_oauth_error(r, 400, "invalid_request")


def test_unknown_scope_is_invalid_scope(http):
    r = http.post(TOKEN_URL, data={"grant_type": "client_credentials", "scope": "models:read no:such"}, auth=(CID_A, CS_A))
    assert_oauth_error(r, 400, "invalid_scope")


def test_scope_not_allowed_for_client_is_invalid_scope(http):
    r = http.post(TOKEN_URL, data={"grant_type": "client_credentials", "scope": "models:read"}, auth=(CID_NOSCOPE, CS_NOSCOPE))
    assert_oauth_error(r, 400, "invalid_scope")


def test_json_body_is_invalid_request(http):
    r = http.post(
        TOKEN_URL,
        content=json.dumps({"grant_type": "client_credentials"}),
        headers={"Content-Type": "application/json"},
        auth=(CID_A, CS_A),
    )
    assert_oauth_error(r, 400, "invalid_request")


def test_get_token_endpoint_is_405(http):
    r = http.get(TOKEN_URL)
    assert r.status_code == 405, r.text
    assert r.headers.get("allow", "").replace(" ", "").upper() == "POST", dict(r.headers)
    assert_no_store(r)


# --- negative matrix: resource server ------------------------------------------------------------


def test_models_without_authorization(http):
    r = http.get(MODELS_URL)
    assert r.status_code == 401, r.text
    www = r.headers.get("www-authenticate", "")
    assert www.startswith("Bearer"), www
    assert 'realm="api"' in www, www
    assert "error=" not in www, www
    assert isinstance(r.json()["error"], dict), r.text  # OpenAI's error shape (auth.md §7)


def test_models_with_garbage_token(http):
    r = http.get(MODELS_URL, headers=bearer("not.a.jwt"))
    assert r.status_code == 401, r.text
    assert 'error="invalid_token"' in r.headers.get("www-authenticate", ""), dict(r.headers)
    assert "not.a.jwt" not in r.text  # never echo the token


def test_missing_scope_is_403_insufficient_scope(http, jwks_client):
    at = fetch_token(http, CID_NOSCOPE, CS_NOSCOPE)
    assert verify(jwks_client, at)["scope"] == "chat:completions"
    r = http.get(MODELS_URL, headers=bearer(at))
    assert r.status_code == 403, r.text
    www = r.headers.get("www-authenticate", "")
    assert www.startswith("Bearer"), www
    assert 'error="insufficient_scope"' in www, www


# --- negative matrix: introspection and revocation across clients --------------------------------


def test_foreign_token_introspection_is_inactive(http):
    at_b = fetch_token(http, CID_B, CS_B)
    own = http.post(INTROSPECT_URL, data={"token": at_b}, auth=(CID_B, CS_B))
    assert own.status_code == 200 and own.json()["active"] is True, own.text
    r = http.post(INTROSPECT_URL, data={"token": at_b}, auth=(CID_A, CS_A))
    assert r.status_code == 200, r.text
    assert r.json() == {"active": False}


def test_foreign_token_revocation_is_noop(http):
    at_b = fetch_token(http, CID_B, CS_B)
    r = http.post(REVOKE_URL, data={"token": at_b, "token_type_hint": "access_token"}, auth=(CID_A, CS_A))
    assert r.status_code == 200, r.text
    assert_no_store(r)
    assert_openai_list(http.get(MODELS_URL, headers=bearer(at_b)))
    own = http.post(INTROSPECT_URL, data={"token": at_b}, auth=(CID_B, CS_B))
    assert own.status_code == 200 and own.json()["active"] is True, own.text


def test_api_key_at_revoke_is_unsupported_token_type(http):
    r = http.post(REVOKE_URL, data={"token": KEY}, auth=(CID_A, CS_A))
    assert_oauth_error(r, 400, "unsupported_token_type")
    assert_openai_list(http.get(MODELS_URL, headers=bearer(KEY)))


def test_api_key_introspection_is_inactive(http):
    r = http.post(INTROSPECT_URL, data={"token": KEY}, auth=(CID_A, CS_A))
    assert r.status_code == 200, r.text
    assert r.json() == {"active": False}


def test_revoke_without_token_is_invalid_request(http):
    r = http.post(REVOKE_URL, data={"token_type_hint": "access_token"}, auth=(CID_A, CS_A))
    assert_oauth_error(r, 400, "invalid_request")


def test_revoke_garbage_token_is_200(http):
    r = http.post(REVOKE_URL, data={"token": "garbage"}, auth=(CID_A, CS_A))
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("url", [INTROSPECT_URL, REVOKE_URL], ids=["introspect", "revoke"])
def test_introspect_and_revoke_require_client_auth(http, url):
    at = fetch_token(http, CID_A, CS_A)
    r = http.post(url, data={"token": at})
    assert_oauth_error(r, 401, "invalid_client")
    assert_openai_list(http.get(MODELS_URL, headers=bearer(at)))


# --- last: nothing secret reached the server's log (auth.md §10, §13) ----------------------------


def test_zz_no_secrets_in_server_log():
    path = os.environ.get("GATEHOUSE_SERVER_LOG")
    if not path:
        pytest.skip("GATEHOUSE_SERVER_LOG not set (ops/conformance.sh sets it)")
    with open(path, encoding="utf-8", errors="replace") as f:
        log = f.read()
    assert log, "the server log is empty"
    for name in ("CS_A", "CS_B", "CS_NOSCOPE", "KEY"):
        assert os.environ[name] not in log, f"{name} appears in the server log"
    assert "eyJ" not in log, "something that looks like a JWT appears in the server log"
