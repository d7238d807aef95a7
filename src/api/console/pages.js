// The console's pages. Each one renders into <main>, reads only the public API, and returns a
// function that stops its live updates when another page is opened. DOM is built with h(),
// never from HTML strings, so API data cannot inject markup.
import { api, stream } from "./api.js";

/** An element: h("td", { class: "num" }, child, …); null/false children are skipped. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el[k] = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

export function mount(...nodes) {
  document.getElementById("main").replaceChildren(...nodes);
}

const badge = (s) => h("span", { class: `badge ${s}` }, s);
const when = (t) => (t ? new Date(t).toLocaleString() : "—");
const short = (id) => String(id).slice(0, 8);
const errorText = (err) => h("p", { class: "error" }, err.message || String(err));

/** Calls `tick` now and every `ms` until the returned stop function is called. */
function every(ms, tick) {
  let stopped = false;
  let timer = null;
  const run = async () => {
    try { await tick(); } catch (err) { console.warn(err); }
    if (!stopped) timer = setTimeout(run, ms);
  };
  run();
  return () => { stopped = true; clearTimeout(timer); };
}

/** Every page of a cursor-paginated list. */
async function all(path, max = 1000) {
  const items = [];
  let cursor = null;
  do {
    const sep = path.includes("?") ? "&" : "?";
    const page = await api(`${path}${sep}limit=100${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`);
    items.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor && items.length < max);
  return items;
}

function sparkline(values, { width = 120, height = 24 } = {}) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("width", width);
  svg.setAttribute("height", height);
  const max = Math.max(1, ...values);
  const step = values.length > 1 ? width / (values.length - 1) : width;
  const points = values.map((v, i) => `${(i * step).toFixed(1)},${(height - 2 - (v / max) * (height - 4)).toFixed(1)}`);
  const line = document.createElementNS(ns, "polyline");
  line.setAttribute("points", points.join(" "));
  line.setAttribute("fill", "none");
  line.setAttribute("stroke", "#2f6fed");
  line.setAttribute("stroke-width", "1.5");
  svg.append(line);
  return svg;
}

// ---------------------------------------------------------------------------------------------
// Queues (platform admins): counts per queue, live from /v1/admin/stats/stream.

const rateHistory = new Map(); // queue -> [{ at, done }], kept across visits for the sparklines
const HISTORY = 60;

export function queues() {
  const table = h("tbody");
  const status = h("span", { class: "muted", id: "live" }, "connecting…");
  const probeCount = h("input", { type: "number", value: "200", min: "1", max: "100000", style: "width:90px" });
  const probe = h("button", { id: "enqueue-probes" }, "Enqueue probes");
  probe.onclick = async () => {
    probe.disabled = true;
    try { await api("/v1/admin/probes", { method: "POST", body: { count: Number(probeCount.value), delay_ms: 100 } }); }
    catch (err) { alert(err.message); }
    probe.disabled = false;
  };
  mount(
    h("h1", {}, "Queues"),
    h("div", { class: "toolbar" }, status, h("span", { style: "flex:1" }), probeCount, probe),
    h("table", { id: "queues" },
      h("thead", {}, h("tr", {},
        h("th", {}, "queue"), ...["pending", "running", "scheduled", "dead", "done (1 h)", "oldest ready"]
          .map((c) => h("th", { class: "num" }, c)),
        h("th", {}, "throughput (jobs/s)"))),
      table));
  return stream("/v1/admin/stats/stream?interval_ms=1000", (type, sample) => {
    if (type !== "stats") { status.textContent = `sample failed: ${sample.detail || ""}`; return; }
    status.textContent = `live · ${sample.queues.backend} · ${new Date(sample.at).toLocaleTimeString()}`;
    table.replaceChildren(...sample.queues.queues.map((q) => {
      const points = rateHistory.get(q.queue) || [];
      points.push({ at: Date.parse(sample.at), done: q.done });
      if (points.length > HISTORY + 1) points.shift();
      rateHistory.set(q.queue, points);
      const rates = points.slice(1).map((p, i) => Math.max(0, p.done - points[i].done) / Math.max(0.001, (p.at - points[i].at) / 1000));
      const cell = (n, name) => h("td", { class: "num", "data-col": name }, n);
      return h("tr", { class: "clickable", "data-queue": q.queue, onclick: () => { location.hash = `#/jobs?queue=${q.queue}&state=${q.dead ? "dead" : "pending"}`; } },
        h("td", {}, q.queue),
        cell(q.pending, "pending"), cell(q.running, "running"), cell(q.scheduled, "scheduled"),
        cell(q.dead, "dead"), cell(q.done_last_hour, "done_last_hour"),
        cell(q.oldest_pending_age_seconds == null ? "—" : `${q.oldest_pending_age_seconds.toFixed(1)} s`, "oldest"),
        h("td", {}, sparkline(rates.length ? rates : [0]), " ", rates.length ? rates[rates.length - 1].toFixed(1) : "0"));
    }));
  }, (err) => { status.textContent = `disconnected: ${err.message}`; });
}

