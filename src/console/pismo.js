// The Pismo counter (issue 12): new card for a customer, and the requests in the queue
// until their order arrives. Uses el/call/say/act from console.js.
let pismoOn = false;
async function pismoSettings() {
  const r = await call("/api/pismo");
  if (!r.ok) return;
  const s = await r.json();
  pismoOn = s.enabled;
  $("pismo-new").hidden = !s.enabled;
  $("pismo-product").replaceChildren(...s.products.map(p => el("option", { value: p }, p)));
}
$("pismo-new").onsubmit = async ev => {
  ev.preventDefault();
  const body = { customerId: $("pismo-customer").value, printedName: $("pismo-name").value,
    product: $("pismo-product").value || null };
  const r = await call("/api/pismo/requests", { method: "POST", body: JSON.stringify(body) });
  const t = await r.json().catch(() => ({}));
  say(r.ok ? t.message : (t.message || "Refused."));
  if (r.ok) { $("pismo-customer").value = ""; $("pismo-name").value = ""; }
  pismoRefresh();
};
const pismoLabels = { again: ["Make again", "primary", "Send this card to Pismo to be made again?"],
  retry: ["Retry", "", null] };
async function pismoRefresh() {
  if (!$("signin").hidden) return;
  if (!pismoOn) { await pismoSettings().catch(() => {}); if (!pismoOn) return; }
  const r = await call("/api/pismo/requests");
  if (!r.ok) return;
  const list = await r.json();
  $("pismo-requests").replaceChildren(...list.filter(q => !q.operationId || q.actions.length).map(q => {
    const tr = el("tr");
    tr.appendChild(el("td", {}, q.cardId ? `Pismo ${q.cardId}` : "(new)"));
    tr.appendChild(el("td", {}, q.maskedPan || `customer ${q.customerId} · ${q.printedName}`));
    tr.appendChild(el("td", {}, q.resendCount ? `made again ×${q.resendCount}` : ""));
    tr.appendChild(el("td", { class: "state" }, q.stateLabel));
    tr.appendChild(el("td", {}, q.message || ""));
    const td = el("td");
    for (const a of q.actions) {
      const [label, style, ask] = pismoLabels[a];
      const b = el("button", { class: style }, label);
      b.onclick = () => { if (ask && !confirm(ask)) return;
        act(`/api/pismo/requests/${encodeURIComponent(q.requestId)}/${a}`, {}).then(pismoRefresh); };
      td.appendChild(b);
    }
    tr.appendChild(td);
    return tr;
  }));
}
(async () => { await pismoSettings().catch(() => {}); pismoRefresh(); setInterval(pismoRefresh, 1500); })();
