/** Authentication: static tokens, async token providers, and 401 problem+json errors. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { createGantryClient, GantryError, isProblem, unwrap, type Problem, type TokenProvider } from "../src/index.js";
import { testGantry } from "./gantry.js";

const gantry = testGantry();

function assertUnauthorized(status: number, response: Response, error: Problem | undefined): void {
  assert.equal(status, 401);
  assert.match(response.headers.get("content-type") ?? "", /^application\/problem\+json/);
  assert.match(response.headers.get("www-authenticate") ?? "", /^Bearer\b/);
  assert.ok(error, "the 401 carries a problem document");
  assert.ok(isProblem(error));
  assert.equal(error.status, 401);
  assert.equal(error.type, "https://gantry.dev/problems/unauthorized");
}

test("no token: health needs none, the API answers 401 problem+json", async () => {
  const client = createGantryClient({ baseUrl: gantry.baseUrl });

  const ready = await unwrap(client.GET("/health/ready"));
  assert.equal(ready.status, "ok");

  const { data, error, response } = await client.GET("/v1/me");
  assert.equal(data, undefined);
  // `error` is typed from the OpenAPI document: the Problem schema.
  const problem: Problem | undefined = error;
  assertUnauthorized(response.status, response, problem);
});

test("an invalid token is a 401 problem+json, thrown as a GantryError by unwrap", async () => {
  for (const token of ["not-a-jwt", `${gantry.token.slice(0, -4)}AAAA`]) {
    const client = createGantryClient({ baseUrl: gantry.baseUrl, token });
    await assert.rejects(unwrap(client.GET("/v1/me")), (err: unknown) => {
      assert.ok(err instanceof GantryError, String(err));
      assertUnauthorized(err.status, err.response, err.problem);
      assert.match(err.message, /^401 /);
      return true;
    });
  }
});

test("a static token authenticates", async () => {
  const client = createGantryClient({ baseUrl: `${gantry.baseUrl}/`, token: gantry.token });
  const me = await unwrap(client.GET("/v1/me"));
  assert.equal(me.sub, "alice");
  assert.equal(me.email, "alice@example.com");
});

test("an async token provider is asked on every request", async () => {
  const minted: string[] = [];
  const provider: TokenProvider = async () => {
    // A real provider would cache a Keycloak token and refresh it; here each call mints a new one.
    const token = await gantry.mintToken("bob");
    minted.push(token);
    return token;
  };
  const client = createGantryClient({ baseUrl: gantry.baseUrl, token: provider });

  const me = await unwrap(client.GET("/v1/me"));
  assert.equal(me.sub, "bob");
  assert.equal(me.is_platform_admin, false);
  const orgs = await unwrap(client.GET("/v1/orgs", { params: { query: { limit: 10 } } }));
  assert.ok(Array.isArray(orgs.items));
  assert.equal(minted.length, 2, "one provider call per request");

  // A per-call Authorization header wins over the provider (and the provider is not asked).
  const asAlice = await unwrap(client.GET("/v1/me", { headers: { Authorization: `Bearer ${gantry.token}` } }));
  assert.equal(asAlice.sub, "alice");
  assert.equal(minted.length, 2);
});

test("a failing token provider fails the call before anything is sent", async () => {
  const client = createGantryClient({
    baseUrl: gantry.baseUrl,
    token: async () => {
      throw new Error("token refresh failed");
    },
  });
  await assert.rejects(client.GET("/v1/me"), /token refresh failed/);

  const empty = createGantryClient({ baseUrl: gantry.baseUrl, token: async () => "  " });
  await assert.rejects(empty.GET("/v1/me"), /empty token/);
});

test("a service account's API key authenticates like a token, in its own organization", async () => {
  const owner = createGantryClient({ baseUrl: gantry.baseUrl, token: gantry.token });
  const slug = `sa-${Date.now()}`;
  const org = await unwrap(owner.POST("/v1/orgs", { body: { name: slug, slug } }));
  const account = await unwrap(owner.POST("/v1/orgs/{org_id}/service-accounts", {
    params: { path: { org_id: org.id } },
    body: { name: "ci", role: "member" },
  }));
  assert.match(account.key, /^gtk_/);

  const ci = createGantryClient({ baseUrl: gantry.baseUrl, token: account.key });
  const projects = await unwrap(ci.GET("/v1/orgs/{org_id}/projects", { params: { path: { org_id: org.id } } }));
  assert.deepEqual(projects.items, []);

  await unwrap(owner.DELETE("/v1/orgs/{org_id}/service-accounts/{account_id}", {
    params: { path: { org_id: org.id, account_id: account.id } },
  }));
  const { error, response } = await ci.GET("/v1/me");
  assertUnauthorized(response.status, response, error);
});
