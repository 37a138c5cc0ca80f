// Plain DOM, no framework: the page must work on any branch browser without a build step.
const el = (tag, attrs = {}, text = "") => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text) e.textContent = text;
  return e;
};
// The session token lives in this tab only (sessionStorage) and goes in a header, so
// closing the tab signs out and another site cannot act with it.
const $ = id => document.getElementById(id);
const token = () => sessionStorage.getItem("station-token");
const say = text => { $("msg").textContent = text; };
let me = null;
// What each role may do, as the agent enforces it (this only hides what would be refused).
const MAY = {
  operator: ["reports"], supervisor: ["reports", "stock"], admin: ["staff"], auditor: ["reports", "audit"],
};
const may = what => !!me && (MAY[me.role] || []).includes(what);
async function call(path, init = {}) {
  const headers = { "content-type": "application/json" };
  if (token()) headers.authorization = `Bearer ${token()}`;
  const r = await fetch(path, { ...init, headers });
  if (r.status === 401) { sessionStorage.removeItem("station-token"); showSignIn(); }
  return r;
}
function showSignIn() { $("signin").hidden = false; $("desk").hidden = true; $("who").hidden = true; $("approve").hidden = true; }
function showDesk(member) {
  me = member;
  $("signin").hidden = true; $("desk").hidden = false;
  $("who").hidden = !member || member.id === "console";
  $("member").textContent = member ? member.name : "";
  $("role").textContent = member && member.role ? `(${member.role})` : "";
  $("stock-box").hidden = !may("reports");
  $("load").hidden = !may("stock");
  $("reports").hidden = !may("reports");
  $("get-audit").hidden = !may("audit");
  $("staff-box").hidden = !may("staff");
  if (!$("report-day").value) $("report-day").value = new Date().toISOString().slice(0, 10);
}
$("signin").onsubmit = async ev => {
  ev.preventDefault();
  const r = await fetch("/api/session", { method: "POST", headers: { "content-type": "application/json" },
    body: JSON.stringify({ staff: $("staff").value, pin: $("pin").value }) });
  $("pin").value = "";
  const t = await r.json().catch(() => ({}));
  if (!r.ok) { say(t.message || "Sign-in refused."); return; }
  sessionStorage.setItem("station-token", t.token);
  say(""); showDesk(t.member); refresh();
};
$("signout").onclick = async () => {
  await call("/api/session", { method: "DELETE" });
  sessionStorage.removeItem("station-token"); me = null; say("Signed out."); showSignIn();
};
async function act(path, body) {
  const r = await call(path, { method: "POST", body: JSON.stringify(body || {}) });
  const t = await r.json().catch(() => ({}));
  say(r.ok ? (t.message || "Done.") : (t.message || "Refused."));
  refresh();
}
// Dual control: the second supervisor types their id and PIN on this workstation.
let pending = null;
function askApproval(path) {
  pending = path;
  $("approve").hidden = false;
  $("approver").value = ""; $("approver-pin").value = "";
  $("approver").focus();
}
$("approve").onsubmit = async ev => {
  ev.preventDefault();
  const body = { approver: { staff: $("approver").value, pin: $("approver-pin").value } };
  $("approver-pin").value = "";
  $("approve").hidden = true;
  const path = pending; pending = null;
  if (path) await act(path, body);
};
$("approve-cancel").onclick = () => { pending = null; $("approve").hidden = true; $("approver-pin").value = ""; };
function actions(job) {
  const td = el("td");
  for (const a of job.actions) {
    const b = el("button", { class: a.style }, a.label);
    b.onclick = () => {
      if (a.confirm && !confirm(a.confirm)) return;
      const path = `/api/jobs/${encodeURIComponent(job.operationId)}/${a.action}`;
      if (a.needsApproval) askApproval(path); else act(path, {});
    };
    td.appendChild(b);
    td.appendChild(document.createTextNode(" "));
  }
  return td;
}
function age(since) {
  const s = Math.max(0, Math.round((Date.now() - Date.parse(since)) / 1000));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}
