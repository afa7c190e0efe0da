// The price forecast of the next 24 hours (GET /forecast, the grid's public API), drawn
// in its own section of the overview. Kept apart from portal.js: it only reads /forecast.
(() => {
  "use strict";
  const REFRESH_MS = 5 * 60 * 1000;
  const time = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
  let chart = null;

  async function draw() {
    const canvas = document.getElementById("forecast-chart");
    const note = document.getElementById("forecast-note");
    if (!canvas || typeof Chart === "undefined") return;
    try {
      const response = await fetch("../forecast", { headers: { Accept: "application/json" } });
      const body = await response.json();
      if (!response.ok || !body.success) throw new Error(body.message || `HTTP ${response.status}`);
      const slots = body.slots;
      const data = {
        labels: slots.map((slot) => time.format(new Date(slot.startTime))),
        datasets: [
          { label: "Price paid (IOTA/kWh)", data: slots.map((slot) => slot.price), stepped: true, borderColor: "#1565c0", pointRadius: 0 },
          { label: "Local price (IOTA/kWh)", data: slots.map((slot) => slot.localPrice), stepped: true, borderColor: "#2e7d32", borderDash: [4, 3], pointRadius: 0 },
        ],
      };
      if (chart) {
        chart.data = data;
        chart.update();
      } else {
        chart = new Chart(canvas, {
          type: "line",
          data,
          options: {
            responsive: true,
            maintainAspectRatio: false,
            animation: false,
            interaction: { mode: "index", intersect: false },
            scales: { y: { beginAtZero: true, title: { display: true, text: "IOTA per kWh" } } },
            plugins: { legend: { position: "bottom" } },
          },
        });
      }
      const announced = slots.reduce((sum, slot) => sum + slot.announcedKwh, 0);
      note.textContent = `${slots.length} slots, ${body.strategy} pricing; ${announced.toFixed(1)} kWh announced by producers, the rest from typical output.`;
    } catch (error) {
      note.textContent = `The forecast could not be loaded: ${error.message}`;
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    draw();
    setInterval(draw, REFRESH_MS);
  });
})();