// ---------------------------------------------------------------------------------------------
// Jobs (platform admins): filter by queue and state, retry / discard dead ones, bulk retry.

const STATES = ["pending", "scheduled", "running", "done", "dead"];

export function jobs(params) {
  const queue = params.queue || "probe";
  const state = params.state || "dead";
  const body = h("tbody");
  const note = h("span", { class: "muted" });
  const more = h("button", { disabled: true }, "More");
  const queueSelect = h("select", { id: "queue" });
  const stateSelect = h("select", { id: "state" }, ...STATES.map((s) => h("option", { value: s, selected: s === state }, s)));
  const go = () => { location.hash = `#/jobs?queue=${queueSelect.value}&state=${stateSelect.value}`; };
  queueSelect.onchange = go;
  stateSelect.onchange = go;
  const bulk = h("button", { class: "primary", id: "retry-all", disabled: state !== "dead" || queue === "webhooks" }, "Retry all dead");
  bulk.onclick = async () => {
    bulk.disabled = true;
    try {
      const res = await api("/v1/admin/jobs/retry", { method: "POST", body: { queue } });
      note.textContent = `${res.retried} job(s) queued again`;
      load(true);
    } catch (err) { note.textContent = err.message; }
  };
  mount(
    h("h1", {}, "Jobs"),
    h("div", { class: "toolbar" }, "queue", queueSelect, "state", stateSelect, bulk, note),
    h("table", { id: "jobs" },
      h("thead", {}, h("tr", {}, ...["job", "state", "attempt", "enqueued", "run at", "last error", ""].map((c) => h("th", {}, c)))),
      body),
    h("div", { class: "toolbar", style: "margin-top:.6rem" }, more));

  api("/v1/admin/queues").then((s) => {
    queueSelect.replaceChildren(...s.queues.map((q) => h("option", { value: q.queue, selected: q.queue === queue }, q.queue)));
  }).catch((err) => note.textContent = err.message);

  let cursor = null;
  async function load(reset) {
    if (reset) { cursor = null; body.replaceChildren(); }
    try {
      const page = await api(`/v1/admin/jobs?queue=${encodeURIComponent(queue)}&state=${state}&limit=50${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`);
      cursor = page.next_cursor;
      more.disabled = !cursor;
      if (reset && !page.items.length) body.append(h("tr", {}, h("td", { colspan: 7, class: "muted" }, `no ${state} jobs in ${queue}`)));
      body.append(...page.items.map((job) => jobRow(job, () => load(true))));
    } catch (err) { note.textContent = err.message; }
  }
  more.onclick = () => load(false);
  load(true);
  // Live states change under the operator's eyes; dead lists are refreshed after actions.
  if (state !== "dead") return every(2000, () => load(true));
  return null;
}

