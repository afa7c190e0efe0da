// What a settled slot would have cost under another mechanism (GET api/replay), in its own
// section of the settlements view. Kept apart from portal.js: it only reads api/replay.
(() => {
  "use strict";
  const time = new Intl.DateTimeFormat(undefined, { dateStyle: "short", timeStyle: "short" });
  const kwh = (milliwh) => (milliwh / 1e6).toFixed(3);
  const price = (micro) => (micro === null || micro === undefined ? "–" : (micro / 1e6).toFixed(2));
  const TOTALS = [
    ["Price (IOTA/kWh)", "consensus_price_micro", price],
    ["Local energy (kWh)", "local_milliwh", kwh],
    ["Imported (kWh)", "imported_milliwh", kwh],
    ["Exported (kWh)", "exported_milliwh", kwh],
    ["Consumers pay (IOTA)", "consumer_charges", String],
    ["Producers get (IOTA)", "producer_payouts", String],
    ["Grid's cut (IOTA)", "grid_cut", String],
  ];

  function row(cells, header) {
    const tr = document.createElement("tr");
    cells.forEach((text, index) => {
      const cell = document.createElement(header || index === 0 ? "th" : "td");
      cell.textContent = text;
      if (index > 0) cell.className = "num";
      tr.append(cell);
    });
    return tr;
  }

  function fill(data) {
    const under = data.replayedUnder;
    const note = document.getElementById("what-if-note");
    const from = time.format(new Date(data.slotStart));
    note.textContent = under === data.settledUnder
      ? `Slot from ${from}, settled under ${data.settledUnder}: ${data.differences.length ? "the replay DIFFERS: " + data.differences.join("; ") : "the replay gives the same result to the last IOTA."}`
      : `Slot from ${from}, settled under ${data.settledUnder}, replayed under ${under}.`;
    const table = document.getElementById("what-if-table");
    table.replaceChildren();
    const head = document.createElement("thead");
    head.append(row(["", "Settled", `Under ${under}`], true));
    const body = document.createElement("tbody");
    for (const [label, key, show] of TOTALS) body.append(row([label, show(data.stored[key]), show(data.replayed[key])]));
    for (const item of data.consumers) body.append(row([`${item.registrationId} pays`, String(item.stored), String(item.replayed)]));
    for (const item of data.producers) body.append(row([`${item.registrationId} gets`, String(item.stored), String(item.replayed)]));
    table.append(head, body);
  }

  async function load(event) {
    if (event) event.preventDefault();
    const select = document.getElementById("what-if-mechanism");
    const query = new URLSearchParams({ slot: document.getElementById("what-if-slot").value.trim() || "latest" });
    if (select.value) query.set("mechanism", select.value);
    const note = document.getElementById("what-if-note");
    try {
      const response = await fetch(`api/replay?${query}`, { credentials: "same-origin", headers: { Accept: "application/json" } });
      const body = await response.json();
      if (!response.ok || !body.success) throw new Error(body.message || `HTTP ${response.status}`);
      if (select.options.length <= 1) {
        for (const name of body.data.mechanisms) select.append(new Option(name, name));
      }
      fill(body.data);
    } catch (error) {
      note.textContent = `No replay: ${error.message}`;
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    const form = document.getElementById("what-if-form");
    if (!form) return;
    form.addEventListener("submit", load);
    document.querySelector('a[data-view="settlements"]')?.addEventListener("click", () => load());
    if (location.hash === "#settlements") load();
  });
})();
