/* P2P Energy Grid card: this home's energy and money flows on the grid.
 *
 *   type: custom:p2p-energy-card
 *   title: Energy trading          # optional
 *   published: sensor.home_energy_published
 *   owed: sensor.home_amount_owed
 *   paid: sensor.home_amount_paid
 *   received: sensor.rooftop_payments_received   # producers
 *   balance: sensor.home_wallet_balance
 *   price: sensor.grid_consensus_price
 *
 * Plain custom elements, no build step. The integration serves this file and adds
 * it to the frontend itself, so there is no resource to register by hand. It runs as a
 * module or as a classic script (older browsers get the frontend's legacy build). */
"use strict";

(() => {
  const DOMAIN = "p2p_energy";
  const VERSION = "0.1.0";
  // Card option -> the integration's sensor translation key.
  const FIELDS = [
    { key: "published", translationKey: "energy_published", label: "Published", icon: "mdi:transmission-tower-export" },
    { key: "owed", translationKey: "amount_owed", label: "Owed", icon: "mdi:receipt-text-clock" },
    { key: "paid", translationKey: "amount_paid", label: "Paid", icon: "mdi:cash-check" },
    { key: "received", translationKey: "payments_received", label: "Received", icon: "mdi:cash-plus" },
    { key: "balance", translationKey: "wallet_balance", label: "Wallet", icon: "mdi:wallet" },
    { key: "price", translationKey: "consensus_price", label: "Price", icon: "mdi:scale-balance" },
  ];
  const ENTITY_KEYS = FIELDS.map((field) => field.key);
  const UNAVAILABLE = new Set(["unavailable", "unknown"]);

  function validateConfig(config) {
    if (!config || typeof config !== "object") throw new Error("The card needs a configuration.");
    for (const key of ENTITY_KEYS) {
      const value = config[key];
      if (value === undefined || value === null || value === "") continue;
      if (typeof value !== "string" || !/^[a-z_]+\.[a-z0-9_]+$/.test(value)) {
        throw new Error(`'${key}' must be an entity id such as sensor.home_${key}.`);
      }
    }
    if (!ENTITY_KEYS.some((key) => config[key])) {
      throw new Error(`Choose at least one P2P Energy Grid sensor (${ENTITY_KEYS.join(", ")}).`);
    }
    if (config.title !== undefined && typeof config.title !== "string") {
      throw new Error("'title' must be text.");
    }
    return { ...config };
  }

  // The integration's sensors for one participant (the device with the most of the card's
  // sensors: a consumer's bills, not a source's energy next to them) and the grid's price.
  function findEntities(hass) {
    const entities = Object.values((hass && hass.entities) || {}).filter(
      (entry) => entry.platform === DOMAIN && !entry.hidden,
    );
    const byDevice = new Map();
    for (const field of FIELDS) {
      for (const entry of entities) {
        if (entry.translation_key !== field.translationKey) continue;
        const key = field.key === "price" ? "price" : entry.device_id || entry.entity_id;
        if (!byDevice.has(key)) byDevice.set(key, {});
        const fields = byDevice.get(key);
        if (!fields[field.key]) fields[field.key] = entry.entity_id;
      }
    }
    const price = byDevice.get("price");
    byDevice.delete("price");
    let best = {};
    for (const fields of byDevice.values()) {
      if (Object.keys(fields).length > Object.keys(best).length) best = fields;
    }
    const found = {};
    for (const field of FIELDS) {
      const entityId = field.key === "price" ? price && price.price : best[field.key];
      if (entityId) found[field.key] = entityId;
    }
    return found;
  }

  function formatState(hass, entityId) {
    const stateObj = hass && hass.states ? hass.states[entityId] : undefined;
    if (!stateObj) return { text: "not found", available: false, stateObj };
    if (UNAVAILABLE.has(stateObj.state)) return { text: "unavailable", available: false, stateObj };
    let text;
    if (typeof hass.formatEntityState === "function") {
      text = hass.formatEntityState(stateObj);
    } else {
      const unit = stateObj.attributes.unit_of_measurement;
      const number = Number(stateObj.state);
      const value = Number.isFinite(number) ? number.toLocaleString(undefined, { maximumFractionDigits: 3 }) : stateObj.state;
      text = unit ? `${value} ${unit}` : value;
    }
    return { text, available: true, stateObj, number: Number(stateObj.state) };
  }

  const STYLE = `
    :host { display: block; }
    ha-card { padding: 16px; }
    .title { font-size: 1.2em; font-weight: 500; margin: 0 0 12px; }
    .flow { display: flex; align-items: center; gap: 8px; margin-bottom: 12px; color: var(--secondary-text-color); font-size: 0.9em; }
    .flow .node { display: flex; flex-direction: column; align-items: center; min-width: 56px; }
    .flow .arrow { flex: 1; border-top: 2px dashed var(--primary-color); position: relative; }
    .flow .arrow span { position: absolute; top: -1.4em; left: 50%; transform: translateX(-50%); white-space: nowrap; color: var(--primary-text-color); font-weight: 500; }
    .tiles { display: grid; grid-template-columns: repeat(auto-fit, minmax(110px, 1fr)); gap: 8px; }
    .tile { border: 1px solid var(--divider-color, #ddd); border-radius: 8px; padding: 8px 10px; cursor: pointer; background: none; text-align: left; font: inherit; color: inherit; }
    .tile:hover { background: var(--secondary-background-color, #f5f5f5); }
    .tile .label { font-size: 0.8em; color: var(--secondary-text-color); display: flex; align-items: center; gap: 4px; }
    .tile .value { font-size: 1.15em; font-weight: 500; margin-top: 2px; }
    .tile.unavailable .value { color: var(--disabled-text-color, #999); }
    .bar { height: 6px; border-radius: 3px; background: var(--divider-color, #ddd); overflow: hidden; margin-top: 12px; }
    .bar div { height: 100%; background: var(--success-color, #43a047); }
    .bar-label { font-size: 0.8em; color: var(--secondary-text-color); margin-top: 4px; }
    .warning { color: var(--error-color, #db4437); }
  `;

  class P2PEnergyCard extends HTMLElement {
    constructor() {
      super();
      this.attachShadow({ mode: "open" });
      this._config = null;
      this._hass = null;
    }

    setConfig(config) {
      this._config = validateConfig(config);
      this._render();
    }

    set hass(hass) {
      this._hass = hass;
      this._render();
    }

    get hass() {
      return this._hass;
    }

    getCardSize() {
      return 3;
    }

    getGridOptions() {
      return { columns: 12, min_columns: 6, rows: 3 };
    }

    static getConfigElement() {
      return document.createElement("p2p-energy-card-editor");
    }

    static getStubConfig(hass) {
      const found = findEntities(hass);
      return Object.keys(found).length ? found : { published: "" };
    }

    _moreInfo(entityId) {
      this.dispatchEvent(new CustomEvent("hass-more-info", { detail: { entityId }, bubbles: true, composed: true }));
    }

    _render() {
      if (!this._config || !this._hass) return;
      const root = this.shadowRoot;
      root.replaceChildren();
      const style = document.createElement("style");
      style.textContent = STYLE;
      const card = document.createElement("ha-card");
      root.append(style, card);
      if (this._config.title) {
        const title = document.createElement("div");
        title.className = "title";
        title.textContent = this._config.title;
        card.append(title);
      }
      const values = {};
      for (const field of FIELDS) {
        const entityId = this._config[field.key];
        if (entityId) values[field.key] = formatState(this._hass, entityId);
      }
      if (values.published) card.append(this._flow(values.published));
      const tiles = document.createElement("div");
      tiles.className = "tiles";
      for (const field of FIELDS) {
        const entityId = this._config[field.key];
        if (!entityId) continue;
        const value = values[field.key];
        const tile = document.createElement("button");
        tile.type = "button";
        tile.className = `tile ${value.available ? "" : "unavailable"}`;
        tile.dataset.key = field.key;
        const label = document.createElement("div");
        label.className = "label";
        const icon = document.createElement("ha-icon");
        icon.setAttribute("icon", field.icon);
        const name = document.createElement("span");
        name.textContent = field.label;
        label.append(icon, name);
        const text = document.createElement("div");
        text.className = "value";
        text.textContent = value.text;
        tile.append(label, text);
        tile.addEventListener("click", () => this._moreInfo(entityId));
        tiles.append(tile);
      }
      card.append(tiles);
      const owed = values.owed;
      const paid = values.paid;
      if (owed && paid && owed.available && paid.available) {
        const total = owed.number + paid.number;
        const share = total > 0 ? Math.round((paid.number / total) * 100) : 100;
        const bar = document.createElement("div");
        bar.className = "bar";
        bar.setAttribute("role", "progressbar");
        bar.setAttribute("aria-valuenow", String(share));
        const fill = document.createElement("div");
        fill.style.width = `${share}%`;
        bar.append(fill);
        const caption = document.createElement("div");
        caption.className = `bar-label ${share < 100 ? "warning" : ""}`;
        caption.textContent = share < 100 ? `${share}% of the bills paid` : "All bills paid";
        card.append(bar, caption);
      }
    }

    _flow(published) {
      const flow = document.createElement("div");
      flow.className = "flow";
      const node = (icon, text) => {
        const wrapper = document.createElement("div");
        wrapper.className = "node";
        const glyph = document.createElement("ha-icon");
        glyph.setAttribute("icon", icon);
        const label = document.createElement("span");
        label.textContent = text;
        wrapper.append(glyph, label);
        return wrapper;
      };
      const arrow = document.createElement("div");
      arrow.className = "arrow";
      const amount = document.createElement("span");
      amount.textContent = published.text;
      arrow.append(amount);
      flow.append(node("mdi:home-lightning-bolt", "Home"), arrow, node("mdi:transmission-tower", "Grid"));
      return flow;
    }
  }

  class P2PEnergyCardEditor extends HTMLElement {
    constructor() {
      super();
      this._config = {};
      this._hass = null;
      this._form = null;
    }

    setConfig(config) {
      this._config = { ...config };
      this._update();
    }

    set hass(hass) {
      this._hass = hass;
      this._update();
    }

    _schema() {
      const entity = { entity: { filter: { integration: DOMAIN, domain: "sensor" } } };
      return [
        { name: "title", selector: { text: {} } },
        ...FIELDS.map((field) => ({ name: field.key, selector: entity })),
      ];
    }

    _label(schema) {
      const field = FIELDS.find((item) => item.key === schema.name);
      if (!field) return "Title";
      return {
        published: "Energy published",
        owed: "Amount owed",
        paid: "Amount paid",
        received: "Payments received (producer)",
        balance: "Wallet balance",
        price: "Consensus price",
      }[field.key];
    }

    _update() {
      if (!this._form) {
        this._form = document.createElement("ha-form");
        this._form.computeLabel = (schema) => this._label(schema);
        this._form.addEventListener("value-changed", (event) => this._changed(event.detail.value));
        this.append(this._form);
      }
      this._form.hass = this._hass;
      this._form.schema = this._schema();
      this._form.data = this._config;
    }

    _changed(value) {
      const config = { ...this._config, ...value };
      for (const key of [...ENTITY_KEYS, "title"]) {
        if (config[key] === "" || config[key] === undefined || config[key] === null) delete config[key];
      }
      this._config = config;
      if (this._form) this._form.data = config;
      this.dispatchEvent(new CustomEvent("config-changed", { detail: { config }, bubbles: true, composed: true }));
    }
  }

  // Home Assistant's frontend replaces window.customElements with a scoped-registry polyfill
  // while it boots, and looks cards up only there. This file is loaded next to the frontend
  // and may run before or after that swap: an element defined only in the browser's own
  // registry before it would stay "Custom element doesn't exist". So the elements are
  // defined in the registry of this moment and, once the frontend's root element exists (the
  // swap is done by then), in the registry of that moment if it is another one.
  const ELEMENTS = { "p2p-energy-card": P2PEnergyCard, "p2p-energy-card-editor": P2PEnergyCardEditor };
  function defineIn(registry) {
    for (const [name, element] of Object.entries(ELEMENTS)) {
      if (!registry.get(name)) registry.define(name, element);
    }
  }
  const registryAtLoad = window.customElements;
  defineIn(registryAtLoad);
  registryAtLoad.whenDefined("home-assistant").then(() => {
    if (window.customElements !== registryAtLoad) defineIn(window.customElements);
  });
  window.customCards = window.customCards || [];
  if (!window.customCards.some((card) => card.type === "p2p-energy-card")) {
    window.customCards.push({
      type: "p2p-energy-card",
      name: "P2P Energy Grid",
      description: "This home's energy and money flows on the peer-to-peer energy grid.",
      preview: true,
      documentationURL: "https://github.com/p2p-energy-grid/p2p-energy-grid#lovelace-card",
    });
  }
  console.info(`%c P2P-ENERGY-CARD %c ${VERSION} `, "color: white; background: #15803d", "");
})();
