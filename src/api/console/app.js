// Console entry: logs in, loads who the caller is, and routes `#/page` to a page of pages.js.
import { api, devLogin, logout, oidcCallback, oidcLogin, setConfig, token } from "./api.js";
import { h, mount } from "./pages.js";
import * as pages from "./pages.js";

const ADMIN_PAGES = [
  ["queues", "Queues"],
  ["jobs", "Jobs"],
  ["outbox", "Outbox & webhooks"],
];
const ORG_PAGES = [
  ["workspaces", "Workspaces"],
  ["health", "Health"],
  ["org", "Organizations"],
];

let me = null;
let stopPage = null;

async function start() {
  const config = await api("/v1/console/config");
  setConfig(config);
  try {
    if (config.auth === "keycloak") await oidcCallback(config);
  } catch (err) {
    return showLogin(config, err.message);
  }
  if (!token()) return showLogin(config);
  try {
    me = await api("/v1/me");
  } catch (err) {
    logout();
    return showLogin(config, err.message);
  }
  renderNav();
  window.addEventListener("hashchange", route);
  route();
}

function showLogin(config, error) {
  const button = h("button", { class: "primary", id: "login" }, "Log in");
  button.onclick = async () => {
    try {
      if (config.auth === "keycloak") return oidcLogin(config);
      await devLogin();
      location.reload();
    } catch (err) {
      mount(loginCard(button, config, err.message));
    }
  };
  mount(loginCard(button, config, error));
}

function loginCard(button, config, error) {
  const how = config.auth === "keycloak"
    ? `Signs in with ${config.issuer} (client ${config.client_id}).`
    : config.dev_login
      ? "Embedded mode: signs in as the local user with a dev token."
      : "Embedded mode without dev log-in (GANTRY_ENV=production): configure Keycloak.";
  return h("div", { class: "card login" },
    h("h1", {}, "Gantry console"),
    h("p", { class: "muted" }, how),
    button,
    error ? h("p", { class: "error" }, error) : null);
}

function renderNav() {
  const links = [...(me.is_platform_admin ? ADMIN_PAGES : []), ...ORG_PAGES];
  const nav = document.getElementById("nav");
  nav.replaceChildren(...links.map(([id, label]) => h("a", { href: `#/${id}`, "data-page": id }, label)));
  const out = h("a", { href: "#", id: "logout" }, "log out");
  out.onclick = (e) => { e.preventDefault(); logout(); location.hash = ""; location.reload(); };
  document.getElementById("who").replaceChildren(
    `${me.preferred_username || me.sub}${me.is_platform_admin ? " · gantry-admin" : ""} · `, out);
}

function route() {
  stopPage?.();
  stopPage = null;
  const [path, query = ""] = location.hash.replace(/^#\/?/, "").split("?");
  const [page, ...rest] = path.split("/");
  const params = Object.fromEntries(new URLSearchParams(query));
  const fallback = me.is_platform_admin ? "queues" : "workspaces";
  const name = page || fallback;
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", a.dataset.page === name);
  const admin = ADMIN_PAGES.some(([id]) => id === name);
  if (admin && !me.is_platform_admin) {
    return mount(h("p", { class: "error" }, "This page needs the gantry-admin role."));
  }
  const render = {
    queues: pages.queues,
    jobs: rest[0] ? () => pages.job(rest[0]) : () => pages.jobs(params),
    outbox: pages.outbox,
    workspaces: () => pages.workspaces(me),
    health: () => pages.health(me),
    org: rest[0] ? () => pages.org(rest[0]) : () => pages.orgs(me),
  }[name];
  if (!render) return mount(h("p", {}, "No such page."));
  stopPage = render() || null;
}

start().catch((err) => mount(h("p", { class: "error" }, `Console failed to start: ${err.message}`)));
