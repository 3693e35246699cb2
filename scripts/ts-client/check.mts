// Drives a running `keyward serve` with the client generated from openapi/keyward.openapi.json:
// openapi-typescript's types for the spec, openapi-fetch to call it. Run by
// scripts/typescript-client-check.sh, which generates keyward-api.ts next to this file and
// type-checks both with tsc (strict) before node runs the result: a spec that no longer fits
// this code fails the check as surely as a server that no longer fits the spec.
//
//   KEYWARD_ROOT_KEY=kw_live_... node out/check.mjs BASE_URL
import createClient from "openapi-fetch";
import type { components, paths } from "./keyward-api.js";

type ErrorBody = components["schemas"]["ErrorBody"];

// The key comes in the environment, where other users' `ps` cannot read it.
const base = process.argv[2];
const rootKey = process.env.KEYWARD_ROOT_KEY;
if (!base || !rootKey) {
  throw new Error("usage: KEYWARD_ROOT_KEY=... node check.mjs BASE_URL");
}

function check(ok: unknown, what: string, seen?: unknown): asserts ok {
  if (!ok) {
    throw new Error(`${what}: ${JSON.stringify(seen)}`);
  }
}

/** A client that sends `key` as `Authorization: Bearer`. */
const clientFor = (key: string) =>
  createClient<paths>({ baseUrl: base, headers: { Authorization: `Bearer ${key}` } });

/** The error body of a refused call, checked against its status and request id. */
function refusal(
  result: { error?: ErrorBody; response: Response },
  status: number,
  code: components["schemas"]["ErrorCode"],
): ErrorBody {
  const { error, response } = result;
  check(response.status === status && error !== undefined, `expected ${status} ${code}`, error);
  check(error.error.code === code, `expected ${code}`, error);
  check(error.error.requestId === response.headers.get("x-request-id"), "request id", error);
  return error;
}

const root = clientFor(rootKey);

// Create: the value is in the response, this once.
const created = await root.POST("/v1/keys", { body: { name: "typescript", scopes: ["keys:read"] } });
check(created.response.status === 201 && created.data, "create", created.error);
const key = created.data;
check(key.secret.startsWith("kw_live_"), "a live key", key.key.maskedKey);
check(key.key.name === "typescript" && key.key.status === "active", "created key", key.key);

// List: the new key is there, masked.
const listed = await root.GET("/v1/keys", { params: { query: { limit: 100 } } });
check(listed.response.status === 200 && listed.data, "list", listed.error);
check(listed.data.data.some((k) => k.id === key.id), "listed", listed.data.data.length);
check(!JSON.stringify(listed.data).includes(key.secret), "lists are masked");

// Rotate: a new value; the old key stops at once (no grace).
const rotated = await root.POST("/v1/keys/{id}/rotate", { params: { path: { id: key.id } }, body: {} });
check(rotated.response.status === 201 && rotated.data, "rotate", rotated.error);
check(rotated.data.secret !== key.secret, "a new value");
check(rotated.data.key.rotatedFrom === key.id, "rotated from", rotated.data.key);

// Revoke, then see the revoked key refused with the typed error body.
const revoked = await root.POST("/v1/keys/{id}/revoke", { params: { path: { id: rotated.data.id } } });
check(revoked.response.status === 200 && revoked.data?.status === "revoked", "revoke", revoked.error);
refusal(await clientFor(rotated.data.secret).GET("/v1/status"), 401, "KEY_REVOKED");

// 404 and 403 parse as ErrorBody too.
const missing = "00000000-0000-7000-8000-000000000000";
refusal(await root.GET("/v1/keys/{id}", { params: { path: { id: missing } } }), 404, "NOT_FOUND");
const reader = await root.POST("/v1/keys", { body: { name: "reader", scopes: ["keys:read"] } });
check(reader.data, "create reader", reader.error);
const denied = refusal(
  await clientFor(reader.data.secret).POST("/v1/keys", { body: { name: "wider", scopes: ["keys:write"] } }),
  403,
  "INSUFFICIENT_SCOPE",
);
check(JSON.stringify(denied.error.details).includes("keys:write"), "details.missing", denied.error.details);

// The README's snippets, as written there.
{
  const API_KEY = rootKey;
  const client = createClient<paths>({ baseUrl: base, headers: { Authorization: `Bearer ${API_KEY}` } });
  const { data, error } = await client.POST("/v1/keys", { body: { name: "svc", scopes: ["keys:read"] } });
  if (error) throw new Error(`${error.error.code} (request ${error.error.requestId})`); // an ErrorBody
  console.log(`typescript-client-check: created ${data.key.maskedKey}`); // data.secret is shown once
}

// POST /v1/verify, as a service in another language checks its callers' keys: the service holds
// a key with `keys:verify`, and asks about the key each request presents.
const service = await root.POST("/v1/keys", { body: { name: "orders-service", scopes: ["keys:verify"] } });
const caller = await root.POST("/v1/keys", { body: { name: "customer", scopes: ["orders:read"] } });
check(service.data && caller.data, "create service and caller keys", service.error ?? caller.error);
{
  const SERVICE_KEY = service.data.secret;
  const presented = caller.data.secret;
  const keyward = createClient<paths>({ baseUrl: base, headers: { "X-API-Key": SERVICE_KEY } });

  const { data: verdict, error } = await keyward.POST("/v1/verify", {
    body: { key: presented, scopes: ["orders:read"] },
  });
  if (error) throw new Error(`keyward refused the service's own key: ${error.error.code}`);
  check(verdict.valid && verdict.keyId === caller.data.id, "verify: valid", verdict);
}
const keyward = createClient<paths>({ baseUrl: base, headers: { "X-API-Key": service.data.secret } });
const no = await keyward.POST("/v1/verify", { body: { key: caller.data.secret, scopes: ["orders:write"] } });
check(no.data?.valid === false && no.data.error?.code === "INSUFFICIENT_SCOPE", "verify: refused", no.data);
check(no.data.error.status === 403, "verify: the status to answer", no.data.error);

// Never run: what tsc must refuse, proving the types are the spec's and not `any`.
export function typeChecks() {
  // @ts-expect-error: no such path in the spec
  void root.GET("/v1/no-such-path");
  // @ts-expect-error: `name` is required
  void root.POST("/v1/keys", { body: { scopes: ["keys:read"] } });
  // @ts-expect-error: no such error code
  const code: components["schemas"]["ErrorCode"] = "NO_SUCH_CODE";
  // @ts-expect-error: `secret` is a string
  const secret: number = key.secret;
  return [code, secret];
}

console.log("typescript-client-check: create, list, rotate, revoke, 401/403/404 error bodies and verify all behaved");