function jobRow(job, reload) {
  const actions = [];
  if (job.state === "dead" && job.queue !== "webhooks") {
    const retry = h("button", { class: "retry" }, "Retry");
    retry.onclick = async (e) => { e.stopPropagation(); retry.disabled = true; await act(() => api(`/v1/admin/jobs/${job.id}/retry`, { method: "POST" })); reload(); };
    const discard = h("button", { class: "danger discard" }, "Discard");
    discard.onclick = async (e) => { e.stopPropagation(); if (confirm(`Discard job ${short(job.id)}?`)) { await act(() => api(`/v1/admin/jobs/${job.id}`, { method: "DELETE" })); reload(); } };
    actions.push(retry, " ", discard);
  }
  return h("tr", { class: "clickable", "data-job": job.id, onclick: () => { if (job.queue !== "webhooks") location.hash = `#/jobs/${job.id}`; } },
    h("td", {}, h("code", {}, short(job.id))), h("td", {}, badge(job.state)), h("td", { class: "num" }, job.attempt),
    h("td", {}, when(job.enqueued_at)), h("td", {}, when(job.run_at)),
    h("td", { class: "error" }, job.last_error || ""), h("td", {}, ...actions));
}

async function act(call) {
  try { return await call(); } catch (err) { alert(err.message); return null; }
}

export function job(id) {
  const box = h("div");
  mount(h("p", {}, h("a", { href: "#/jobs" }, "← jobs")), box);
  return every(2000, async () => {
    let job;
    try { job = await api(`/v1/admin/jobs/${id}`); } catch (err) { box.replaceChildren(errorText(err)); return; }
    const actions = [];
    if (job.state === "dead") {
      const retry = h("button", { class: "primary", id: "retry" }, "Retry");
      retry.onclick = async () => { retry.disabled = true; await act(() => api(`/v1/admin/jobs/${id}/retry`, { method: "POST" })); };
      actions.push(retry);
    }
    box.replaceChildren(
      h("h1", {}, `Job ${short(job.id)} `, badge(job.state)),
      h("div", { class: "card" },
        h("table", {}, h("tbody", {},
          ...[["id", job.id], ["queue", job.queue], ["state", job.state], ["attempt", job.attempt],
            ["enqueued", when(job.enqueued_at)], ["run at", when(job.run_at)]]
            .map(([k, v]) => h("tr", {}, h("th", {}, k), h("td", { "data-field": k }, v))))),
        job.last_error ? h("p", { class: "error" }, `last error: ${job.last_error}`) : null,
        h("div", { class: "toolbar" }, ...actions)),
      h("h2", {}, "Arguments (secrets redacted)"),
      h("pre", { id: "args" }, JSON.stringify(job.args, null, 2)));
  });
}

// ---------------------------------------------------------------------------------------------
// Outbox & webhooks (platform admins): backlog and lag live; failing deliveries, redeliver.

export function outbox() {
  const backlog = h("b", { id: "backlog" }, "—");
  const lag = h("b", { id: "lag" }, "—");
  const webhooks = h("b", {}, "—");
  const failing = h("tbody");
  mount(
    h("h1", {}, "Outbox & webhooks"),
    h("div", { class: "stats" },
      h("div", { class: "stat" }, backlog, "unpublished events"),
      h("div", { class: "stat" }, lag, "oldest unpublished"),
      h("div", { class: "stat" }, webhooks, "deliveries pending / delivered (1 h)")),
    h("h2", {}, "Failed deliveries"),
    h("table", { id: "deliveries" },
      h("thead", {}, h("tr", {}, ...["delivery", "event", "webhook", "attempts", "response", "last error", ""].map((c) => h("th", {}, c)))),
      failing));
  const stopStream = stream("/v1/admin/stats/stream?interval_ms=2000", (type, s) => {
    if (type !== "stats") return;
    backlog.textContent = s.outbox.backlog;
    lag.textContent = `${s.outbox.oldest_unpublished_age_seconds.toFixed(1)} s`;
    const w = s.queues.queues.find((q) => q.queue === "webhooks");
    if (w) webhooks.textContent = `${w.pending + w.scheduled + w.running} / ${w.done_last_hour}`;
  });
  const stopPoll = every(5000, async () => {
    const page = await api("/v1/admin/jobs?queue=webhooks&state=dead&limit=50");
    failing.replaceChildren(...(page.items.length ? page.items.map((d) => {
      const redeliver = h("button", {}, "Redeliver");
      // Redelivery is an org action: it needs membership of the webhook's organization.
      redeliver.onclick = async () => {
        redeliver.disabled = true;
        const ok = await act(() => api(`/v1/orgs/${d.args.org_id}/webhooks/${d.args.webhook_id}/deliveries/${d.id}/redeliver`, { method: "POST" }));
        redeliver.textContent = ok ? "queued" : "Redeliver";
      };
      return h("tr", {}, h("td", {}, h("code", {}, short(d.id))), h("td", {}, d.args.event_type),
        h("td", {}, h("code", {}, short(d.args.webhook_id))), h("td", { class: "num" }, d.attempt),
        h("td", {}, d.args.response_code ?? "—"), h("td", { class: "error" }, d.last_error || ""), h("td", {}, redeliver));
    }) : [h("tr", {}, h("td", { colspan: 7, class: "muted" }, "no failed deliveries"))]));
  });
  return () => { stopStream(); stopPoll(); };
}

