// The CMO web UI: plain JavaScript over the server's JSON API (/api/v1), no build step.
// Everything shown from the API is user data (states, errors, ids): it goes into the page as
// text (textContent, text nodes, attribute values), never as HTML.
"use strict";

(() => {
  const TERMINAL = new Set(["COMPLETED", "FAILED", "CANCELLED", "TERMINATED"]);
  const STATUSES = ["PENDING", "RUNNING", "WAITING", "COMPLETED", "FAILED", "CANCELLED", "TERMINATED"];
  const LIST_REFRESH_MS = 5000;
  const RUN_REFRESH_MS = 3000;
  const LARGE = 600; // characters of JSON above which a value is shown collapsed
  const END = "__end__";

  const state = {
    token: sessionStorage.getItem("cmo.token") || "",
    tenant: sessionStorage.getItem("cmo.tenant") || "default",
    project: sessionStorage.getItem("cmo.project") || "default",
    auth: false,
    subject: null,
    page: 0, // bumped on every navigation: a stale page's late answers and timers stop
    timer: null,
  };

  // --- DOM helpers: text only --------------------------------------------------------------------

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    setAttrs(el, attrs);
    add(el, children);
    return el;
  }

  function svg(tag, attrs, ...children) {
    const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
    setAttrs(el, attrs);
    add(el, children);
    return el;
  }

  function setAttrs(el, attrs) {
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") el.setAttribute("class", value);
      else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
      else el.setAttribute(key, value === true ? "" : String(value));
    }
  }

  function add(el, children) {
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      el.append(child instanceof Node ? child : String(child)); // a string becomes a text node
    }
  }

  function clear(el) {
    while (el.firstChild) el.removeChild(el.firstChild);
    return el;
  }

  function main() {
    return document.getElementById("main");
  }

  // One formatter for every time shown: building one per call (toLocaleString) costs ~0.1 ms each,
  // which a timeline of 1,000 steps would pay 1,000 times.
  const TIME_FORMAT = new Intl.DateTimeFormat(undefined, { dateStyle: "short", timeStyle: "medium" });

  function when(iso) {
    if (!iso) return "—";
    const d = new Date(iso);
    return Number.isNaN(d.getTime()) ? String(iso) : TIME_FORMAT.format(d);
  }

  function duration(ms) {
    if (!Number.isFinite(ms) || ms < 0) return "—";
    if (ms < 1000) return `${Math.round(ms)} ms`;
    if (ms < 60000) return `${(ms / 1000).toFixed(ms < 10000 ? 2 : 1)} s`;
    if (ms < 3600000) return `${Math.floor(ms / 60000)} min ${Math.round((ms % 60000) / 1000)} s`;
    return `${(ms / 3600000).toFixed(1)} h`;
  }

  function badge(status) {
    return h("span", { class: `badge s-${status}` }, status);
  }

  function runLink(runId) {
    return h("a", { href: `#/runs/${encodeURIComponent(runId)}` }, runId);
  }

  function pretty(value) {
    return JSON.stringify(value === undefined ? null : value, null, 2);
  }

  // A JSON value as text; collapsed behind a summary when large.
  function jsonBlock(value, label) {
    const text = pretty(value);
    const pre = h("pre", {}, text);
    if (text.length <= LARGE && text.split("\n").length <= 14) return pre;
    return h("details", {}, h("summary", {}, `${label} (${text.length.toLocaleString()} characters)`), pre);
  }

  function message(el, text, kind) {
    clear(el);
    el.className = kind === "ok" ? "okmsg" : kind === "error" ? "error" : "muted";
    el.textContent = text;
  }

  // --- the API ----------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, text, field) {
      super(text);
      this.status = status;
      this.field = field || "";
    }
  }

  function apiUrl(path, query) {
    const url = new URL(`/api/v1${path}`, window.location.origin);
    url.searchParams.set("tenant", state.tenant);
    url.searchParams.set("project", state.project);
    for (const [key, value] of Object.entries(query || {})) {
      if (value !== "" && value !== null && value !== undefined) url.searchParams.set(key, String(value));
    }
    return url;
  }

  async function request(path, { method = "GET", body, query } = {}) {
    const headers = {};
    if (state.token) headers.Authorization = `Bearer ${state.token}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(apiUrl(path, query), {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (err) {
      throw new ApiError(0, "the server does not answer (is cmo-server running?)");
    }
    if (response.status === 401 && state.auth) {
      showLogin("The server refused the token: log in again.");
      throw new ApiError(401, "log in first");
    }
    return response;
  }

  async function api(path, options) {
    const response = await request(path, options);
    let data = null;
    try {
      data = await response.json();
    } catch (err) {
      data = { error: `HTTP ${response.status}` };
    }
    if (!response.ok) throw new ApiError(response.status, (data && data.error) || `HTTP ${response.status}`, data && data.field);
    return data;
  }

  // --- navigation -------------------------------------------------------------------------------

  function stopTimer() {
    if (state.timer !== null) {
      clearTimeout(state.timer);
      state.timer = null;
    }
  }

  function every(page, ms, fn) {
    const tick = async () => {
      if (page !== state.page) return;
      try {
        await fn();
      } catch (err) {
        // Shown by fn where it matters; a failed refresh tries again next time.
      }
      if (page === state.page) state.timer = setTimeout(tick, ms);
    };
    state.timer = setTimeout(tick, ms);
  }

  function route() {
    const hash = window.location.hash || "#/runs";
    const [path, search] = hash.slice(1).split("?");
    const params = new URLSearchParams(search || "");
    const parts = path.split("/").filter(Boolean).map((p) => decodeURIComponent(p));
    return { section: parts[0] || "runs", parts, params };
  }

  async function render() {
    stopTimer();
    const page = ++state.page;
    const { section, parts, params } = route();
    for (const link of document.querySelectorAll("#nav a")) {
      if (link.dataset.section === section) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
    showNamespace();
    const root = clear(main());
    try {
      if (section === "runs" && parts.length >= 2) await runPage(root, page, parts[1]);
      else if (section === "runs") await runsPage(root, page, params);
      else if (section === "graphs") await graphsPage(root, page, parts[1], parts[2]);
      else if (section === "queues") await queuesPage(root, page);
      else if (section === "agents") await agentsPage(root, page);
      else if (section === "namespaces") await namespacesPage(root, page);
      else root.append(h("h1", {}, "Not found"), h("p", {}, "No such page. ", h("a", { href: "#/runs" }, "See the runs.")));
    } catch (err) {
      if (page !== state.page) return;
      if (err instanceof ApiError && err.status === 401) return; // the login form is up
      clear(root).append(h("h1", {}, "Something went wrong"), h("p", { class: "error", role: "alert" }, err.message));
    }
  }

  function showNamespace() {
    document.getElementById("namespace").textContent = `namespace ${state.tenant}/${state.project}`;
    const logout = document.getElementById("logout");
    logout.hidden = !(state.auth && state.token);
  }

  // --- login ------------------------------------------------------------------------------------

  function showLogin(reason) {
    stopTimer();
    state.page++;
    const root = clear(main());
    const input = h("textarea", { id: "token", rows: 4, autocomplete: "off", spellcheck: "false", required: true });
    const status = h("p", { id: "login-status", role: "status" });
    if (reason) message(status, reason, "error");
    const form = h(
      "form",
      { class: "login editor", id: "login" },
      h("label", { for: "token" }, "Bearer token (a JWT this server accepts, as cmoctl's CMO_TOKEN)"),
      input,
      h("div", { class: "row" }, h("button", { type: "submit", class: "primary" }, "Log in")),
      status,
    );
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const token = input.value.trim();
      if (!token) {
        message(status, "Paste a token first.", "error");
        return;
      }
      message(status, "Checking…");
      const response = await fetch(apiUrl("/session"), { headers: { Authorization: `Bearer ${token}` } });
      if (!response.ok) {
        message(status, "The server refused this token.", "error");
        input.setAttribute("aria-invalid", "true");
        return;
      }
      const session = await response.json();
      state.token = token;
      state.subject = session.subject;
      sessionStorage.setItem("cmo.token", token);
      render();
    });
    root.append(h("h1", {}, "Log in"), h("p", {}, "This server asks every caller for a token."), form);
    input.focus();
  }

  // --- runs list --------------------------------------------------------------------------------

  async function runsPage(root, page, params) {
    const filters = {
      status: params.get("status") || "",
      graph_id: params.get("graph") || "",
      q: params.get("q") || "",
      after: params.get("after") || "",
      before: params.get("before") || "",
    };
    const tokens = [""]; // the page tokens of the pages seen, to go back
    let at = 0;

    const status = h("select", { id: "f-status", name: "status" }, h("option", { value: "" }, "any"));
    for (const s of STATUSES) status.append(h("option", { value: s, selected: s === filters.status }, s));
    const graph = h("input", { id: "f-graph", name: "graph", value: filters.graph_id, placeholder: "graph id", size: 14 });
    const search = h("input", { id: "f-q", name: "q", type: "search", value: filters.q, placeholder: "run id starts with", size: 20 });
    const after = h("input", { id: "f-after", name: "after", type: "datetime-local", value: filters.after, step: 1 });
    const before = h("input", { id: "f-before", name: "before", type: "datetime-local", value: filters.before, step: 1 });
    const form = h(
      "form",
      { class: "filters", id: "run-filters", role: "search" },
      h("label", { for: "f-status" }, "Status", status),
      h("label", { for: "f-graph" }, "Graph", graph),
      h("label", { for: "f-q" }, "Run id", search),
      h("label", { for: "f-after" }, "Created after", after),
      h("label", { for: "f-before" }, "Created before", before),
      h("button", { type: "submit", class: "primary" }, "Apply"),
      h("button", { type: "button", onclick: () => (window.location.hash = "#/runs") }, "Clear"),
    );
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const next = new URLSearchParams();
      if (status.value) next.set("status", status.value);
      if (graph.value.trim()) next.set("graph", graph.value.trim());
      if (search.value.trim()) next.set("q", search.value.trim());
      if (after.value) next.set("after", after.value);
      if (before.value) next.set("before", before.value);
      const text = next.toString();
      const target = text ? `#/runs?${text}` : "#/runs";
      if (window.location.hash === target) render();
      else window.location.hash = target;
    });

    const info = h("p", { id: "runs-info", class: "muted", "aria-live": "polite" });
    const body = h("tbody", { id: "runs-body" });
    const table = h(
      "div",
      { class: "table-wrap" },
      h(
        "table",
        { id: "runs" },
        h("caption", { class: "muted" }, "Runs, newest first"),
        h(
          "thead",
          {},
          h(
            "tr",
            {},
            ["Run", "Graph", "Status", "Steps", "Node", "Created", "Updated", "Waits for"].map((title, i) =>
              h("th", { scope: "col", class: i === 6 || i === 4 ? "hide-narrow" : null }, title),
            ),
          ),
        ),
        body,
      ),
    );
    const prev = h("button", { type: "button", id: "prev-page", disabled: true }, "← Newer");
    const next = h("button", { type: "button", id: "next-page", disabled: true }, "Older →");
    root.append(h("h1", {}, "Runs"), form, info, table, h("div", { class: "actions" }, prev, next));

    const toIso = (local) => (local ? new Date(local).toISOString() : "");
    const load = async () => {
      const data = await api("/runs", {
        query: {
          status: filters.status,
          graph_id: filters.graph_id,
          q: filters.q,
          after: toIso(filters.after),
          before: toIso(filters.before),
          page_token: tokens[at],
          page_size: 50,
        },
      });
      if (page !== state.page) return;
      clear(body);
      const rows = document.createDocumentFragment();
      for (const run of data.runs) {
        rows.append(
          h(
            "tr",
            { "data-run": run.run_id },
            h("td", { class: "id" }, runLink(run.run_id)),
            h("td", {}, `${run.graph_id}@${run.graph_version}`),
            h("td", {}, badge(run.status)),
            h("td", {}, String(run.step_count)),
            h("td", { class: "hide-narrow" }, run.current_node || "—"),
            h("td", {}, when(run.created_at)),
            h("td", { class: "hide-narrow" }, when(run.updated_at)),
            h("td", { class: "wide" }, run.progress ? run.progress.summary : run.failure ? `${run.failure.type}: ${run.failure.message}` : ""),
          ),
        );
      }
      if (!data.runs.length) rows.append(h("tr", {}, h("td", { colspan: 8, class: "muted" }, "No run matches.")));
      body.append(rows);
      tokens[at + 1] = data.next_page_token;
      prev.disabled = at === 0;
      next.disabled = !data.next_page_token;
      const searched = filters.q ? ` · ids starting with ${filters.q}, in id order` : "";
      info.textContent = `${data.runs.length} run(s) on page ${at + 1}${searched} · updated ${new Date().toLocaleTimeString()} · refreshes every ${LIST_REFRESH_MS / 1000} s`;
    };
    prev.addEventListener("click", async () => {
      at = Math.max(0, at - 1);
      await load().catch(showError(info));
    });
    next.addEventListener("click", async () => {
      if (!tokens[at + 1]) return;
      at += 1;
      await load().catch(showError(info));
    });
    try {
      await load();
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) throw err;
      showError(info)(err);
    }
    every(page, LIST_REFRESH_MS, load);
  }

  function showError(el) {
    return (err) => {
      if (err instanceof ApiError && err.status === 401) return;
      el.className = "error";
      el.setAttribute("role", "alert");
      el.textContent = err.message;
    };
  }

  // --- one run ----------------------------------------------------------------------------------

  async function allSteps(runId, after) {
    const steps = [];
    let token = after === undefined ? "" : String(after);
    for (;;) {
      const data = await api(`/runs/${encodeURIComponent(runId)}/history`, { query: { page_token: token, page_size: 1000 } });
      steps.push(...data.steps);
      if (!data.next_page_token) return steps;
      token = data.next_page_token;
    }
  }

  async function runPage(root, page, runId) {
    const path = `/runs/${encodeURIComponent(runId)}`;
    // The run, its steps and (once the run names it) its graph, fetched side by side.
    const loadingSteps = allSteps(runId);
    let run = await api(path);
    let graph = null;
    let graphError = "";
    const loadingGraph = api(`/graphs/${encodeURIComponent(run.graph_id)}/versions/${run.graph_version}`).then(
      (found) => (graph = found),
      (err) => {
        if (err instanceof ApiError && err.status === 401) throw err;
        graphError = err.message;
      },
    );
    let steps = await loadingSteps;
    await loadingGraph;
    if (page !== state.page) return;

    const head = h("section", { id: "run-head" });
    const progress = h("section", { id: "progress", "aria-live": "polite" });
    const failure = h("section", { id: "failure" });
    const actions = h("section", { id: "actions", "aria-labelledby": "actions-title" });
    const drawing = h("section", { id: "graph", "aria-labelledby": "graph-title" });
    const waits = h("section", { id: "waits", "aria-labelledby": "waits-title" });
    const timeline = h("section", { id: "steps", "aria-labelledby": "steps-title" });
    root.append(head, progress, failure, actions, drawing, waits, timeline);
    const opened = new Set(); // step indexes whose details are open, kept across refreshes

    const paint = () => {
      paintHead(head, run);
      paintProgress(progress, run);
      paintFailure(failure, run);
      paintGraph(drawing, run, steps, graph, graphError);
      paintWaits(waits, run, steps);
      paintSteps(timeline, run, steps, opened, actionsApi);
      actionsApi.update(run);
    };
    const refresh = async () => {
      const last = steps.length ? steps[steps.length - 1].step_index : undefined;
      const [fresh, more] = await Promise.all([api(path), allSteps(runId, last)]);
      if (page !== state.page) return;
      const changed = more.length || fresh.status !== run.status || fresh.updated_at !== run.updated_at;
      run = fresh;
      steps = steps.concat(more);
      if (changed) paint();
    };
    const actionsApi = buildActions(actions, () => run, refresh, runId);
    paint();
    // For bench/ui.py: from the navigation's start to the step timeline in the page.
    performance.mark("cmo:steps-rendered");
    if (!TERMINAL.has(run.status)) {
      every(page, RUN_REFRESH_MS, async () => {
        await refresh();
        if (TERMINAL.has(run.status)) stopTimer();
      });
    }
  }

  function paintHead(el, run) {
    clear(el);
    const meta = h("dl", { class: "meta" });
    const item = (term, ...value) => meta.append(h("dt", {}, term), h("dd", {}, ...value));
    item("Graph", h("a", { href: `#/graphs/${encodeURIComponent(run.graph_id)}/${run.graph_version}` }, `${run.graph_id}@${run.graph_version}`));
    item("Namespace", `${run.tenant}/${run.project}`);
    item("Steps", String(run.step_count));
    item("Current node", run.current_node || "—");
    item("Created", when(run.created_at));
    item("Updated", when(run.updated_at));
    if (run.completed_at) item("Ended", when(run.completed_at));
    if (run.parent_run_id) item("Forked from", runLink(run.parent_run_id), ` at step ${run.forked_from_step}`);
    if (run.cancel_requested && !TERMINAL.has(run.status)) item("Cancel", "requested");
    if (run.result !== null && run.result !== undefined) item("Result", jsonBlock(run.result, "result"));
    el.append(h("h1", {}, "Run ", h("span", { class: "id", id: "run-id" }, run.run_id), " ", badge(run.status)), meta);
  }

  function paintProgress(el, run) {
    clear(el);
    const p = run.progress;
    if (!p) {
      if (TERMINAL.has(run.status)) el.append(h("p", { class: "muted", id: "progress-summary" }, `The run ended ${run.status}.`));
      return;
    }
    const meta = h("dl", { class: "meta" });
    const item = (term, value) => {
      if (value !== "" && value !== null && value !== undefined && value !== 0) meta.append(h("dt", {}, term), h("dd", {}, value));
    };
    item("Reason", p.reason);
    item("Queue", p.task_queue);
    item("Step", `${p.step_index}, attempt ${p.attempt}`);
    item("Worker", p.worker_id);
    item("Until", p.until ? when(p.until) : "");
    item("Last poll", p.last_poll ? when(p.last_poll) : "");
    item("Pollers", p.pollers);
    item("Signal", p.signal_name);
    item("Agent", p.agent_id);
    if (p.last_failure) item("Last failure", `${p.last_failure.type || "error"}: ${p.last_failure.message}`);
    el.append(
      h("div", { class: "panel waits" }, h("h2", {}, "What it waits for"), h("p", { id: "progress-summary" }, p.summary), meta),
    );
  }

  function paintFailure(el, run) {
    clear(el);
    const f = run.failure;
    if (!f) return;
    el.append(
      h(
        "div",
        { class: "panel failure", role: "status" },
        h("h2", {}, "Failure"),
        h("p", { class: "error", id: "failure-message" }, `${f.type || "error"}: ${f.message}`),
        h("p", { class: "muted" }, `node ${f.node_id || "—"}, step ${f.step_index}, attempt ${f.attempt}`),
        f.details ? jsonBlock(f.details, "details") : null,
      ),
    );
  }

  // --- actions ----------------------------------------------------------------------------------

  function jsonEditor(id, label, initial, { objectOnly = false } = {}) {
    const area = h("textarea", { id, rows: 8, spellcheck: "false", "aria-describedby": `${id}-check` });
    area.value = initial;
    const check = h("p", { id: `${id}-check`, class: "muted", "aria-live": "polite" });
    const listeners = [];
    const validate = () => {
      const text = area.value.trim();
      let problem = "";
      let value;
      if (!text) problem = "Type JSON here.";
      else {
        try {
          value = JSON.parse(text);
          if (objectOnly && (value === null || typeof value !== "object" || Array.isArray(value))) {
            problem = "Must be a JSON object ({…}).";
          }
        } catch (err) {
          problem = `Not JSON: ${err.message}`;
        }
      }
      area.setAttribute("aria-invalid", problem ? "true" : "false");
      check.className = problem ? "error" : "okmsg";
      check.textContent = problem || "Valid JSON.";
      for (const listener of listeners) listener(!problem);
      return problem ? null : { value };
    };
    area.addEventListener("input", validate);
    return {
      nodes: [h("label", { for: id }, label), area, check],
      area,
      validate,
      onValidity: (fn) => listeners.push(fn),
    };
  }

  function buildActions(el, current, refresh, runId) {
    const path = `/runs/${encodeURIComponent(runId)}`;
    const status = h("p", { id: "action-status", role: "status", class: "muted" });
    const panel = h("div", { id: "action-panel" });
    const buttons = {
      signal: h("button", { type: "button", id: "open-signal" }, "Signal…"),
      cancel: h("button", { type: "button", id: "open-cancel" }, "Cancel…"),
      terminate: h("button", { type: "button", id: "open-terminate", class: "danger" }, "Terminate…"),
      exportRun: h("button", { type: "button", id: "export" }, "Download export"),
      verify: h("button", { type: "button", id: "verify" }, "Verify against its graph"),
    };
    el.append(h("h2", { id: "actions-title" }, "Actions"), h("div", { class: "actions" }, Object.values(buttons)), panel, status);

    const done = async (text) => {
      clear(panel);
      message(status, text, "ok");
      await refresh().catch(() => {});
    };
    const failed = (err) => message(status, err.message, "error");

    buttons.signal.addEventListener("click", () => {
      const run = current();
      clear(panel);
      const waitingFor = run.waiting && run.waiting.kind === "signal" ? run.waiting.name : "";
      const name = h("input", { id: "signal-name", value: waitingFor, required: true, size: 30 });
      const editor = jsonEditor("signal-payload", "Payload (JSON)", "{}");
      const send = h("button", { type: "submit", class: "primary", id: "send-signal" }, "Send signal");
      editor.onValidity((ok) => (send.disabled = !ok));
      const form = h("form", { class: "editor panel", id: "signal-form" }, h("label", { for: "signal-name" }, "Signal name"), name, editor.nodes, h("div", { class: "row" }, send));
      form.addEventListener("submit", async (event) => {
        event.preventDefault();
        const parsed = editor.validate();
        if (!parsed) return;
        try {
          const answer = await api(`${path}/signal`, { method: "POST", body: { name: name.value.trim(), payload: parsed.value } });
          await done(answer.delivered ? `Signal ${name.value.trim()} delivered: the step goes on.` : `Signal ${name.value.trim()} kept until the run waits for it.`);
        } catch (err) {
          failed(err);
        }
      });
      panel.append(form);
      editor.validate();
      (waitingFor ? editor.area : name).focus();
    });

    const reasonForm = (kind, verb, endpoint, doneText) => () => {
      clear(panel);
      const reason = h("input", { id: `${kind}-reason`, size: 40, placeholder: "why (optional)" });
      const go = h("button", { type: "submit", class: kind === "terminate" ? "danger" : "primary", id: `confirm-${kind}` }, verb);
      const form = h("form", { class: "editor panel", id: `${kind}-form` }, h("label", { for: `${kind}-reason` }, "Reason"), reason, h("div", { class: "row" }, go, h("button", { type: "button", onclick: () => clear(panel) }, "Back")));
      form.addEventListener("submit", async (event) => {
        event.preventDefault();
        try {
          const answer = await api(`${path}/${endpoint}`, { method: "POST", body: { reason: reason.value } });
          await done(doneText(answer.run));
        } catch (err) {
          failed(err);
        }
      });
      panel.append(form);
      reason.focus();
    };
    buttons.cancel.addEventListener(
      "click",
      reasonForm("cancel", "Cancel run", "cancel", (run) => (TERMINAL.has(run.status) ? `The run is ${run.status}.` : "Cancel requested: the run ends once its step winds up.")),
    );
    buttons.terminate.addEventListener("click", reasonForm("terminate", "Terminate run", "terminate", (run) => `The run is ${run.status}.`));

    buttons.exportRun.addEventListener("click", async () => {
      try {
        const response = await request(`${path}/export`);
        if (!response.ok) {
          const data = await response.json().catch(() => ({}));
          throw new ApiError(response.status, data.error || `HTTP ${response.status}`);
        }
        const blob = await response.blob();
        const url = URL.createObjectURL(blob);
        const link = h("a", { href: url, download: `run-${runId.replace(/[^A-Za-z0-9._-]/g, "_")}.json`, hidden: true });
        document.body.append(link);
        link.click();
        link.remove();
        setTimeout(() => URL.revokeObjectURL(url), 10000);
        message(status, "Export downloaded.", "ok");
      } catch (err) {
        failed(err);
      }
    });

    // Replays the recorded path through the registered graph version (the graph's code is not run).
    buttons.verify.addEventListener("click", async () => {
      try {
        const v = await api(`${path}/verify`);
        if (v.ok) {
          message(status, `Verified: ${v.steps} step(s) replay through ${v.graph_id}@${v.graph_version} (${v.checks.join(", ")}).`, "ok");
        } else {
          const d = v.divergence;
          message(status, `Diverges at step ${d.step_index} (${d.check}): ${d.message}`, "error");
        }
      } catch (err) {
        failed(err);
      }
    });

    const fork = (step) => {
      clear(panel);
      const editor = jsonEditor("fork-state", `State of step ${step.step_index} in the fork (a JSON object)`, pretty(step.state), { objectOnly: true });
      const newId = h("input", { id: "fork-run-id", size: 30, placeholder: "new run id (optional)" });
      const go = h("button", { type: "submit", class: "primary", id: "confirm-fork" }, `Fork from step ${step.step_index}`);
      editor.onValidity((ok) => (go.disabled = !ok));
      const form = h(
        "form",
        { class: "editor panel", id: "fork-form" },
        h("p", {}, `A new run that shares steps 0..${step.step_index} (${step.node_id}) with this one, then goes on with ${step.next_node}.`),
        editor.nodes,
        h("label", { for: "fork-run-id" }, "Run id of the fork"),
        newId,
        h("div", { class: "row" }, go, h("button", { type: "button", onclick: () => clear(panel) }, "Back")),
      );
      form.addEventListener("submit", async (event) => {
        event.preventDefault();
        const parsed = editor.validate();
        if (!parsed) return;
        try {
          const answer = await api(`${path}/fork`, {
            method: "POST",
            body: { from_step: step.step_index, state: parsed.value, new_run_id: newId.value.trim() },
          });
          window.location.hash = `#/runs/${encodeURIComponent(answer.run.run_id)}`;
        } catch (err) {
          failed(err);
        }
      });
      panel.append(form);
      editor.validate();
      el.scrollIntoView({ block: "start" });
      editor.area.focus();
    };

    return {
      fork,
      update(run) {
        const ended = TERMINAL.has(run.status);
        buttons.signal.disabled = ended;
        buttons.cancel.disabled = ended;
        buttons.terminate.disabled = ended;
      },
    };
  }

  // --- the graph, drawn -------------------------------------------------------------------------

  function layout(graph) {
    const ids = graph.nodes.map((n) => n.node_id);
    const out = new Map(ids.map((id) => [id, []]));
    let ends = false;
    for (const e of graph.edges) {
      if (e.to === END) ends = true;
      if (out.has(e.from)) out.get(e.from).push(e.to);
    }
    if (ends) ids.push(END);
    const layer = new Map([[graph.entry_node, 0]]);
    const queue = [graph.entry_node];
    while (queue.length) {
      const id = queue.shift();
      for (const to of out.get(id) || []) {
        if (!layer.has(to)) {
          layer.set(to, layer.get(id) + 1);
          queue.push(to);
        }
      }
    }
    let deepest = Math.max(0, ...layer.values());
    for (const id of ids) if (!layer.has(id)) layer.set(id, ++deepest);
    if (ends) layer.set(END, Math.max(...[...layer.entries()].filter(([k]) => k !== END).map(([, v]) => v)) + 1);
    const columns = new Map();
    for (const id of ids) {
      const l = layer.get(id);
      if (!columns.has(l)) columns.set(l, []);
      columns.get(l).push(id);
    }
    const W = 150, H = 40, GX = 70, GY = 40, PAD = 30;
    const pos = new Map();
    let rows = 1;
    for (const [l, members] of columns) {
      rows = Math.max(rows, members.length);
      members.forEach((id, i) => pos.set(id, { x: PAD + l * (W + GX), y: PAD + 20 + i * (H + GY) }));
    }
    const width = PAD * 2 + (Math.max(...columns.keys()) + 1) * (W + GX) - GX;
    const height = PAD * 2 + 40 + rows * (H + GY) - GY;
    return { pos, W, H, width, height, ids };
  }

  function drawGraph(graph, run, steps, label) {
    const { pos, W, H, width, height, ids } = layout(graph);
    const visited = new Set(steps.map((s) => s.node_id));
    const taken = new Set(steps.map((s) => `${s.node_id}\u0000${s.next_key}\u0000${s.next_node}`));
    const current = TERMINAL.has(run.status) ? "" : run.current_node;
    if (run.status === "COMPLETED") visited.add(END);
    const root = svg("svg", { class: "graph", viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": label });
    root.append(svg("title", {}, label));
    const defs = svg("defs");
    for (const id of ["arrow", "arrow-taken"]) {
      defs.append(svg("marker", { id, viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 10, markerHeight: 10, markerUnits: "userSpaceOnUse", orient: "auto-start-reverse" }, svg("path", { d: "M 0 0 L 10 5 L 0 10 z" })));
    }
    root.append(defs);
    const edges = svg("g");
    for (const e of graph.edges) {
      const a = pos.get(e.from), b = pos.get(e.to);
      if (!a || !b) continue;
      const isTaken = taken.has(`${e.from}\u0000${e.key}\u0000${e.to}`);
      let d, lx, ly;
      if (e.from === e.to) {
        d = `M ${a.x + W * 0.35} ${a.y} C ${a.x + W * 0.35} ${a.y - 36}, ${a.x + W * 0.65} ${a.y - 36}, ${a.x + W * 0.65} ${a.y}`;
        lx = a.x + W / 2; ly = a.y - 30;
      } else if (b.x > a.x) {
        const x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x, y2 = b.y + H / 2, mx = (x1 + x2) / 2;
        d = `M ${x1} ${y1} C ${mx} ${y1}, ${mx} ${y2}, ${x2} ${y2}`;
        lx = mx; ly = (y1 + y2) / 2 - 5;
      } else {
        const x1 = a.x + W / 2, y1 = a.y + H, x2 = b.x + W / 2, y2 = b.y + H, low = Math.max(y1, y2) + 30;
        d = `M ${x1} ${y1} C ${x1} ${low}, ${x2} ${low}, ${x2} ${y2}`;
        lx = (x1 + x2) / 2; ly = low - 4;
      }
      edges.append(
        svg(
          "g",
          { class: isTaken ? "edge taken" : "edge", "data-edge": `${e.from}>${e.to}` },
          svg("path", { d, "marker-end": `url(#${isTaken ? "arrow-taken" : "arrow"})` }),
          svg("text", { x: lx, y: ly, "text-anchor": "middle" }, e.key),
        ),
      );
    }
    root.append(edges);
    for (const id of ids) {
      const p = pos.get(id);
      const classes = ["node", visited.has(id) ? "visited" : "", id === current ? "current" : "", id === END ? "end" : ""].filter(Boolean).join(" ");
      const name = id === END ? "END" : id;
      const shown = name.length > 18 ? `${name.slice(0, 17)}…` : name;
      root.append(
        svg(
          "g",
          { class: classes, "data-node": id },
          svg("title", {}, name),
          svg("rect", { x: p.x, y: p.y, width: W, height: H, rx: 8 }),
          svg("text", { x: p.x + W / 2, y: p.y + H / 2 + 4, "text-anchor": "middle" }, shown),
        ),
      );
    }
    return h("div", { class: "graph-wrap" }, root);
  }

  function paintGraph(el, run, steps, graph, graphError) {
    clear(el);
    el.append(h("h2", { id: "graph-title" }, "Graph"));
    if (!graph) {
      el.append(h("p", { class: "muted" }, `The graph cannot be shown: ${graphError}`));
      return;
    }
    el.append(
      drawGraph(graph, run, steps, `Graph ${graph.graph_id} version ${graph.version}: the path taken is highlighted${TERMINAL.has(run.status) ? "" : `, the current node is ${run.current_node}`}`),
      h("div", { class: "legend" }, h("span", {}, "blue: the path taken"), h("span", {}, "orange border: the current node")),
    );
  }

  // --- waits and signals ------------------------------------------------------------------------

  function paintWaits(el, run, steps) {
    clear(el);
    el.append(h("h2", { id: "waits-title" }, "Waits, signals and timers"));
    const list = h("ul", { id: "waits-list" });
    if (run.waiting) {
      const w = run.waiting;
      list.append(h("li", {}, h("strong", {}, "now: "), `step ${w.step_index} waits for ${w.kind === "timer" ? "a timer" : `the signal ${w.name}`}${w.until ? ` until ${when(w.until)}` : ""}`));
    }
    for (const step of steps) {
      for (const a of step.activities) {
        if (a.kind !== "signal" && a.kind !== "timer") continue;
        const outcome = a.error ? `${a.error.type}: ${a.error.message}` : a.kind === "timer" ? "fired" : `received ${JSON.stringify(a.result)}`;
        list.append(h("li", {}, `step ${step.step_index} (${step.node_id}): ${a.kind} ${a.name || ""} — ${outcome}`));
      }
    }
    if (!list.childNodes.length) el.append(h("p", { class: "muted" }, "None."));
    else el.append(list);
  }

  // --- steps ------------------------------------------------------------------------------------

  function diffJson(a, b, path, out) {
    if (out.length >= 200) return out;
    if (JSON.stringify(a) === JSON.stringify(b)) return out;
    const isObj = (v) => v !== null && typeof v === "object" && !Array.isArray(v);
    if (isObj(a) && isObj(b)) {
      const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort();
      for (const k of keys) {
        const p = `${path}.${k}`;
        if (!(k in a)) out.push({ op: "+", path: p, to: b[k] });
        else if (!(k in b)) out.push({ op: "-", path: p, from: a[k] });
        else diffJson(a[k], b[k], p, out);
      }
    } else if (Array.isArray(a) && Array.isArray(b)) {
      for (let i = 0; i < Math.max(a.length, b.length); i++) {
        const p = `${path}[${i}]`;
        if (i >= a.length) out.push({ op: "+", path: p, to: b[i] });
        else if (i >= b.length) out.push({ op: "-", path: p, from: a[i] });
        else diffJson(a[i], b[i], p, out);
      }
    } else out.push({ op: "~", path, from: a, to: b });
    return out;
  }

  function short(value) {
    const text = JSON.stringify(value);
    return text.length > 200 ? `${text.slice(0, 199)}…` : text;
  }

  function httpBody(activity) {
    const r = activity.result;
    if (activity.kind !== "http" || !r || typeof r !== "object" || typeof r.body !== "string") return r;
    try {
      const bytes = Uint8Array.from(atob(r.body), (c) => c.charCodeAt(0));
      const text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
      if (/[\u0000-\u0008\u000b\u000c\u000e-\u001f]/.test(text)) return r;
      return { ...r, body: text };
    } catch (err) {
      return r; // not text: left as recorded (base64)
    }
  }

  function stepDetail(step, previous, actionsApi) {
    const cell = h("td", { colspan: 8 });
    cell.append(h("h3", {}, `Step ${step.step_index}: ${step.node_id}`));
    const meta = h("dl", { class: "meta" });
    const item = (term, value) => meta.append(h("dt", {}, term), h("dd", {}, value));
    item("State hash", step.state_hash);
    item("Logical time", when(step.logical_time));
    item("Next", step.next_node === END ? "END" : `${step.next_key} → ${step.next_node}`);
    cell.append(meta, h("h4", {}, "State after the step"), jsonBlock(step.state, "state"));
    const changes = diffJson(previous.state, step.state, "$", []);
    const diffList = h("ul", { class: "diff" });
    for (const c of changes) {
      if (c.op === "+") diffList.append(h("li", { class: "diff-add" }, `+ ${c.path}: ${short(c.to)}`));
      else if (c.op === "-") diffList.append(h("li", { class: "diff-del" }, `- ${c.path}: ${short(c.from)}`));
      else diffList.append(h("li", { class: "diff-chg" }, `~ ${c.path}: ${short(c.from)} → ${short(c.to)}`));
    }
    cell.append(h("h4", {}, previous.step_index === "input" ? "Changes since the input" : `Changes since step ${previous.step_index}`));
    cell.append(changes.length ? diffList : h("p", { class: "muted" }, "No change."));
    if (step.output !== null && step.output !== undefined) cell.append(h("h4", {}, "Output"), jsonBlock(step.output, "output"));
    cell.append(h("h4", {}, `Activities (${step.activities.length})`));
    for (const a of step.activities) {
      const box = h("div", { class: "panel" }, h("p", {}, h("strong", {}, `${a.seq}. ${a.kind} ${a.name || ""}`), ` · attempt ${a.attempt} · request ${a.request_hash.slice(0, 16)}`));
      if (a.error) box.append(h("p", { class: "error" }, `${a.error.type || "error"}: ${a.error.message}`));
      else box.append(jsonBlock(httpBody(a), "response"));
      cell.append(box);
    }
    if (step.next_node !== END) {
      cell.append(h("div", { class: "actions" }, h("button", { type: "button", class: "fork", onclick: () => actionsApi.fork(step) }, `Fork from step ${step.step_index}…`)));
    }
    return h("tr", { class: "detail", id: `step-${step.step_index}-detail` }, cell);
  }

  function paintSteps(el, run, steps, opened, actionsApi) {
    clear(el);
    el.append(h("h2", { id: "steps-title" }, `Steps (${steps.length})`));
    if (!steps.length) {
      el.append(h("p", { class: "muted" }, "No step is checkpointed yet."));
      return;
    }
    const durations = steps.map((s) => new Date(s.finished_at) - new Date(s.started_at));
    const longest = Math.max(1, ...durations);
    const body = h("tbody");
    const rows = document.createDocumentFragment();
    steps.forEach((step, i) => {
      const toggle = h("button", { type: "button", class: "toggle", "aria-expanded": "false", "aria-controls": `step-${step.step_index}-detail` }, "Details");
      const bar = h("div", { class: "bar" });
      bar.style.width = `${Math.max(1, (100 * durations[i]) / longest)}%`;
      const row = h(
        "tr",
        { "data-step": step.step_index },
        h("td", {}, String(step.step_index)),
        h("td", {}, step.node_id),
        h("td", { class: "attempts" }, attempts(step)),
        h("td", { class: "hide-narrow" }, when(step.started_at)),
        h("td", {}, duration(durations[i])),
        h("td", { class: "barcell" }, bar),
        h("td", {}, step.next_node === END ? "END" : `${step.next_key} → ${step.next_node}`),
        h("td", {}, String(step.activities.length), " ", toggle),
      );
      const open = () => {
        row.after(stepDetail(step, i ? steps[i - 1] : { step_index: "input", state: run.input }, actionsApi));
        row.classList.add("open");
        toggle.setAttribute("aria-expanded", "true");
        opened.add(step.step_index);
      };
      toggle.addEventListener("click", () => {
        const detail = document.getElementById(`step-${step.step_index}-detail`);
        if (detail) {
          detail.remove();
          row.classList.remove("open");
          toggle.setAttribute("aria-expanded", "false");
          opened.delete(step.step_index);
        } else open();
      });
      rows.append(row);
      if (opened.has(step.step_index)) {
        // Re-opened after a refresh: built once the row is in the table.
        queueMicrotask(open);
      }
    });
    body.append(rows);
    el.append(
      h(
        "div",
        { class: "table-wrap" },
        h(
          "table",
          { id: "step-table" },
          h("thead", {}, h("tr", {}, ["#", "Node", "Attempts", "Started", "Duration", "", "Next", "Activities"].map((t, i) => h("th", { scope: "col", class: i === 3 ? "hide-narrow" : i === 5 ? "barcell" : null }, t)))),
          body,
        ),
      ),
    );
  }

  // --- graphs -----------------------------------------------------------------------------------

  // The attempt that completed a step, telling retries (an attempt failed: in bold) from resumes
  // (an attempt ended in a wait for a signal or a timer, the next one took it up), as cmoctl does.
  function attempts(step) {
    const waited = new Set(step.activities.filter((a) => (a.kind === "signal" || a.kind === "timer") && a.attempt < step.attempt).map((a) => a.attempt));
    const retries = step.attempt - 1 - waited.size;
    const told = [];
    if (retries > 0) told.push(`${retries} ${retries === 1 ? "retry" : "retries"}`);
    if (waited.size) told.push(waited.size === 1 ? "resumed" : `resumed ${waited.size}x`);
    if (!told.length) return String(step.attempt);
    const text = `${step.attempt} (${told.join(", ")})`;
    return retries > 0 ? h("strong", {}, text) : text;
  }

  // "12: 3 running, 9 completed" (statuses as the server names them, lower-cased).
  function runCounts(runs) {
    if (!runs || !runs.total) return "none";
    const parts = Object.entries(runs.by_status).map(([status, n]) => `${n} ${status.toLowerCase()}`);
    return `${runs.total}: ${parts.join(", ")}`;
  }

  async function graphsPage(root, page, graphId, version) {
    root.append(h("h1", {}, "Graphs"));
    const data = await api("/graphs", { query: { page_size: 1000 } });
    if (page !== state.page) return;
    if (!data.graphs.length) {
      root.append(h("p", { class: "muted" }, "No graph is registered in this namespace yet: start a worker that serves one."));
      return;
    }
    const body = h("tbody");
    for (const g of data.graphs) {
      const queues = [...new Set(g.nodes.map((n) => n.task_queue))].join(", ");
      body.append(
        h(
          "tr",
          {},
          h("td", {}, h("a", { href: `#/graphs/${encodeURIComponent(g.graph_id)}/${g.version}` }, g.graph_id)),
          h("td", {}, String(g.version)),
          h("td", {}, g.entry_node),
          h("td", {}, String(g.nodes.length)),
          h("td", {}, queues),
          h("td", { class: "runs-count" }, runCounts(g.runs)),
          h("td", {}, h("a", { href: `#/runs?graph=${encodeURIComponent(g.graph_id)}` }, "runs")),
        ),
      );
    }
    root.append(
      h("div", { class: "table-wrap" }, h("table", { id: "graphs" }, h("thead", {}, h("tr", {}, ["Graph", "Version", "Entry", "Nodes", "Queues", "Runs", ""].map((t) => h("th", { scope: "col" }, t)))), body)),
    );
    if (graphId) {
      const graph = data.graphs.find((g) => g.graph_id === graphId && String(g.version) === String(version)) ||
        (await api(`/graphs/${encodeURIComponent(graphId)}/versions/${encodeURIComponent(version || "0")}`));
      if (page !== state.page) return;
      const idle = { status: "COMPLETED", current_node: "" };
      root.append(
        h("h2", { id: "graph-title" }, `${graph.graph_id} version ${graph.version}`),
        drawGraph(graph, idle, [], `Graph ${graph.graph_id} version ${graph.version}`),
      );
      const nodes = h("tbody");
      for (const n of graph.nodes) nodes.append(h("tr", {}, h("td", {}, n.node_id), h("td", {}, n.task_queue), h("td", {}, n.max_attempts ? String(n.max_attempts) : "no limit")));
      root.append(h("div", { class: "table-wrap" }, h("table", {}, h("thead", {}, h("tr", {}, ["Node", "Queue", "Max attempts"].map((t) => h("th", { scope: "col" }, t)))), nodes)));
    }
  }

  // --- queues, agents, namespaces ---------------------------------------------------------------

  async function queuesPage(root, page) {
    root.append(h("h1", {}, "Queues"), h("p", { class: "muted" }, "The task queues of this namespace: tasks ready to be taken, and the workers that poll each, as this server saw them."));
    const info = h("p", { class: "muted", "aria-live": "polite" });
    const depths = h("tbody");
    const body = h("tbody");
    const head = (names) => h("thead", {}, h("tr", {}, names.map((t) => h("th", { scope: "col" }, t))));
    root.append(
      info,
      h("div", { class: "table-wrap" }, h("table", { id: "queue-depths" }, head(["Queue", "Ready tasks", "Workers polling", "Last poll"]), depths)),
      h("h2", {}, "Pollers"),
      h("div", { class: "table-wrap" }, h("table", { id: "queues" }, head(["Queue", "Worker", "Graphs", "Last poll"]), body)),
    );
    const load = async () => {
      const data = await api("/queues");
      if (page !== state.page) return;
      clear(depths);
      for (const q of data.queues) depths.append(h("tr", {}, h("td", {}, q.task_queue), h("td", {}, String(q.ready)), h("td", {}, String(q.pollers)), h("td", {}, when(q.last_poll))));
      if (!data.queues.length) depths.append(h("tr", {}, h("td", { colspan: 4, class: "muted" }, "No task is ready and no worker has polled here since the server started.")));
      clear(body);
      for (const p of data.pollers) body.append(h("tr", {}, h("td", {}, p.task_queue), h("td", { class: "id" }, p.worker_id), h("td", {}, p.graphs.join(", ")), h("td", {}, when(p.last_poll))));
      if (!data.pollers.length) body.append(h("tr", {}, h("td", { colspan: 4, class: "muted" }, "No worker has polled here since the server started.")));
      info.textContent = `updated ${new Date().toLocaleTimeString()}`;
    };
    await load();
    every(page, LIST_REFRESH_MS, load);
  }

  async function agentsPage(root, page) {
    root.append(h("h1", {}, "Agents"), h("p", { class: "muted" }, "The agent registry: workers and specialists, their status, capabilities and leases."));
    const info = h("p", { class: "muted", "aria-live": "polite" });
    const body = h("tbody");
    root.append(
      info,
      h("div", { class: "table-wrap" }, h("table", { id: "agents" }, h("thead", {}, h("tr", {}, ["Agent", "Kind", "Status", "Load", "Capabilities", "Last heartbeat", "Lease until", "Last poll"].map((t) => h("th", { scope: "col" }, t)))), body)),
    );
    const load = async () => {
      const data = await api("/agents", { query: { page_size: 1000 } });
      if (page !== state.page) return;
      clear(body);
      for (const a of data.agents) {
        body.append(
          h(
            "tr",
            {},
            h("td", { class: "id" }, a.agent_id, a.name ? h("div", { class: "muted" }, `${a.name} ${a.version}`) : null),
            h("td", {}, a.kind),
            h("td", {}, badge(a.status), a.status_reason ? h("div", { class: "muted" }, a.status_reason) : null),
            h("td", {}, `${Math.round(a.load * 100)}%`),
            h("td", { class: "wide" }, a.capabilities.join(", ")),
            h("td", {}, when(a.last_heartbeat_at)),
            h("td", {}, when(a.lease_expires_at)),
            h("td", {}, when(a.last_poll_at)),
          ),
        );
      }
      if (!data.agents.length) body.append(h("tr", {}, h("td", { colspan: 8, class: "muted" }, "No agent is registered in this namespace.")));
      info.textContent = `${data.agents.length} agent(s) · updated ${new Date().toLocaleTimeString()}`;
    };
    await load();
    every(page, LIST_REFRESH_MS, load);
  }

  async function namespacesPage(root, page) {
    const data = await api("/namespaces");
    if (page !== state.page) return;
    root.append(h("h1", {}, "Namespaces"));
    if (data.patterns) root.append(h("p", {}, "Your token may use: ", data.patterns.join(", ") || "no namespace"));
    const list = h("ul", { id: "namespaces" });
    for (const ns of data.namespaces) {
      const name = `${ns.tenant}/${ns.project}`;
      const use = h("button", { type: "button", onclick: () => switchTo(ns.tenant, ns.project) }, "Use");
      const here = ns.tenant === state.tenant && ns.project === state.project;
      list.append(h("li", {}, `${name} `, here ? h("strong", {}, "(shown)") : use));
    }
    const tenant = h("input", { id: "ns-tenant", value: state.tenant, pattern: "[a-z0-9][a-z0-9_\\-]{0,62}", required: true });
    const project = h("input", { id: "ns-project", value: state.project, pattern: "[a-z0-9][a-z0-9_\\-]{0,62}", required: true });
    const form = h(
      "form",
      { class: "filters", id: "namespace-form" },
      h("label", { for: "ns-tenant" }, "Tenant", tenant),
      h("label", { for: "ns-project" }, "Project", project),
      h("button", { type: "submit", class: "primary" }, "Show this namespace"),
    );
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      switchTo(tenant.value.trim(), project.value.trim());
    });
    root.append(h("p", { class: "muted" }, "Namespaces this server knows of (yours, and those workers poll in):"), list, h("h2", {}, "Another namespace"), form);
  }

  function switchTo(tenant, project) {
    state.tenant = tenant || "default";
    state.project = project || "default";
    sessionStorage.setItem("cmo.tenant", state.tenant);
    sessionStorage.setItem("cmo.project", state.project);
    window.location.hash = "#/runs";
    if (route().section === "runs") render();
  }

  // --- start ------------------------------------------------------------------------------------

  async function start() {
    document.getElementById("logout").addEventListener("click", () => {
      state.token = "";
      sessionStorage.removeItem("cmo.token");
      showNamespace();
      showLogin("Logged out.");
    });
    window.addEventListener("hashchange", () => {
      render();
      main().focus({ preventScroll: true });
    });
    let session;
    try {
      const response = await fetch(apiUrl("/session"), { headers: state.token ? { Authorization: `Bearer ${state.token}` } : {} });
      session = await response.json();
      if (!response.ok) {
        state.auth = true;
        state.token = "";
        sessionStorage.removeItem("cmo.token");
        showLogin("The server refused the saved token: log in again.");
        return;
      }
    } catch (err) {
      clear(main()).append(h("p", { class: "error", role: "alert" }, "The server does not answer."));
      return;
    }
    state.auth = session.auth;
    state.subject = session.subject;
    if (state.auth && !state.token) {
      showLogin("");
      return;
    }
    render();
  }

  start();
})();
