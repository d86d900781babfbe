// The dashboard: token in sessionStorage, HTML fragments fetched with it, forms posted to
// the JSON API, and live refresh from the event stream. No inline script (strict CSP).
(() => {
  "use strict";
  const TOKEN = "product-status-token";
  const ROLE = "product-status-role";
  const RANK = { reader: 1, writer: 2, admin: 3 };
  const root = document.getElementById("dashboard");
  if (!root) return;
  const page = root.dataset.page;

  const say = (text) => {
    const status = document.querySelector("[data-live-status]");
    if (status) status.textContent = text;
  };

  if (page === "sign-in") {
    bindSignIn();
    return;
  }

  const token = sessionStorage.getItem(TOKEN);
  const role = sessionStorage.getItem(ROLE);
  if (!token) {
    signIn();
    return;
  }
  const atLeast = (wanted) => Boolean(role) && RANK[role] >= RANK[wanted];
  for (const el of document.querySelectorAll("[data-role-min]")) {
    el.hidden = !atLeast(el.dataset.roleMin);
  }
  for (const button of document.querySelectorAll("[data-sign-out]")) {
    button.hidden = false;
    button.addEventListener("click", () => {
      sessionStorage.removeItem(TOKEN);
      sessionStorage.removeItem(ROLE);
      location.assign("/dashboard/sign-in");
    });
  }

  function signIn() {
    const here = location.pathname + location.search;
    location.assign("/dashboard/sign-in?next=" + encodeURIComponent(here));
  }

  async function api(url, options = {}) {
    const headers = Object.assign({}, options.headers || {}, { Authorization: "Bearer " + token });
    const response = await fetch(url, Object.assign({}, options, {
      headers, credentials: "same-origin", cache: "no-store",
    }));
    if (response.status === 401) {
      sessionStorage.removeItem(TOKEN);
      signIn();
      throw new Error("the token is no longer valid");
    }
    return response;
  }

  // ---- fragments -------------------------------------------------------------------------
  const fragments = [...document.querySelectorAll("[data-fragment]")];

  async function load(el, minPosition) {
    const params = new URLSearchParams("keepQuery" in el.dataset ? location.search : "");
    if (minPosition) params.set("min_position", minPosition);
    const query = params.toString();
    const url = el.dataset.fragment + (query ? "?" + query : "");
    for (let attempt = 0; attempt < 5; attempt += 1) {
      const response = await api(url);
      if (response.status === 503) {
        await new Promise((done) => setTimeout(done, 500));
        continue;
      }
      const focused = document.activeElement;
      const keep = focused && el.contains(focused)
        ? (focused.id ? "#" + CSS.escape(focused.id)
          : focused.getAttribute("href") ? `[href="${CSS.escape(focused.getAttribute("href"))}"]`
            : null)
        : null;
      // Server-rendered HTML from this origin, every value escaped by the server.
      el.innerHTML = await response.text();
      el.setAttribute("aria-busy", "false");
      bindForms(el);
      if (keep) {
        const again = el.querySelector(keep);
        if (again) again.focus();
      }
      return;
    }
    say("The read tables are behind; reload in a moment.");
  }

  async function refresh(minPosition, all) {
    const live = fragments.filter((el) => all || !("static" in el.dataset));
    await Promise.all(live.filter((el) => !el.hidden).map((el) => load(el, minPosition)));
  }

  // ---- forms -----------------------------------------------------------------------------
  function changed(el) {
    if (el.type === "checkbox") return el.checked !== el.defaultChecked;
    if (el.tagName === "SELECT") return [...el.options].some((o) => o.selected !== o.defaultSelected);
    return el.value !== el.defaultValue;
  }

  function valueOf(el) {
    if (el.type === "checkbox") return el.checked;
    if (el.tagName === "SELECT" && el.multiple) return [...el.selectedOptions].map((o) => o.value);
    if ("list" in el.dataset) return el.value.split(",").map((s) => s.trim()).filter(Boolean);
    // A datetime-local input of the dashboard's UTC times, as RFC 3339.
    if ("utc" in el.dataset && el.value) return el.value + (el.value.length === 16 ? ":00Z" : "Z");
    if ("json" in el.dataset && el.value.trim() !== "") {
      try { return JSON.parse(el.value); } catch (_) { return el.value; }
    }
    return el.value;
  }

  const isEmpty = (value) => value === "" || (Array.isArray(value) && value.length === 0);

  function clearErrors(form) {
    for (const p of form.querySelectorAll("[data-error-for]")) p.textContent = "";
    for (const el of form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
  }

  function showError(form, field, message) {
    const name = field.split(".")[0];
    let target = form.querySelector(`[data-error-for="${CSS.escape(name)}"]`);
    const control = name && form.elements.namedItem(name);
    if (!target || !name) target = form.querySelector('[data-error-for=""]');
    target.textContent = target.textContent ? target.textContent + " " + message : message;
    if (control && control.setAttribute) {
      control.setAttribute("aria-invalid", "true");
      if (target.id) control.setAttribute("aria-describedby", target.id);
    }
    return control && control.focus ? control : target;
  }

  function showProblem(form, status, problem) {
    let first = null;
    if (Array.isArray(problem.errors) && problem.errors.length) {
      for (const error of problem.errors) {
        const where = showError(form, String(error.field || ""), String(error.message || "invalid"));
        first = first || where;
      }
    } else if (status === 412) {
      first = showError(form, "", "Someone changed this incident after you opened the form. " +
        "Reload the page to see the change, then try again.");
    } else {
      first = showError(form, "", problem.detail || `The request failed (HTTP ${status}).`);
    }
    if (first && first.focus) {
      if (!first.hasAttribute("tabindex") && !first.matches("input, select, textarea, button")) {
        first.setAttribute("tabindex", "-1");
      }
      first.focus();
    }
  }

  function bindForms(scope) {
    for (const form of scope.querySelectorAll("form.api-form")) {
      form.addEventListener("submit", (event) => {
        event.preventDefault();
        submit(form);
      });
    }
    for (const input of scope.querySelectorAll("textarea[data-preview]")) bindPreview(input);
  }

  // A live preview of Markdown, rendered and sanitised by the server exactly as the public
  // page will show it (the answer is the server's sanitised HTML).
  function bindPreview(input) {
    const shown = document.getElementById(input.dataset.preview);
    let timer = null;
    let asked = 0;
    input.addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(async () => {
        const mine = ++asked;
        if (!input.value) {
          shown.textContent = "";
          return;
        }
        try {
          const response = await api("/api/v1/postmortems/preview", {
            method: "POST",
            headers: { "Content-Type": "application/json", Accept: "application/json" },
            body: JSON.stringify({ body: input.value }),
          });
          const answer = await response.json();
          if (mine !== asked) return; // a newer preview is on its way
          if (response.ok) shown.innerHTML = answer.html;
          else shown.textContent = answer.detail || `No preview (HTTP ${response.status}).`;
        } catch (error) {
          if (mine === asked) shown.textContent = "No preview: " + error.message;
        }
      }, 250);
    });
  }

  async function submit(form) {
    clearErrors(form);
    const confirm = form.querySelector("[data-confirm]");
    if (confirm && !confirm.checked) {
      showProblem(form, 0, { errors: [{ field: "confirm", message: "Tick the box to confirm." }] });
      return;
    }
    const method = form.dataset.method;
    const body = {};
    for (const el of form.elements) {
      if (!el.name || el.disabled) continue;
      if ("changedOnly" in form.dataset && !changed(el)) continue;
      const value = valueOf(el);
      if (isEmpty(value) && (el.tagName === "SELECT" || "omitEmpty" in el.dataset)) continue;
      body[el.name] = value;
    }
    if ("changedOnly" in form.dataset && Object.keys(body).length === 0) {
      showError(form, "", "Nothing was changed.");
      return;
    }
    const headers = { Accept: "application/json" };
    if (method !== "DELETE") headers["Content-Type"] = "application/json";
    if (form.dataset.ifMatch) headers["If-Match"] = `"${form.dataset.ifMatch}"`;
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const response = await api(form.dataset.url, {
        method, headers, body: method === "DELETE" ? undefined : JSON.stringify(body),
      });
      if (!response.ok) {
        let problem = {};
        try { problem = await response.json(); } catch (_) { /* not JSON */ }
        showProblem(form, response.status, problem);
        return;
      }
      const position = response.headers.get("Store-Position");
      const then = form.dataset.then;
      if (then === "open") {
        const created = await response.json();
        location.assign("/dashboard/incidents/" + encodeURIComponent(created.id));
      } else if (then === "list") {
        location.assign("/dashboard");
      } else if (then === "secret") {
        const created = await response.json();
        const shown = form.querySelector("[data-secret]");
        shown.textContent = created.secret
          ? "Added. Its signing secret, shown only now: " + created.secret
          : "Added.";
        shown.hidden = false;
        form.reset();
        await refresh(null, true);
      } else if (then === "report") {
        const answer = await response.json();
        await refresh(null, true);
        const where = document.querySelector("[data-report]");
        if (where) where.textContent = report(answer);
        else say(report(answer));
      } else {
        await refresh(position, true);
        say("Saved.");
      }
    } catch (error) {
      showError(form, "", "Could not reach the server: " + error.message);
    } finally {
      button.disabled = false;
    }
  }

  // What an integration's test or replay answered, in words.
  function report(answer) {
    if ("outcome" in answer) {
      return answer.outcome === "delivered"
        ? `Test delivered (answer ${answer.status_code}).`
        : `Test failed: ${answer.error}.`;
    }
    if ("head" in answer) return `Replaying what was stored after position ${answer.after}.`;
    return "Done.";
  }

  // ---- live refresh ----------------------------------------------------------------------
  // EventSource cannot send an Authorization header, so the stream is read with fetch().
  async function follow(onEvent) {
    let last = null;
    let delay = 1000;
    for (;;) {
      try {
        const headers = { Accept: "text/event-stream" };
        if (last) headers["Last-Event-ID"] = last;
        const response = await api("/api/v1/events/stream", { headers });
        if (!response.ok || !response.body) throw new Error("HTTP " + response.status);
        say("Live: changes appear as they happen.");
        if (!last) onEvent(null, null); // catch what happened before the stream opened
        delay = 1000;
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value;
          const blocks = buffer.split(/\r?\n\r?\n/);
          buffer = blocks.pop();
          for (const block of blocks) {
            let id = null;
            const data = [];
            for (const line of block.split(/\r?\n/)) {
              if (line.startsWith("id:")) id = line.slice(3).trim();
              else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
            }
            if (id) last = id;
            if (!data.length) continue;
            let event = null;
            try { event = JSON.parse(data.join("\n")); } catch (_) { /* keep null */ }
            onEvent(event, id);
          }
        }
      } catch (_) { /* reconnect below */ }
      say("Live updates paused; reconnecting…");
      await new Promise((done) => setTimeout(done, delay));
      delay = Math.min(delay * 2, 30000);
    }
  }

  let timer = null;
  let highest = 0;
  function schedule(position) {
    if (position) highest = Math.max(highest, Number(position));
    clearTimeout(timer);
    timer = setTimeout(async () => {
      await refresh(highest || null, false);
      say("Live: updated " + new Date().toLocaleTimeString() + ".");
    }, 150);
  }

  bindForms(document);
  if (page === "new" && !atLeast("writer")) {
    for (const form of document.querySelectorAll("form.api-form")) {
      showError(form, "", "Your token is read-only: you need a writer token to declare incidents.");
    }
  }
  refresh(null, true);
  if (page === "overview" || page === "reports") {
    follow((_, id) => schedule(id));
  } else if (page === "integrations") {
    follow((_, id) => schedule(id));
    // Delivery moves without new events too (retries, recoveries): look again every 5 s,
    // unless someone is typing in the list.
    setInterval(() => {
      const focused = document.activeElement;
      if (!focused || !focused.closest("[data-fragment]")) schedule(null);
    }, 5000);
  } else if (page === "incident") {
    const mine = root.dataset.incident;
    follow((event, id) => { if (!event || event.subject === mine) schedule(id); });
  }

  // ---- sign-in ---------------------------------------------------------------------------
  function bindSignIn() {
    const form = document.getElementById("sign-in");
    const error = form.querySelector('[data-error-for="token"]');
    const input = form.elements.namedItem("token");
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      error.textContent = "";
      input.removeAttribute("aria-invalid");
      const value = input.value.trim();
      let message = "";
      if (!value) {
        message = "Enter a token.";
      } else {
        const response = await fetch("/dashboard/session", {
          headers: { Authorization: "Bearer " + value }, cache: "no-store",
        });
        if (response.ok) {
          const body = await response.json();
          sessionStorage.setItem(TOKEN, value);
          sessionStorage.setItem(ROLE, body.role);
          const next = new URLSearchParams(location.search).get("next") || "";
          location.assign(next.startsWith("/dashboard") ? next : "/dashboard");
          return;
        }
        message = response.status === 401 ? "This token is not valid." : `Sign-in failed (HTTP ${response.status}).`;
      }
      error.textContent = message;
      input.setAttribute("aria-invalid", "true");
      input.focus();
    });
  }
})();
