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
async function call(path, init = {}) {
  const headers = { "content-type": "application/json" };
  if (token()) headers.authorization = `Bearer ${token()}`;
  const r = await fetch(path, { ...init, headers });
  if (r.status === 401) { sessionStorage.removeItem("station-token"); showSignIn(); }
  return r;
}
function showSignIn() { $("signin").hidden = false; $("desk").hidden = true; $("who").hidden = true; }
function showDesk(member) {
  $("signin").hidden = true; $("desk").hidden = false;
  $("who").hidden = !member || member.id === "console";
  $("member").textContent = member ? member.name : "";
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
  sessionStorage.removeItem("station-token"); say("Signed out."); showSignIn();
};
async function act(path, body) {
  const r = await call(path, { method: "POST", body: JSON.stringify(body || {}) });
  const t = await r.json().catch(() => ({}));
  say(r.ok ? (t.message || "Done.") : (t.message || "Refused."));
  refresh();
}
function actions(job) {
  const td = el("td");
  for (const a of job.actions) {
    const b = el("button", { class: a.style }, a.label);
    b.onclick = () => {
      if (a.confirm && !confirm(a.confirm)) return;
      act(`/api/jobs/${encodeURIComponent(job.operationId)}/${a.action}`, {});
    };
    td.appendChild(b);
    td.appendChild(document.createTextNode(" "));
  }
  return td;
}
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
      const tr = el("tr", j.state === "in_doubt" || j.state === "awaiting_removal" ? { class: "doubt" } : {});
      tr.appendChild(el("td", {}, j.cardId));
      tr.appendChild(el("td", {}, j.maskedPan || "—"));
      tr.appendChild(el("td", {}, j.line || ""));
      tr.appendChild(el("td", { class: "state" }, j.stateLabel));
      tr.appendChild(el("td", {}, j.hint || ""));
      tr.appendChild(actions(j));
      return tr;
    }));
  } catch (e) {
    document.getElementById("msg").textContent = "The station agent is not answering.";
  }
}
(async () => {
  const s = await (await call("/api/session")).json().catch(() => ({}));
  if (s.signInRequired && !s.member) showSignIn(); else { showDesk(s.member); refresh(); }
  setInterval(refresh, 1500);
})();
