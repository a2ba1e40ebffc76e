"""The OpenAPI 3.1 description of the bank-facing API (`/api/v1/openapi.json`, read at `/api/v1/docs`).

Written as data here, next to the code it describes (the routes are in `api.py`, the rules in
`issuance`, `bank_auth` and `openid_handoff`); `tests/coupons/test_api_docs.py` checks that every
route of the blueprint is described and that the examples are valid against the rules.
The bank notifications we send are described under `webhooks`.
"""
from __future__ import annotations

from copy import deepcopy
from functools import lru_cache

SIGNING = """\
Every request to `/api/v1/coupons/...` is signed the LKLAPI way (as Lakala's open platform), with
the key pair whose certificate you gave us:

    Authorization: LKLAPI-SHA256withRSA appid="<your app id>",serial_no="<your certificate serial, hex>",timestamp="<Unix seconds>",nonce_str="<12-32 letters and digits>",signature="<Base64>"

The signature is SHA256withRSA (PKCS#1 v1.5) over five lines, each ending in `\\n`:
`appid`, `serial_no`, `timestamp`, `nonce_str`, and the exact body bytes (an empty line for a GET).
The timestamp must be within 300 seconds of our clock and every nonce may be used once; the
signature covers the body, not the URL, so always call us over HTTPS.

Our answers carry `Lklapi-Appid`, `Lklapi-Serial`, `Lklapi-Timestamp`, `Lklapi-Nonce` and
`Lklapi-Signature`: SHA256withRSA over `appid\\nserial\\ntimestamp\\nnonce\\nbody\\n`, with the key
whose certificate we gave you for this client (its serial is `Lklapi-Serial`).

Every POST needs an `Idempotency-Key` header (at most 128 characters): the same key with the same
body returns the stored answer (header `Idempotent-Replayed: true`), with another body 422, while
the first is still running 409. `callTradeNo` is your own serial: the same one again is the same
issue (200 with its state); with a different body it is refused (422 `CALL_TRADE_NO_REUSED`).

Requests are limited per client (the number per minute agreed with you); above it we answer 429
with `Retry-After`.

Notifications we send you (`postNotify` when an issue is settled, `writeOffNotify` when a coupon
is used or expires) are POSTed as JSON signed with our key in the callback form:
`Authorization: LKLAPI-SHA256withRSA timestamp="…",nonce_str="…",signature="…"` over
`timestamp\\nnonce\\nbody\\n`. Answer HTTP 200 with `{"code":"SUCCESS"}`; any other answer is
retried with growing pauses (30 s, 1 min, 2 min, … about an hour in all).
"""

ERROR_CODES = {
    400: "INVALID_JSON, INVALID_FIELD (the message names the field), IDEMPOTENCY_KEY_REQUIRED",
    401: "SIGNATURE_INVALID, UNKNOWN_CLIENT, TIMESTAMP_STALE, NONCE_REPLAYED",
    404: "ACTIVITY_NOT_FOUND, BANK_NOT_FOUND, ISSUE_NOT_FOUND",
    409: "STOCK_EXHAUSTED, MEMBER_LIMIT_REACHED, ACTIVITY_DISABLED, ACTIVITY_NOT_RUNNING, ACTIVITY_AMBIGUOUS, "
         "TUNNEL_NOT_CONFIGURED, ACTIVITY_NOT_CONFIGURED, IDEMPOTENCY_KEY_IN_FLIGHT",
    422: "CALL_TRADE_NO_REUSED, IDEMPOTENCY_KEY_REUSED, URL_NOT_ALLOWED, TUNNEL_NOT_SUPPORTED",
    429: "RATE_LIMITED",
}

_STATUS = {"type": "string", "enum": ["queued", "processing", "succeeded", "failed"],
           "description": "queued: accepted, not yet sent; processing: 云数汇 answered PROCESS; "
                          "succeeded / failed: settled"}
_TIME = {"type": ["string", "null"], "description": "Beijing time, YYYY-MM-DD HH:mm:ss", "example": "2026-11-23 10:15:00"}
_FEN = {"type": ["integer", "null"], "description": "fen (1 yuan = 100)"}