// ---------------------------------------------------------------------------------------------
// Org pages (members): workspaces, health, and one organization's projects and codegen jobs.

function workspaceRows(list) {
  return list.map((w) => {
    const p = w.progress;
    const pct = p && p.total ? Math.round((100 * p.done) / p.total) : w.status === "ready" ? 100 : 0;
    return h("tr", { "data-workspace": w.name },
      h("td", {}, w.name), h("td", {}, w.plan), h("td", { "data-col": "status" }, badge(w.status)),
      h("td", {}, h("div", { class: "progress", title: p ? `${p.step} ${p.done}/${p.total}` : "" }, h("div", { style: `width:${pct}%` })),
        h("span", { class: "muted" }, p ? `${p.step} (${p.done}/${p.total})` : "")),
      h("td", {}, ...(w.conditions || []).map((c) => h("div", {}, badge(c.status === "True" ? "ready" : "pending"), ` ${c.type}`, c.reason ? h("span", { class: "muted" }, ` · ${c.reason}`) : null))),
      h("td", { class: "error" }, w.error || ""));
  });
}

const workspaceHead = () => h("thead", {}, h("tr", {}, ...["name", "plan", "status", "progress", "conditions", "error"].map((c) => h("th", {}, c))));

export function workspaces(me) {
  const box = h("div");
  mount(h("h1", {}, "Workspaces"), box);
  if (!me.orgs.length) { box.append(h("p", { class: "muted" }, "You are not a member of any organization yet.")); return null; }
  return every(1500, async () => {
    const sections = await Promise.all(me.orgs.map(async (org) => {
      const list = await all(`/v1/orgs/${org.id}/workspaces`);
      return [h("h2", {}, h("a", { href: `#/org/${org.id}` }, org.name), h("span", { class: "muted" }, ` · ${org.role}`)),
        h("table", { class: "workspaces" }, workspaceHead(),
          h("tbody", {}, list.length ? workspaceRows(list) : h("tr", {}, h("td", { colspan: 6, class: "muted" }, "no workspaces"))))];
    }));
    box.replaceChildren(...sections.flat(),
      h("p", { class: "muted" }, "Drift is not reported by the API yet; conditions show what the provisioner last observed."));
  });
}

function uptimeBars(uptime) {
  if (!uptime) return h("span", { class: "muted" }, "—");
  return h("div", { class: "bars" }, ...["24h", "7d", "30d"].map((k) => {
    const v = uptime[k];
    const color = v == null ? "#dde1e8" : v >= 0.999 ? "#1f9d55" : v >= 0.99 ? "#c77d00" : "#d33a2c";
    return h("div", { class: "bar" }, h("div", { style: `background:${color}` }), `${k} ${v == null ? "—" : `${(v * 100).toFixed(2)}%`}`);
  }));
}

