/**
 * Compile-time checks only (never run): `npm run typecheck` fails if the generated types stop
 * enforcing what the API requires. Each `@ts-expect-error` must stay an error.
 */
import { createGantryClient, unwrap, type Problem, type Schemas } from "../src/index.js";

export async function typeChecks(): Promise<void> {
  const client = createGantryClient({ baseUrl: "http://127.0.0.1:8000", token: "t" });
  const path = { org_id: "o", project_id: "p" };

  // @ts-expect-error PUT …/graph requires the If-Match header
  await client.PUT("/v1/orgs/{org_id}/projects/{project_id}/graph", { params: { path }, body: { graph: {} } });

  await client.POST("/v1/orgs/{org_id}/workspaces", {
    params: { path: { org_id: "o" } },
    // @ts-expect-error plan is `shared` or `dedicated`
    body: { name: "dev", plan: "huge" },
  });

  // @ts-expect-error the org_id path parameter is required
  await client.GET("/v1/orgs/{org_id}/events", { params: { query: { limit: 10 } } });

  // @ts-expect-error no such route
  await client.GET("/v1/nope");

  // @ts-expect-error a static token is a string, a provider returns one
  createGantryClient({ baseUrl: "http://x", token: 42 });

  const { error } = await client.GET("/v1/orgs/{org_id}", { params: { path: { org_id: "o" } } });
  const problem: Problem | undefined = error;
  const org: Schemas["OrgView"] = await unwrap(client.GET("/v1/orgs/{org_id}", { params: { path: { org_id: "o" } } }));
  void problem;
  void org;
}