SCHEMAS = {
    "IssueRequest": {
        "type": "object",
        "required": ["openId", "callTradeNo", "writeOffNotify", "postNotify"],
        "description": "Give activityCode or batchCode (or both).",
        "properties": {
            "bankId": {"type": "string", "description": "your bank's 8-digit code; optional, checked when given",
                       "example": "10000001"},
            "openId": {"type": "string", "maxLength": 128, "pattern": "^[A-Za-z0-9_-]{1,128}$",
                       "description": "the customer's openid (from the OpenID hand-off)",
                       "example": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"},
            "activityCode": {"type": "string", "description": "the coupon activity's code",
                             "example": "WX5000000074_1642492800"},
            "batchCode": {"type": "string", "description": "the activity's 9-digit batch number",
                          "example": "202611001"},
            "callTradeNo": {"type": "string", "maxLength": 64, "pattern": "^[A-Za-z0-9_-]{1,64}$",
                            "description": "your serial for this issue; de-duplicates", "example": "BANK20261123000001"},
            "memberId": {"type": "string", "maxLength": 64, "description": "your id of the customer (optional)"},
            "writeOffNotify": {"type": "string", "format": "uri", "maxLength": 500,
                               "description": "where we tell you the coupon was used or expired; its host must "
                                              "be on your client's allowed hosts",
                               "example": "https://api.bank.example/coupons/redeemed"},
            "postNotify": {"type": "string", "format": "uri", "maxLength": 500,
                           "description": "where we tell you how the issue ended; allowed hosts as above",
                           "example": "https://api.bank.example/coupons/issued"},
        },
    },
    "IssueAccepted": {
        "type": "object",
        "properties": {"orderNo": {"type": "string", "description": "our order number (sent upstream)",
                                   "example": "CP202611230123456789012345"},
                       "callTradeNo": {"type": "string"}, "status": _STATUS},
    },
    "Redemption": {
        "type": ["object", "null"],
        "properties": {"tradeStatus": {"type": "string", "enum": ["USED", "EXPIRED"]}, "usedAt": _TIME,
                       "promoAmount": _FEN, "totalAmount": _FEN, "orgAmount": _FEN,
                       "tradeNo": {"type": ["string", "null"]}, "merchantNo": {"type": ["string", "null"]},
                       "merchantName": {"type": ["string", "null"]}},
    },
    "IssueState": {
        "type": "object",
        "properties": {
            "callTradeNo": {"type": "string"}, "orderNo": {"type": "string"}, "memberId": {"type": ["string", "null"]},
            "activityCode": {"type": "string"}, "batchCode": {"type": "string"}, "status": _STATUS,
            "tradeStatus": {"type": ["string", "null"], "enum": ["PROCESS", "SUCCESS", "FAIL", None]},
            "resCode": {"type": ["string", "null"]}, "failMsg": {"type": ["string", "null"]},
            "thirdCouponId": {"type": ["string", "null"], "description": "the coupon's id at the channel"},
            "tradeNo": {"type": ["string", "null"]}, "issuedAt": _TIME, "createdAt": _TIME,
            "openIdMasked": {"type": "string", "example": "oUpF****eS6o"},
            "redemption": {"$ref": "#/components/schemas/Redemption"},
        },
    },
    "Error": {
        "type": "object", "required": ["code", "message"],
        "properties": {"code": {"type": "string", "example": "STOCK_EXHAUSTED"},
                       "message": {"type": "string", "example": "coupon activity WX5000000074_1642492800 has no "
                                                                "coupons left"}},
    },
    "IssuanceNotification": {
        "type": "object",
        "properties": {"notifyType": {"const": "ISSUANCE"}, "notifyId": {"type": "string"},
                       "tradeStatus": {"type": "string", "enum": ["SUCCESS", "FAIL"]},
                       "callTradeNo": {"type": "string"}, "orderNo": {"type": "string"},
                       "openId": {"type": "string", "description": "the customer's openid, in full"},
                       "memberId": {"type": ["string", "null"]}, "activityCode": {"type": "string"},
                       "batchCode": {"type": "string"}, "thirdCouponId": {"type": ["string", "null"]},
                       "tradeNo": {"type": ["string", "null"]}, "issuedAt": _TIME,
                       "failMsg": {"type": ["string", "null"]}},
    },
    "RedemptionNotification": {
        "type": "object",
        "properties": {"notifyType": {"const": "REDEMPTION"}, "notifyId": {"type": "string"},
                       "tradeStatus": {"type": "string", "enum": ["USED", "EXPIRED"]},
                       "callTradeNo": {"type": "string"}, "orderNo": {"type": "string"},
                       "openId": {"type": "string"}, "memberId": {"type": ["string", "null"]},
                       "activityCode": {"type": "string"}, "batchCode": {"type": "string"},
                       "thirdCouponId": {"type": ["string", "null"]}, "usedAt": _TIME, "promoAmount": _FEN,
                       "totalAmount": _FEN, "orgAmount": _FEN, "tradeNo": {"type": ["string", "null"]},
                       "merchantNo": {"type": ["string", "null"]}, "merchantName": {"type": ["string", "null"]}},
    },
    "DrawRequest": {"type": "object", "required": ["openId"],
                    "properties": {"openId": {"type": "string", "maxLength": 128,
                                              "description": "the customer's openid (from the OpenID hand-off)"}}},
    "Draw": {
        "type": "object",
        "properties": {
            "drawNo": {"type": "string"}, "themeNo": {"type": "string", "example": "5000000084"},
            "result": {"type": "string", "enum": ["WON", "THANKS"]},
            "prize": {"type": "object", "properties": {
                "id": {"type": "integer"}, "name": {"type": "string"},
                "type": {"type": "string", "enum": ["COUPON", "POINTS", "CASH", "GIFT", "THANKS"]},
                "segment": {"type": "integer", "description": "the wheel segment to stop on"},
                "colour": {"type": "string"}, "points": {"type": "integer"}, "amount": _FEN,
                "activityCode": {"type": "string"}, "batchCode": {"type": "string"}}},
            "fulfilment": {"type": "string", "description": "the prize's hand-over: PENDING, FULFILLED, FAILED..."},
            "drawsLeft": {"type": ["integer", "null"], "description": "null: no cap"},
            "drawsLeftToday": {"type": ["integer", "null"]}, "drawnAt": _TIME, "replayed": {"type": "boolean"},
        },
    },
    "Acknowledgement": {"type": "object", "required": ["code"],
                        "properties": {"code": {"const": "SUCCESS"}, "msg": {"type": "string"}}},
}


def _json(schema: str) -> dict:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}