export function health(me) {
  const box = h("div");
  mount(h("h1", {}, "Health"), box);
  if (!me.orgs.length) { box.append(h("p", { class: "muted" }, "You are not a member of any organization yet.")); return null; }
  return every(5000, async () => {
    const sections = await Promise.all(me.orgs.map(async (org) => {
      const status = await api(`/v1/orgs/${org.id}/status`);
      return [h("h2", {}, org.name),
        h("table", {}, h("thead", {}, h("tr", {}, ...["check", "status", "since", "uptime"].map((c) => h("th", {}, c)))),
          h("tbody", {}, status.checks.length ? status.checks.map((c) => h("tr", {},
            h("td", {}, c.name), h("td", {}, badge(c.status)), h("td", {}, when(c.status_since)), h("td", {}, uptimeBars(c.uptime))))
            : h("tr", {}, h("td", { colspan: 4, class: "muted" }, "no health checks")))),
        h("h2", {}, `Open incidents (${status.open_incidents.length})`),
        ...status.open_incidents.map((i) => h("div", { class: "card" }, badge(i.status), ` ${i.cause || ""} · opened ${when(i.opened_at)}`))];
    }));
    box.replaceChildren(...sections.flat());
  });
}

export function orgs(me) {
  mount(h("h1", {}, "Organizations"),
    h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "name"), h("th", {}, "slug"), h("th", {}, "your role"))),
      h("tbody", {}, ...me.orgs.map((o) => h("tr", { class: "clickable", onclick: () => { location.hash = `#/org/${o.id}`; } },
        h("td", {}, o.name), h("td", {}, o.slug), h("td", {}, o.role))))));
  return null;
}

export function org(id) {
  const box = h("div");
  mount(box);
  const artifacts = h("div");
  return every(3000, async () => {
    try {
      const [o, ws, projects, jobs] = await Promise.all([
        api(`/v1/orgs/${id}`), all(`/v1/orgs/${id}/workspaces`), all(`/v1/orgs/${id}/projects`), api(`/v1/orgs/${id}/codegen-jobs?limit=50`),
      ]);
      box.replaceChildren(
        h("h1", {}, o.name),
        h("h2", {}, "Workspaces"), h("table", {}, workspaceHead(), h("tbody", {}, workspaceRows(ws))),
        h("h2", {}, "Projects"),
        h("table", {}, h("thead", {}, h("tr", {}, ...["name", "status", "graph version", "workspace"].map((c) => h("th", {}, c)))),
          h("tbody", {}, ...projects.map((p) => h("tr", {}, h("td", {}, p.name), h("td", {}, badge(p.status)), h("td", { class: "num" }, p.graph_version),
            h("td", {}, ws.find((w) => w.id === p.workspace_id)?.name || short(p.workspace_id)))))),
        h("h2", {}, "Codegen jobs"),
        h("table", {}, h("thead", {}, h("tr", {}, ...["job", "project", "status", "engine", "created", ""].map((c) => h("th", {}, c)))),
          h("tbody", {}, ...jobs.items.map((j) => {
            const show = h("button", {}, "Artifacts");
            show.onclick = async () => {
              const list = await api(`/v1/orgs/${id}/codegen-jobs/${j.id}/artifacts`);
              artifacts.replaceChildren(h("h2", {}, `Artifacts of ${short(j.id)}`),
                h("table", {}, h("tbody", {}, ...list.items.map((a) => h("tr", {}, h("td", {}, a.path), h("td", {}, a.media_type), h("td", { class: "num" }, a.size))))));
            };
            return h("tr", {}, h("td", {}, h("code", {}, short(j.id))), h("td", {}, projects.find((p) => p.id === j.project_id)?.name || short(j.project_id)),
              h("td", {}, badge(j.status)), h("td", {}, j.engine), h("td", {}, when(j.created_at)), h("td", {}, j.status === "succeeded" ? show : null));
          }))),
        artifacts);
    } catch (err) { box.replaceChildren(errorText(err)); }
  });
}
