/* The operator portal: reads the portal's JSON API and draws tables and charts.
 * Every URL is relative so the page works at /portal/ and behind Home Assistant
 * ingress. Text from the database is only ever set with textContent. */
"use strict";

(() => {
  const REFRESH_MS = 10000;
  const PAGE_SIZE = 25;
  const state = {
    view: "overview",
    session: null,
    charts: {},
    entities: { page: 0, q: "", type: "all", selected: null },
    settlements: { page: 0, failed: false },
    payments: { page: 0, kind: "payouts" },
    statements: { page: 0, previewPage: 0, period: null },
    timer: null,
    reads: new Set(), // refreshes in flight
    leaving: false, // signing out
  };

  // ---- helpers ---------------------------------------------------------------

  const $ = (selector) => document.querySelector(selector);

  function el(tag, attributes = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attributes)) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  const integer = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
  const decimal = new Intl.NumberFormat(undefined, { maximumFractionDigits: 3 });

  const iota = (value) => (value === null || value === undefined ? "–" : `${integer.format(value)} i`);
  const kwh = (value) => (value === null || value === undefined ? "–" : `${decimal.format(value)} kWh`);
  const price = (value) => (value === null || value === undefined ? "–" : `${decimal.format(value)} i/kWh`);
  const time = (ms) => (ms ? new Date(ms).toLocaleString() : "–");
  const clock = (ms) => new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });

  async function api(path) {
    const response = await fetch(`api/${path}`, { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (response.status === 401) {
      if (!state.leaving) window.location.href = "login";
      throw new Error("signed out");
    }
    const body = await response.json();
    if (!response.ok || !body.success) throw new Error(body.message || `HTTP ${response.status}`);
    return body.data;
  }

  function showError(error) {
    const box = $("#error");
    if (error) {
      box.textContent = `Could not load data: ${error.message || error}`;
      box.hidden = false;
    } else {
      box.hidden = true;
    }
  }

  function card(title, value, sub, kind) {
    return el("div", { class: kind ? `card ${kind}` : "card" }, el("h3", { text: title }), el("div", { class: "value", text: value }),
      sub ? el("div", { class: "sub", text: sub }) : null);
  }

  function fillTable(table, rows, columns) {
    const body = table.querySelector("tbody");
    body.replaceChildren();
    if (!rows.length) {
      body.append(el("tr", {}, el("td", { class: "empty", colspan: String(columns), text: "Nothing yet." })));
    }
    for (const row of rows) body.append(row);
  }

  function pager(container, page, onPage) {
    container.replaceChildren(
      el("button", { type: "button", disabled: page.page <= 0, onclick: () => onPage(page.page - 1) }, "‹ Previous"),
      el("span", { text: `Page ${page.totalPages ? page.page + 1 : 0} of ${page.totalPages} · ${integer.format(page.totalItems)} in all` }),
      el("button", { type: "button", disabled: page.page + 1 >= page.totalPages, onclick: () => onPage(page.page + 1) }, "Next ›"),
    );
  }

  // The node's explorer as this browser reaches it (null when unknown).
  function explorerBase() {
    const explorer = state.session && state.session.explorer;
    if (explorer && explorer.url) return explorer.url;
    if (explorer && explorer.port) {
      return `${window.location.protocol}//${window.location.hostname}:${explorer.port}${explorer.path || "/explorer/"}`;
    }
    return null;
  }

  function explorerLink(kind, hash) {
    if (!hash) return el("span", { text: "–" });
    const base = explorerBase();
    const label = el("span", { class: "hash", text: `${hash.slice(0, 12)}…` });
    if (!base) return label;
    return el("a", { href: `${base}#/${kind}/${hash}`, target: "_blank", rel: "noopener", title: hash }, label);
  }

  // A payment's or payout's state; a problem (why it cannot confirm) is shown with it.
  function status(text, problem) {
    const good = ["confirmed", "recorded"].includes(text);
    const kind = good ? "ok" : text === "dropped" ? "bad" : "pending";
    const label = el("span", { class: kind, text, title: problem || null });
    return problem ? el("span", {}, label, el("div", { class: "problem muted", text: problem })) : label;
  }

  function check(ok) {
    return el("span", { class: ok ? "ok" : "bad", text: ok ? "✓ holds" : "✗ violated" });
  }

  function drawChart(id, config) {
    if (typeof Chart === "undefined") return;
    const existing = state.charts[id];
    if (existing && existing.config.type === config.type) {
      existing.data = config.data;
      existing.update("none");
      return;
    }
    if (existing) existing.destroy();
    state.charts[id] = new Chart(document.getElementById(id), config);
  }

  function chartOptions(yTitle) {
    return {
      responsive: true,
      maintainAspectRatio: false,
      animation: false,
      interaction: { mode: "index", intersect: false },
      scales: { y: { beginAtZero: true, title: { display: true, text: yTitle } } },
      plugins: { legend: { position: "bottom" } },
    };
  }

  // ---- views -----------------------------------------------------------------

  async function loadOverview() {
    const [overview, prices] = await Promise.all([api("overview"), api("prices?limit=288")]);
    const p = overview.producers;
    const c = overview.consumers;
    const g = overview.grid;
    const s = overview.settlements;
    $("#cards").replaceChildren(...[
      card("Producers", integer.format(p.active), `${kwh(p.outputKwh)} delivered`),
      card("Consumers", integer.format(c.active), `${kwh(c.usageKwh)} used`),
      card("Consensus price", price(s.latestPrice), s.latestSlotEnd ? `slot ending ${clock(s.latestSlotEnd)}` : "no slot settled yet"),
      card("Billed to consumers", iota(c.billed), `${iota(c.paid)} paid · ${iota(c.pendingPayments)} confirming · ${iota(c.outstanding)} outstanding`),
      c.droppedPaymentCount
        ? card("Dropped payments", iota(c.droppedPayments), `${integer.format(c.droppedPaymentCount)} that could never confirm: see Payments`, "warning")
        : null,
      card("Earned by producers", iota(p.earned), `${iota(p.paid)} paid · ${iota(p.pendingPayouts)} on the way`),
      card("Grid running costs", iota(g.runningCosts), `imports ${kwh(overview.energy.importedKwh)}`),
      card("Grid income", iota(g.gridCut + g.exportRevenue), `cut ${iota(g.gridCut)} · exports ${iota(g.exportRevenue)}`),
      card("Distribution available", iota(g.distributionAvailable), "received − paid out − costs − cut"),
      card("Settled slots", integer.format(s.count),
        s.failedInvariants ? `${s.failedInvariants} with failed invariants` : "all invariants hold"),
    ].filter(Boolean));
    const labels = prices.map((row) => clock(row.slotEnd));
    drawChart("price-chart", {
      type: "line",
      data: {
        labels,
        datasets: [
          { label: "Consensus price", data: prices.map((row) => row.price), borderColor: "#15803d", backgroundColor: "#15803d", spanGaps: true, pointRadius: 2 },
          { label: "Retail import", data: prices.map((row) => row.importPrice), borderColor: "#b91c1c", borderDash: [6, 4], pointRadius: 0 },
          { label: "Feed-in export", data: prices.map((row) => row.exportPrice), borderColor: "#b45309", borderDash: [2, 3], pointRadius: 0 },
        ],
      },
      options: chartOptions("IOTA per kWh"),
    });
    drawChart("energy-chart", {
      type: "bar",
      data: {
        labels,
        datasets: [
          { label: "Produced", data: prices.map((row) => row.producedKwh), backgroundColor: "#facc15" },
          { label: "Consumed", data: prices.map((row) => row.consumedKwh), backgroundColor: "#2563eb" },
        ],
      },
      options: chartOptions("kWh"),
    });
  }

  async function loadEntities() {
    const e = state.entities;
    const query = new URLSearchParams({ type: e.type, q: e.q, page: String(e.page), pageSize: String(PAGE_SIZE) });
    const page = await api(`entities?${query}`);
    const rows = page.items.map((item) => {
      const producer = item.type === "producer";
      return el("tr", { class: "clickable", "data-id": item.id, onclick: () => { window.location.hash = `#entities/${encodeURIComponent(item.id)}`; } },
        el("td", {}, el("strong", { text: item.name || item.id }), item.active ? null : el("span", { class: "muted", text: " (removed)" })),
        el("td", { text: producer ? "producer" : "consumer" }),
        el("td", { class: "num", text: decimal.format(item.energyKwh) }),
        el("td", { class: "num", text: iota(producer ? item.earned : item.billed) }),
        el("td", { class: "num", text: iota(item.paid) }),
        el("td", { class: "num", text: iota(item.pending) }),
        el("td", { class: "num", text: producer ? "–" : iota(item.outstanding) }),
        el("td", { text: time(item.lastReadingAt) }),
      );
    });
    fillTable($("#entity-table"), rows, 8);
    pager($("#entity-pager"), page, (next) => { e.page = next; refresh(); });
    if (e.selected) await loadEntity(e.selected);
    else $("#entity-detail").hidden = true;
  }

  function detailTable(title, headers, rows) {
    const table = el("table", { class: "data" }, el("thead", {}, el("tr", {}, ...headers.map((h) => el("th", { text: h })))), el("tbody"));
    fillTable(table, rows, headers.length);
    return el("section", {}, el("h2", { text: title }), table);
  }

  async function loadEntity(id) {
    const item = await api(`entities/${encodeURIComponent(id)}`);
    const producer = item.type === "producer";
    $("#entity-detail").hidden = false;
    $("#entity-name").textContent = item.name || item.id;
    $("#entity-meta").textContent = `${item.type} · registration ${item.id} · registered ${time(item.createdAt)}${item.active ? "" : ` · removed ${time(item.removedAt)}`}`;
    $("#entity-cards").replaceChildren(
      card(producer ? "Output" : "Usage", kwh(item.energyKwh), `last reading ${time(item.lastReadingAt)}`),
      card(producer ? "Earned" : "Billed", iota(producer ? item.earned : item.billed),
        !producer && item.charged ? `${iota(item.charged)} more on final statements (fees, credit notes)` : null),
      card("Paid", iota(item.paid), [item.pending ? `${iota(item.pending)} confirming` : "", item.dropped ? `${iota(item.dropped)} dropped` : ""].filter(Boolean).join(" · ") || null),
      producer ? card("Sources", integer.format(item.sources.length)) : card("Outstanding", iota(item.outstanding)),
    );
    $("#entity-chart-title").textContent = producer ? "Output per reading (kWh) and asking price" : "Usage per reading (kWh)";
    const datasets = [{ label: producer ? "Output" : "Usage", data: item.series.map((p) => p.kwh), backgroundColor: producer ? "#facc15" : "#2563eb", yAxisID: "y" }];
    const options = chartOptions("kWh");
    if (producer) {
      datasets.push({ type: "line", label: "Asking price", data: item.series.map((p) => p.price), borderColor: "#15803d", yAxisID: "price", pointRadius: 1 });
      options.scales.price = { position: "right", beginAtZero: true, title: { display: true, text: "IOTA per kWh" }, grid: { drawOnChartArea: false } };
    }
    drawChart("entity-chart", { type: "bar", data: { labels: item.series.map((p) => clock(p.endTime)), datasets }, options });

    const tables = [];
    if (producer) {
      tables.push(detailTable("Sources", ["Name", "Kind", "Registration", "Updated"],
        item.sources.map((s) => el("tr", {}, el("td", { text: s.name }), el("td", { text: s.type || "–" }), el("td", { class: "hash", text: s.id }), el("td", { text: time(s.updatedAt) })))));
      tables.push(detailTable("Payouts", ["Slot", "Energy", "Amount", "Method", "Status", "Bundle"],
        item.payouts.map((p) => el("tr", {}, el("td", { text: time(p.slotStart) }), el("td", { class: "num", text: kwh(p.energyKwh) }), el("td", { class: "num", text: iota(p.amount) }), el("td", { text: p.method }), el("td", {}, status(p.status)), el("td", {}, explorerLink("bundle", p.bundle))))));
    } else {
      tables.push(detailTable("Bills", ["Slot", "Usage", "Adjustment", "Amount", "Requested"],
        item.bills.map((b) => el("tr", {}, el("td", { text: time(b.slotStart) }), el("td", { class: "num", text: kwh(b.usageKwh) }), el("td", { class: "num", text: kwh(b.adjustmentKwh) }), el("td", { class: "num", text: iota(b.amount) }), el("td", { text: b.requested ? "yes" : "not yet" })))));
      tables.push(detailTable("Payments", ["Seen", "Amount", "Status", "Bundle", "Address"],
        item.payments.map((p) => el("tr", {}, el("td", { text: time(p.seenAt) }), el("td", { class: "num", text: iota(p.amount) }), el("td", {}, status(p.status, p.problem)), el("td", {}, explorerLink("bundle", p.bundle)), el("td", {}, explorerLink("address", p.address))))));
    }
    const statements = await api(`statements?${new URLSearchParams({ registrationId: item.id, pageSize: "12" })}`);
    tables.push(detailTable("Statements", ["No.", "Kind", "Period", "Carried over", "Change", "Balance", "Download"],
      statements.items.map((d) => el("tr", {}, el("td", { class: "num", text: String(d.number) }),
        el("td", { text: d.kind === "credit_note" ? `credit note for no. ${d.refersTo}` : "statement" }), el("td", { text: d.period }),
        el("td", { class: "num", text: iota(d.openingBalance) }), el("td", { class: "num", text: iota(d.balanceChange) }),
        el("td", { class: "num", text: iota(d.closingBalance) }), el("td", {}, downloads(`statements/${d.number}`))))));
    tables.push(detailTable("Channels followed", ["Role", "Root", "Messages read", "Hello", "Skipped", "Last read", "Last error"],
      item.channels.map((c) => el("tr", {}, el("td", { text: c.role }), el("td", { class: "hash", text: c.root }), el("td", { class: "num", text: integer.format(c.messagesRead) }), el("td", { text: c.helloSeen ? "seen" : "not yet" }), el("td", { class: "num", text: integer.format(c.skippedMessages) }), el("td", { text: time(c.lastReadAt) }), el("td", { text: c.lastError || "–" })))));
    $("#entity-tables").replaceChildren(...tables);
  }

  async function loadSettlements() {
    const s = state.settlements;
    const query = new URLSearchParams({ page: String(s.page), pageSize: String(PAGE_SIZE), failed: s.failed ? "1" : "0" });
    const page = await api(`settlements?${query}`);
    const rows = page.items.map((row) => el("tr", {},
      el("td", { text: `${time(row.slotStart)} – ${clock(row.slotEnd)}` }),
      el("td", { text: row.strategy }),
      el("td", { class: "num", text: price(row.price) }),
      el("td", { class: "num", text: kwh(row.producedKwh) }),
      el("td", { class: "num", text: kwh(row.consumedKwh) }),
      el("td", { class: "num", text: kwh(row.importedKwh) }),
      el("td", { class: "num", text: kwh(row.exportedKwh) }),
      el("td", { class: "num", text: iota(row.consumerCharges) }),
      el("td", { class: "num", text: iota(row.producerPayouts) }),
      el("td", { class: "num", text: iota(row.gridCut) }),
      el("td", {}, check(row.energyBalanced)),
      el("td", {}, check(row.moneyBalanced),
        el("details", { class: "invariants" }, el("summary", { text: "report" }),
          el("pre", { text: typeof row.invariants === "string" ? row.invariants : JSON.stringify(row.invariants, null, 2) }))),
    ));
    fillTable($("#settlement-table"), rows, 12);
    pager($("#settlement-pager"), page, (next) => { s.page = next; refresh(); });
  }

  async function loadPayments() {
    const p = state.payments;
    const query = new URLSearchParams({ kind: p.kind, page: String(p.page), pageSize: String(PAGE_SIZE) });
    const page = await api(`payments?${query}`);
    const table = $("#payment-table");
    const payouts = p.kind === "payouts";
    const headers = payouts
      ? ["Producer", "Slot", "Energy", "Amount", "Method", "Status", "Bundle", "Destination"]
      : ["Consumer", "Seen", "Amount", "Status", "Confirmed", "Bundle", "Address"];
    table.querySelector("thead tr").replaceChildren(...headers.map((h) => el("th", { text: h })));
    const rows = page.items.map((row) => payouts
      ? el("tr", {}, el("td", { text: row.name }), el("td", { text: time(row.slotStart) }), el("td", { class: "num", text: kwh(row.energyKwh) }),
        el("td", { class: "num", text: iota(row.amount) }), el("td", { text: row.method }), el("td", {}, status(row.status)),
        el("td", {}, explorerLink("bundle", row.bundle)),
        el("td", {}, row.method === "tangle" ? explorerLink("address", row.destination) : el("span", { text: row.destination || "–" })))
      : el("tr", {}, el("td", { text: row.name }), el("td", { text: time(row.seenAt) }), el("td", { class: "num", text: iota(row.amount) }),
        el("td", {}, status(row.status, row.problem)), el("td", { text: time(row.confirmedAt) }), el("td", {}, explorerLink("bundle", row.bundle)),
        el("td", {}, explorerLink("address", row.address))));
    fillTable(table, rows, headers.length);
    pager($("#payment-pager"), page, (next) => { p.page = next; refresh(); });
  }

  async function loadNode() {
    const data = await api("node");
    const facts = [["Grid", data.grid.healthy ? "healthy" : "unhealthy"], ["Node URL", data.nodeUrl || "–"]];
    if (data.node) {
      const n = data.node;
      facts.push(
        ["Node software", `${n.appName} ${n.appVersion}`],
        ["Synchronised", n.synced ? "yes" : "no"],
        ["Latest milestone", integer.format(n.latestMilestoneIndex)],
        ["Latest solid milestone", integer.format(n.latestSolidMilestoneIndex)],
        ["Neighbours", integer.format(n.neighbors)],
        ["Tips", integer.format(n.tips)],
        ["Coordinator", n.coordinatorAddress || "–"],
      );
    } else {
      facts.push(["Node", data.nodeError || "unavailable"]);
    }
    const gridFacts = { status: "Grid status", database: "Database", node: "Grid's node connection", leader: "Settles (leader)", storageAuth: "Storage API authentication", schemaRevision: "Schema revision" };
    for (const [key, label] of Object.entries(gridFacts)) {
      if (data.grid[key] !== undefined && data.grid[key] !== null) facts.push([label, String(data.grid[key])]);
    }
    if (data.grid.lastSettledSlot) facts.push(["Last settled slot", time(data.grid.lastSettledSlot)]);
    const rows = facts.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { class: v.length > 60 ? "hash" : "", text: v })]);
    const explorer = explorerBase();
    if (explorer) rows.push(el("dt", { text: "Explorer" }), el("dd", {}, el("a", { href: explorer, target: "_blank", rel: "noopener", text: explorer })));
    $("#node-facts").replaceChildren(...rows);
  }

  // POST a change (finalise, credit note) as JSON with the session's CSRF token.
  async function change(path, body) {
    const headers = { Accept: "application/json", "Content-Type": "application/json" };
    if (state.session && state.session.csrfToken) headers["X-CSRF-Token"] = state.session.csrfToken;
    const response = await fetch(`api/${path}`, { method: "POST", credentials: "same-origin", headers, body: JSON.stringify(body) });
    const answer = await response.json();
    if (!response.ok || !answer.success) throw new Error(answer.message || `HTTP ${response.status}`);
    return answer.data;
  }

  const milliwh = (value) => kwh(value / 1e6);

  function downloads(path, query) {
    const prefix = `api/${path}?${query ? `${query}&` : ""}format=`;
    return el("span", { class: "downloads" },
      el("a", { href: `${prefix}csv`, download: "" }, "CSV"), " · ",
      el("a", { href: `${prefix}pdf`, download: "" }, "PDF"));
  }

  function withCurrency(amount, figures, section, name) {
    const text = iota(amount);
    return figures ? `${text} (${figures[section][name]} ${figures.currency})` : text;
  }

  async function loadStatements() {
    const s = state.statements;
    const wanted = new URLSearchParams({ page: String(s.previewPage), pageSize: String(PAGE_SIZE) });
    if (s.period) wanted.set("period", s.period);
    const previews = await api(`statements/previews?${wanted}`);
    if (!s.period) {
      s.period = previews.period;
      // The operator may have typed a period while this loaded.
      if (!$("#statement-period").value) $("#statement-period").value = previews.period;
    }
    const rows = previews.items.map((item) => {
      const consumer = item.itemType === "consumer";
      const a = item.amounts;
      const query = new URLSearchParams({ registrationId: item.registrationId, period: previews.period });
      return el("tr", { "data-id": item.registrationId },
        el("td", {}, el("strong", { text: item.itemName || item.registrationId })),
        el("td", { text: item.itemType }),
        el("td", { class: "num", text: iota(consumer ? a.charges : a.credits) }),
        el("td", { class: "num", text: iota(a.fixedFee) }),
        el("td", { class: "num", text: iota(consumer ? a.paymentsReceived : a.payoutsSent) }),
        el("td", { class: "num", text: iota(item.balance.opening) }),
        el("td", { class: "num", text: withCurrency(item.balance.closing, item.currency, "balance", "closing") }),
        el("td", {}, item.final
          ? el("span", { class: "ok", text: `final no. ${item.final}` })
          : el("span", {}, el("span", { class: "pending", text: "preview " }), downloads("statements/preview", query))),
      );
    });
    fillTable($("#statement-preview-table"), rows, 8);
    pager($("#statement-preview-pager"), { page: previews.page, totalPages: previews.totalPages, totalItems: previews.total },
      (next) => { s.previewPage = next; refresh(); });

    const page = await api(`statements?${new URLSearchParams({ page: String(s.page), pageSize: String(PAGE_SIZE) })}`);
    const listed = page.items.map((item) => el("tr", { "data-number": String(item.number) },
      el("td", { class: "num", text: String(item.number) }),
      el("td", { text: item.kind === "credit_note" ? `credit note for no. ${item.refersTo}` : "statement" }),
      el("td", { text: item.itemName || item.registrationId }),
      el("td", { text: item.period }),
      el("td", { class: "num", text: iota(item.openingBalance) }),
      el("td", { class: "num", text: iota(item.balanceChange) }),
      el("td", { class: "num", text: item.closingBalanceInCurrency ? `${iota(item.closingBalance)} (${item.closingBalanceInCurrency} ${item.currency})` : iota(item.closingBalance) }),
      el("td", { text: time(item.issuedAt) }),
      el("td", {}, downloads(`statements/${item.number}`)),
    ));
    fillTable($("#statement-table"), listed, 9);
    pager($("#statement-pager"), { page: page.page, totalPages: page.totalPages, totalItems: page.total }, (next) => { s.page = next; refresh(); });

    const totals = await api("statements/totals");
    const periods = totals.periods;
    fillTable($("#totals-table"), periods.map((row) => el("tr", {},
      el("td", { text: row.period }),
      el("td", { class: "num", text: milliwh(row.consumedMilliwh) }),
      el("td", { class: "num", text: milliwh(row.producedMilliwh) }),
      el("td", { class: "num", text: milliwh(row.localMilliwh) }),
      el("td", { class: "num", text: milliwh(row.importedMilliwh) }),
      el("td", { class: "num", text: milliwh(row.exportedMilliwh) }),
      el("td", { class: "num", text: iota(row.consumerCharges) }),
      el("td", { class: "num", text: iota(row.producerPayouts) }),
      el("td", { class: "num", text: iota(row.gridCut) }),
      el("td", { class: "num", text: iota(row.fixedFees) }),
    )), 10);
    const options = chartOptions("kWh");
    options.scales.money = { position: "right", beginAtZero: true, title: { display: true, text: "IOTA" }, grid: { drawOnChartArea: false } };
    drawChart("totals-chart", {
      type: "bar",
      data: {
        labels: periods.map((row) => row.period),
        datasets: [
          { label: "Traded locally", data: periods.map((row) => row.localMilliwh / 1e6), backgroundColor: "#15803d", yAxisID: "y" },
          { label: "Imported", data: periods.map((row) => row.importedMilliwh / 1e6), backgroundColor: "#b91c1c", yAxisID: "y" },
          { label: "Exported", data: periods.map((row) => row.exportedMilliwh / 1e6), backgroundColor: "#b45309", yAxisID: "y" },
          { type: "line", label: "Charges (IOTA)", data: periods.map((row) => row.consumerCharges), borderColor: "#2563eb", yAxisID: "money" },
          { type: "line", label: "Payouts (IOTA)", data: periods.map((row) => row.producerPayouts), borderColor: "#7c3aed", yAxisID: "money" },
          { type: "line", label: "Grid's cut (IOTA)", data: periods.map((row) => row.gridCut), borderColor: "#0f766e", yAxisID: "money" },
          { type: "line", label: "Fixed fees (IOTA)", data: periods.map((row) => row.fixedFees), borderColor: "#6b7280", yAxisID: "money" },
        ],
      },
      options,
    });
  }

  async function submitStatementChange(work) {
    const result = $("#statement-result");
    try {
      result.textContent = await work();
      result.className = "ok";
      await refresh();
    } catch (error) {
      result.textContent = error.message;
      result.className = "bad";
    }
  }

  const loaders = { overview: loadOverview, entities: loadEntities, settlements: loadSettlements, payments: loadPayments, statements: loadStatements, node: loadNode };

  async function refresh() {
    if (state.leaving) return;
    const read = (async () => {
      try {
        await loaders[state.view]();
        showError(null);
      } catch (error) {
        if (error.message !== "signed out") showError(error);
      }
    })();
    state.reads.add(read);
    try {
      await read;
    } finally {
      state.reads.delete(read);
    }
  }

  function route() {
    const [view, id] = window.location.hash.replace(/^#/, "").split("/");
    state.view = loaders[view] ? view : "overview";
    if (state.view === "entities") state.entities.selected = id ? decodeURIComponent(id) : null;
    for (const section of document.querySelectorAll(".view")) section.hidden = section.id !== `view-${state.view}`;
    for (const link of document.querySelectorAll("nav a")) link.classList.toggle("active", link.dataset.view === state.view);
    refresh();
  }

  async function start() {
    try {
      state.session = await api("session");
    } catch (error) {
      showError(error);
      return;
    }
    // Signing out is a form post; it carries the session's CSRF token.
    $("#logout input[name=csrf]").value = state.session.csrfToken || "";
    $("#logout").hidden = state.session.via !== "password";
    // Sign out once the reads in flight are answered: a refresh cut off by the session's
    // end would otherwise be answered 401 and send the page to the login a second time,
    // aborting the sign-out's own page load.
    $("#logout").addEventListener("submit", async (event) => {
      event.preventDefault();
      if (state.leaving) return;
      state.leaving = true;
      clearInterval(state.timer);
      await Promise.allSettled([...state.reads]);
      event.target.submit();
    });
    let searchTimer = null;
    $("#entity-search").addEventListener("input", (event) => {
      clearTimeout(searchTimer);
      searchTimer = setTimeout(() => { state.entities.q = event.target.value; state.entities.page = 0; refresh(); }, 250);
    });
    $("#entity-type").addEventListener("change", (event) => { state.entities.type = event.target.value; state.entities.page = 0; refresh(); });
    $("#settlements-failed").addEventListener("change", (event) => { state.settlements.failed = event.target.checked; state.settlements.page = 0; refresh(); });
    $("#payment-kind").addEventListener("change", (event) => { state.payments.kind = event.target.value; state.payments.page = 0; refresh(); });
    $("#statement-form").addEventListener("submit", (event) => {
      event.preventDefault();
      state.statements.period = $("#statement-period").value.trim() || null;
      state.statements.previewPage = 0;
      refresh();
    });
    $("#statement-finalise").addEventListener("click", () => submitStatementChange(async () => {
      const period = $("#statement-period").value.trim();
      const done = await change("statements/finalise", { period });
      return `Finalised ${done.period}: statements ${done.numbers.join(", ")}`;
    }));
    $("#credit-note-form").addEventListener("submit", (event) => {
      event.preventDefault();
      submitStatementChange(async () => {
        const number = $("#credit-note-number").value.trim();
        const amount = $("#credit-note-amount").value.trim();
        const body = { reason: $("#credit-note-reason").value };
        if (amount) body.amount = Number(amount);
        const note = await change(`statements/${encodeURIComponent(number)}/credit-note`, body);
        return `Credit note no. ${note.number} for statement no. ${note.refersTo}`;
      });
    });
    window.addEventListener("hashchange", route);
    route();
    // Statements are recomputed on request only: a period's previews read every slot.
    state.timer = setInterval(() => { if (!document.hidden && state.view !== "statements") refresh(); }, REFRESH_MS);
  }

  document.addEventListener("DOMContentLoaded", start);
})();