def _errors(*statuses: int) -> dict:
    return {str(s): {"description": ERROR_CODES[s], "content": _json("Error")} for s in statuses}


_SIGNED = [{"lklapi": []}]
_IDEMPOTENCY = {"name": "Idempotency-Key", "in": "header", "required": True, "schema": {"type": "string", "maxLength": 128},
                "description": "a new value per distinct request; reuse it only to repeat the same request"}

_THEME_NO = {"name": "themeNo", "in": "path", "required": True, "schema": {"type": "string", "pattern": "^[0-9]{10}$"},
             "description": "the theme activity's 10-digit id"}

PATHS = {
    "/api/v1/coupons/issue": {"post": {
        "operationId": "issueCoupon", "summary": "Issue a coupon to a customer",
        "description": "Checks the activity (yours, enabled, running), the issue total and the per-customer limit, "
                       "stores the issue and queues it. The coupon is issued through 云数汇 (or WeChat Pay) in the "
                       "background; you are told the result at postNotify, or ask with GET .../issues/{callTradeNo}.",
        "security": _SIGNED, "parameters": [_IDEMPOTENCY],
        "requestBody": {"required": True, "content": _json("IssueRequest")},
        "responses": {"202": {"description": "accepted and queued", "content": _json("IssueAccepted")},
                      "200": {"description": "this callTradeNo was accepted before: its current state",
                              "content": _json("IssueAccepted")},
                      **_errors(400, 401, 404, 409, 422, 429)},
    }},
    "/api/v1/coupons/issues/{callTradeNo}": {"get": {
        "operationId": "getIssue", "summary": "The state of an issue",
        "security": _SIGNED,
        "parameters": [{"name": "callTradeNo", "in": "path", "required": True, "schema": {"type": "string"}}],
        "responses": {"200": {"description": "the issue", "content": _json("IssueState")}, **_errors(401, 404, 429)},
    }},
    "/api/v1/activities/{themeNo}/draws": {"post": {
        "operationId": "createDraw", "summary": "One draw of the wheel for a customer",
        "description": "Checks the theme activity (yours, running, wheel on) and the customer's total and daily "
                       "limits, picks a prize by weight among those with stock, takes one unit and hands the prize "
                       "over in the background. The Idempotency-Key is the draw's own key: repeating it returns the "
                       "same draw (200, `Idempotent-Replayed: true`); with another openId it is 422.",
        "security": _SIGNED, "parameters": [_IDEMPOTENCY, _THEME_NO],
        "requestBody": {"required": True, "content": _json("DrawRequest")},
        "responses": {"201": {"description": "the draw", "content": _json("Draw")},
                      "200": {"description": "this Idempotency-Key drew before: that draw", "content": _json("Draw")},
                      **_errors(400, 401, 404, 409, 422, 429)},
    }},
    "/api/v1/activities/{themeNo}/draws/{drawNo}": {"get": {
        "operationId": "getDraw", "summary": "A draw and the state of its prize's hand-over",
        "security": _SIGNED,
        "parameters": [_THEME_NO, {"name": "drawNo", "in": "path", "required": True, "schema": {"type": "string"}}],
        "responses": {"200": {"description": "the draw", "content": _json("Draw")}, **_errors(401, 404, 429)},
    }},
    "/api/v1/openid": {"get": {
        "operationId": "openidHandoff", "summary": "OpenID hand-off (browser)",
        "description": "Send the customer's browser here from your H5 page. We send it on to 云数汇, which sends it "
                       "back to us with the openid, and we redirect it to your `redirect` URL with `openid=` added. "
                       "The redirect's host must be on your allowed hosts. Not signed (a browser makes this call).",
        "parameters": [{"name": "bankId", "in": "query", "required": True, "schema": {"type": "string"},
                        "description": "your bank's 8-digit code"},
                       {"name": "redirect", "in": "query", "required": True,
                        "schema": {"type": "string", "format": "uri"}, "description": "your H5 page"}],
        "responses": {"302": {"description": "to 云数汇's OpenID page"},
                      "400": {"description": "bankId or redirect missing"}, "404": {"description": "unknown bank"},
                      "409": {"description": "the bank has no 云数汇 OpenID page configured"},
                      "422": {"description": "the redirect's host is not allowed"}},
    }},
    "/api/v1/openid/callback": {"get": {
        "operationId": "openidCallback", "summary": "Where 云数汇 returns the browser (not called by banks)",
        "parameters": [{"name": "state", "in": "query", "required": True, "schema": {"type": "string"}},
                       {"name": "openid", "in": "query", "required": True, "schema": {"type": "string"}},
                       {"name": "from", "in": "query", "required": True, "schema": {"const": "dshy"}}],
        "responses": {"302": {"description": "to the bank's redirect URL with openid="},
                      "400": {"description": "state expired or not ours, or no openid"}},
    }},
    "/api/v1/openapi.json": {"get": {"operationId": "openapi", "summary": "This description",
                                     "responses": {"200": {"description": "OpenAPI 3.1 JSON"}}}},
    "/api/v1/docs": {"get": {"operationId": "docs", "summary": "This description as a page",
                             "responses": {"200": {"description": "HTML"}}}},
}


