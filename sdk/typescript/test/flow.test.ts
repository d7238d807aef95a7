/**
 * End to end through the typed client: org → workspace → project → graph, then the org's events
 * read page by page with `limit` and `after`.
 */
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { test } from "node:test";
import {
  createGantryClient,
  GantryError,
  unwrap,
  type EventEnvelope,
  type GantryClient,
  type GraphEnvelope,
  type Schemas,
} from "../src/index.js";
import { testGantry, uniqueName } from "./gantry.js";

const gantry = testGantry();

/** Reads every event of the org from the start, `limit` at a time, following `next_cursor`. */
async function readAllEvents(
  client: GantryClient,
  orgId: string,
  limit: number,
): Promise<{ events: EventEnvelope[]; pages: number }> {
  const events: EventEnvelope[] = [];
  let after: string | undefined;
  let pages = 0;
  for (;;) {
    const page: Schemas["EventPage"] = await unwrap(
      client.GET("/v1/orgs/{org_id}/events", {
        params: { path: { org_id: orgId }, query: after === undefined ? { limit } : { limit, after } },
      }),
    );
    pages++;
    assert.ok(page.items.length <= limit, `a page holds at most limit=${limit} events`);
    if (page.items.length === 0) {
      // No new events: the cursor we sent comes back so a poller can keep using it.
      if (after !== undefined) {
        assert.equal(page.next_cursor, after);
      }
      return { events, pages };
    }
    events.push(...page.items);
    assert.ok(page.next_cursor, "a non-empty page carries next_cursor");
    assert.notEqual(page.next_cursor, after, "the cursor moves forward");
    after = page.next_cursor;
    assert.ok(pages < 1_000, "pagination terminates");
  }
}

test("org → workspace → project → graph, then the org's events page by page", async () => {
  const client = createGantryClient({ baseUrl: gantry.baseUrl, token: gantry.token });

  const slug = uniqueName("acme");
  const created = await client.POST("/v1/orgs", { body: { name: "Acme", slug } });
  assert.equal(created.response.status, 201);
  assert.ok(created.data, `create org failed: ${JSON.stringify(created.error)}`);
  const org: Schemas["OrgView"] = created.data;
  assert.equal(org.slug, slug);
  assert.ok(created.response.headers.get("location")?.endsWith(`/v1/orgs/${org.id}`));

  const ws = await client.POST("/v1/orgs/{org_id}/workspaces", {
    params: { path: { org_id: org.id } },
    body: { name: "dev", plan: "shared" },
  });
  assert.equal(ws.response.status, 202, "workspaces answer 202: the request is recorded, not done");
  assert.ok(ws.data);
  const workspace: Schemas["WorkspaceView"] = ws.data;
  assert.equal(workspace.status, "pending");
  assert.equal(workspace.org_id, org.id);

  const project = await unwrap(
    client.POST("/v1/orgs/{org_id}/projects", {
      params: { path: { org_id: org.id } },
      body: { name: "shop", workspace_id: workspace.id },
    }),
  );
  assert.equal(project.workspace_id, workspace.id);
  assert.equal(project.graph_version, 0);

  const graphPath = { org_id: org.id, project_id: project.id };
  const current = await client.GET("/v1/orgs/{org_id}/projects/{project_id}/graph", {
    params: { path: graphPath },
  });
  assert.ok(current.data);
  assert.equal(current.data.version, 0);
  assert.deepEqual(current.data.graph, { nodes: [], edges: [] });
  const etag = current.response.headers.get("etag");
  assert.equal(etag, '"0"');

  const graph: GraphEnvelope = {
    nodes: [
      { id: "web", kind: "service", spec: { image: "nginx:1.27", ports: [{ port: 80 }] } },
      { id: "db", kind: "database", spec: { engine: "redis", version: "7.4", storage: "1Gi" } },
    ],
    edges: [{ from: "web", to: "db", kind: "connects" }],
  };
  const put = await client.PUT("/v1/orgs/{org_id}/projects/{project_id}/graph", {
    params: { path: graphPath, header: { "If-Match": etag } },
    body: { graph },
  });
  assert.equal(put.response.status, 200, JSON.stringify(put.error));
  assert.ok(put.data);
  assert.equal(put.data.version, 1);
  assert.deepEqual(put.data.graph, graph);
  assert.equal(put.response.headers.get("etag"), '"1"');

  // Replaying the same If-Match is stale now: 412 problem+json, surfaced as a GantryError.
  await assert.rejects(
    unwrap(
      client.PUT("/v1/orgs/{org_id}/projects/{project_id}/graph", {
        params: { path: graphPath, header: { "If-Match": etag } },
        body: { graph },
      }),
    ),
    (err: unknown) => {
      assert.ok(err instanceof GantryError);
      assert.equal(err.status, 412);
      assert.equal(err.type, "https://gantry.dev/problems/precondition-failed");
      return true;
    },
  );

  const versions = await unwrap(
    client.GET("/v1/orgs/{org_id}/projects/{project_id}/graph/versions", { params: { path: graphPath } }),
  );
  assert.deepEqual(
    versions.items.map((v) => v.version).sort((a, b) => a - b),
    [0, 1],
  );

  // Events: read from the start two at a time. The outbox is read directly in embedded mode; retry
  // briefly in case the last commit is not visible yet.
  const wanted = ["org.created", "workspace.requested", "project.created", "project.graph_updated"];
  let seen: { events: EventEnvelope[]; pages: number } = { events: [], pages: 0 };
  for (let i = 0; i < 50; i++) {
    seen = await readAllEvents(client, org.id, 2);
    const types = new Set(seen.events.map((e) => e.type));
    if (wanted.every((t) => types.has(t))) {
      break;
    }
    await sleep(200);
  }
  const types = seen.events.map((e) => e.type);
  for (const type of wanted) {
    assert.ok(types.includes(type), `events include ${type}: got ${types.join(", ")}`);
  }
  assert.ok(seen.pages >= 3, `followed next_cursor over several pages (got ${seen.pages})`);
  assert.equal(new Set(seen.events.map((e) => e.id)).size, seen.events.length, "no event twice");
  for (const event of seen.events) {
    assert.equal(event.org_id, org.id, "only this org's events");
  }
  // Oldest first: the org exists before anything in it.
  assert.equal(types[0], "org.created");
  assert.ok(types.indexOf("project.created") < types.indexOf("project.graph_updated"));

  const graphUpdated = seen.events.find((e) => e.type === "project.graph_updated");
  assert.ok(graphUpdated);
  assert.deepEqual(graphUpdated.aggregate, { type: "project", id: project.id });

  // `type` filters by prefix.
  const projectEvents = await unwrap(
    client.GET("/v1/orgs/{org_id}/events", { params: { path: { org_id: org.id }, query: { type: "project.*" } } }),
  );
  assert.ok(projectEvents.items.length >= 2);
  assert.ok(projectEvents.items.every((e) => e.type.startsWith("project.")));
});

test("a 422 carries typed field errors", async () => {
  const client = createGantryClient({ baseUrl: gantry.baseUrl, token: gantry.token });
  const { data, error, response } = await client.POST("/v1/orgs", {
    body: { name: "Bad", slug: "Not A DNS Label" },
  });
  assert.equal(data, undefined);
  assert.equal(response.status, 422);
  assert.match(response.headers.get("content-type") ?? "", /^application\/problem\+json/);
  assert.ok(error);
  assert.equal(error.status, 422);
  assert.equal(error.type, "https://gantry.dev/problems/validation");
  assert.ok(error.errors?.some((e) => e.pointer === "/slug"), JSON.stringify(error.errors));
});