function customer(j) {
  const td = el("td");
  td.appendChild(el("div", { class: "holder" }, j.holder || "—"));
  if (j.product) td.appendChild(el("div", { class: "product" }, j.product));
  return td;
}
function status(j) {
  const td = el("td", { class: "state" });
  td.appendChild(el("div", {}, j.stateLabel));
  if (j.step) {
    const bar = el("div", { class: "bar", title: `step ${j.step.n} of ${j.step.of}` });
    const fill = el("div"); fill.style.width = `${Math.round(100 * j.step.n / j.step.of)}%`;
    bar.appendChild(fill); td.appendChild(bar);
  }
  if (j.attempt > 1 || j.state === "rejected") td.appendChild(el("div", { class: "product" }, `attempt ${j.attempt} of ${j.attempts}`));
  return td;
}
function todo(j) {
  const td = el("td");
  if (j.reason && ["rejected", "spoiled", "failed", "in_doubt", "waiting_for_staff"].includes(j.state)) {
    td.appendChild(el("div", { class: "reason" }, j.reason));
  }
  if (j.hint) td.appendChild(el("div", {}, j.hint));
  return td;
}
async function refreshStaff() {
  if (!may("staff")) return;
  const r = await call("/api/staff");
  if (!r.ok) return;
  const s = await r.json();
  $("staff-list").replaceChildren(...s.accounts.map(a => {
    const tr = el("tr");
    for (const v of [a.id, a.name, a.role]) tr.appendChild(el("td", {}, v));
    return tr;
  }));
  $("staff-how").textContent = s.managedWith;
}
async function refreshCounter() {
  if (!may("reports")) return;
  const r = await call("/api/stock");
  if (!r.ok) return;
  const s = await r.json();
  $("stock").replaceChildren(...s.products.map(p => {
    const tr = el("tr");
    for (const v of [p.product, p.loaded, p.used, p.issued, p.spoiled]) tr.appendChild(el("td", {}, String(v)));
    tr.appendChild(el("td", p.low ? { class: "low" } : {}, p.low ? `${p.remaining} — low, load blanks` : String(p.remaining)));
    return tr;
  }));
}
$("load").onsubmit = async ev => {
  ev.preventDefault();
  const r = await call("/api/stock", { method: "POST", body: JSON.stringify({
    product: $("load-product").value, count: Number($("load-count").value), batch: $("load-batch").value }) });
  const t = await r.json().catch(() => ({}));
  say(t.message || (r.ok ? "Recorded." : "Refused."));
  if (r.ok) { $("load-count").value = ""; $("load-batch").value = ""; }
  refreshCounter();
};
async function download(path, name) {
  const r = await call(path);
  if (!r.ok) { const t = await r.json().catch(() => ({})); say(t.message || "Refused."); return; }
  const url = URL.createObjectURL(await r.blob());
  const a = el("a", { href: url, download: name });
  document.body.appendChild(a); a.click(); a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}
$("get-reconciliation").onclick = () => {
  const d = $("report-day").value;
  download(`/api/reports/reconciliation?day=${encodeURIComponent(d)}`, `reconciliation-${d}.csv`);
};
$("get-audit").onclick = () => {
  const d = $("report-day").value;
  download(`/api/audit?day=${encodeURIComponent(d)}`, `audit-${d}.jsonl`);
};
async function refresh() {
  if (!$("signin").hidden) return;
  try {
    const sr = await call("/api/status");
    if (!sr.ok) return;
    const s = await sr.json();
    document.getElementById("station").textContent = s.persoStation;
    const devs = document.getElementById("devices");
    devs.replaceChildren(...s.devices.map(d => {
      const box = el("div", { class: "dev" });
      box.appendChild(el("div", {}, d.name));
      box.appendChild(el("div", { class: d.ok ? "ok" : "bad" }, d.message));
      return box;
    }));
    const jr = await call("/api/jobs");
    if (!jr.ok) return;
    const jobs = await jr.json();
    const body = document.getElementById("jobs");
    body.replaceChildren(...jobs.map(j => {
      const tr = el("tr", ["in_doubt", "awaiting_removal", "rejected"].includes(j.state) ? { class: "doubt" } : {});
      tr.appendChild(el("td", {}, j.cardId));
      tr.appendChild(customer(j));
      tr.appendChild(el("td", {}, j.maskedPan || "—"));
      tr.appendChild(el("td", {}, age(j.createdAt)));
      tr.appendChild(el("td", {}, j.line || ""));
      tr.appendChild(status(j));
      tr.appendChild(todo(j));
      tr.appendChild(actions(j));
      return tr;
    }));
    await refreshCounter();
    await refreshStaff();
  } catch (e) {
    document.getElementById("msg").textContent = "The station agent is not answering.";
  }
}
(async () => {
  const s = await (await call("/api/session")).json().catch(() => ({}));
  if (s.signInRequired && !s.member) showSignIn(); else { showDesk(s.member); refresh(); }
  setInterval(refresh, 1500);
})();