def _notification(kind: str, schema: str, url_field: str) -> dict:
    return {"post": {
        "summary": f"{kind} notification (we POST it to your {url_field})",
        "description": "Signed with our key (callback form, see Signing). Answer 200 with {\"code\":\"SUCCESS\"}; "
                       "anything else is retried. Each event is sent once (retries aside); de-duplicate on "
                       "callTradeNo + tradeStatus.",
        "parameters": [{"name": "Authorization", "in": "header", "required": True, "schema": {"type": "string"}},
                       {"name": "Lklapi-Serial", "in": "header", "schema": {"type": "string"},
                        "description": "the serial of our certificate that signed it"}],
        "requestBody": {"required": True, "content": _json(schema)},
        "responses": {"200": {"description": "taken", "content": _json("Acknowledgement")}},
    }}


@lru_cache(maxsize=1)
def _spec() -> dict:
    return {
        "openapi": "3.1.0",
        "info": {"title": "Marketing Hub bank API", "version": "1.0.0",
                 "description": "Issue WeChat, Alipay and UnionPay coupons to your customers through 云数汇, "
                                "follow each issue, and be told when a coupon is used.\n\n## Signing\n\n" + SIGNING},
        "servers": [{"url": "/"}],
        "paths": PATHS,
        "webhooks": {"issuanceNotification": _notification("Issuance", "IssuanceNotification", "postNotify"),
                     "redemptionNotification": _notification("Redemption", "RedemptionNotification",
                                                             "writeOffNotify")},
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"lklapi": {
                "type": "apiKey", "in": "header", "name": "Authorization",
                "description": "LKLAPI-SHA256withRSA request signature (see Signing in the description)."}},
        },
    }


def spec() -> dict:
    """The description (a copy: callers may not change the cached one)."""
    return deepcopy(_spec())


def resolve(schema: dict | None) -> dict:
    """A schema with its `$ref` (to components.schemas) followed, for the docs page."""
    if not schema:
        return {}
    ref = schema.get("$ref")
    if ref:
        return SCHEMAS[ref.rsplit("/", 1)[-1]]
    return schema
