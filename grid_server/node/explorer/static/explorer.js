// The node's Tangle explorer. Routes live in the URL fragment so other pages (the
// grid portal) can link straight to a view:
//   #/transaction/<hash>  #/bundle/<hash>  #/address/<address>
//   #/mam/<root>?mode=restricted&sideKey=<key>
'use strict';

const API = '/explorer/api';
const view = document.getElementById('view');
const statusLine = document.getElementById('status');

function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === 'text') node.textContent = value;
    else node.setAttribute(name, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function hashLink(kind, value) {
  return element('a', { class: 'hash', href: `#/${kind}/${value}`, text: value });
}

function badge(confirmedBy) {
  return confirmedBy === null || confirmedBy === undefined
    ? element('span', { class: 'badge pending', text: 'pending' })
    : element('span', { class: 'badge confirmed', text: `confirmed by milestone ${confirmedBy}` });
}

function table(rows) {
  const body = element('tbody');
  for (const [name, value] of rows) {
    const cell = element('td');
    cell.append(value instanceof Node ? value : String(value));
    body.append(element('tr', {}, element('th', { text: name }), cell));
  }
  return element('table', {}, body);
}

function transactionsTable(transactions) {
  const head = element('tr', {},
    ...['hash', 'index', 'value', 'tag', 'state'].map(text => element('th', { text })));
  const body = element('tbody');
  for (const tx of transactions) {
    body.append(element('tr', {},
      element('td', {}, hashLink('transaction', tx.hash)),
      element('td', { text: `${tx.currentIndex} / ${tx.lastIndex}` }),
      element('td', { text: String(tx.value) }),
      element('td', { class: 'hash', text: tx.tag }),
      element('td', {}, badge(tx.confirmedBy))));
  }
  return element('table', {}, element('thead', {}, head), body);
}

async function getJson(path) {
  const response = await fetch(`${API}${path}`);
  const body = await response.json();
  if (!response.ok) {
    const error = new Error(body.error || response.statusText);
    error.status = response.status;
    throw error;
  }
  return body;
}

function show(title, ...content) {
  view.replaceChildren(element('h2', { text: title }), ...content);
}

function showError(error) {
  view.replaceChildren(element('p', { class: 'error', text: error.message }));
}

async function showTransaction(hash) {
  const tx = await getJson(`/transaction/${hash}`);
  const approvers = element('div');
  for (const approver of tx.approvers) approvers.append(hashLink('transaction', approver), ' ');
  show('Transaction', table([
    ['hash', element('span', { class: 'hash', text: tx.hash })],
    ['state', badge(tx.confirmedBy)],
    ['milestone', tx.milestoneIndex === null ? '—' : `milestone ${tx.milestoneIndex}`],
    ['address', hashLink('address', tx.address)],
    ['value', tx.value],
    ['bundle', hashLink('bundle', tx.bundle)],
    ['index', `${tx.currentIndex} of ${tx.lastIndex}`],
    ['tag', tx.tag],
    ['obsolete tag', tx.obsoleteTag],
    ['timestamp', new Date(tx.timestamp * 1000).toISOString()],
    ['attached', tx.attachmentTimestamp ? new Date(tx.attachmentTimestamp).toISOString() : '—'],
    ['trunk', hashLink('transaction', tx.trunkTransaction)],
    ['branch', hashLink('transaction', tx.branchTransaction)],
    ['approvers', tx.approvers.length ? approvers : '—'],
    ['nonce', tx.nonce],
    ['solid', tx.solid ? 'yes' : 'no'],
  ]), element('h3', { text: 'Signature or message fragment' }),
  element('pre', { text: tx.signatureMessageFragment }));
}

async function showBundle(hash) {
  const bundle = await getJson(`/bundle/${hash}`);
  const parts = [table([
    ['bundle', element('span', { class: 'hash', text: bundle.bundle })],
    ['transferred', bundle.transferred],
    ['attachments', bundle.instances.length],
    ['state', badge(bundle.confirmedBy)],
  ])];
  bundle.instances.forEach((instance, position) => {
    parts.push(element('h3', { text: `Attachment ${position + 1}` }), transactionsTable(instance));
  });
  show('Bundle', ...parts);
}

async function showAddress(address) {
  const data = await getJson(`/address/${address}`);
  show('Address', table([
    ['address', element('span', { class: 'hash', text: data.address })],
    ['confirmed balance', `${data.balance} i (milestone ${data.milestoneIndex})`],
    ['spent from', data.spent ? 'yes' : 'no'],
    ['transactions', data.transactionCount],
  ]), element('h3', { text: 'Newest transactions' }), transactionsTable(data.transactions));
}

async function showMam(root, mode, sideKey) {
  const query = new URLSearchParams({ root, mode, limit: '50' });
  if (sideKey) query.set('sideKey', sideKey);
  const data = await getJson(`/mam?${query}`);
  const parts = [table([
    ['root', element('span', { class: 'hash', text: data.root })],
    ['mode', data.mode],
    ['messages', data.messages.length],
    ['next root', element('span', { class: 'hash', text: data.nextRoot })],
  ])];
  for (const message of data.messages) {
    const content = message.data !== null
      ? JSON.stringify(message.data, null, 2)
      : (message.text !== null ? message.text : message.message);
    parts.push(element('h3', {}, 'Message at ', hashLink('address', message.address)),
      element('pre', { text: content }));
    if (message.skippedBundles) {
      parts.push(element('p', { text: `${message.skippedBundles} other bundle(s) at this address were skipped` }));
    }
  }
  show('MAM stream', ...parts);
}

async function lookUp(value) {
  const trytes = value.trim().toUpperCase();
  const hash = trytes.slice(0, 81);
  try {
    await getJson(`/transaction/${hash}`);
    location.hash = `#/transaction/${hash}`;
    return;
  } catch (error) {
    if (error.status !== 404) throw error;
  }
  try {
    await getJson(`/bundle/${hash}`);
    location.hash = `#/bundle/${hash}`;
    return;
  } catch (error) {
    if (error.status !== 404) throw error;
  }
  location.hash = `#/address/${trytes}`;
}

async function route() {
  const [path, queryString] = location.hash.replace(/^#\/?/, '').split('?');
  const [kind, value] = path.split('/');
  const query = new URLSearchParams(queryString || '');
  try {
    if (kind === 'transaction') await showTransaction(value);
    else if (kind === 'bundle') await showBundle(value);
    else if (kind === 'address') await showAddress(value);
    else if (kind === 'mam') await showMam(value, query.get('mode') || 'restricted', query.get('sideKey'));
    else view.replaceChildren();
  } catch (error) {
    showError(error);
  }
}

async function refreshStatus() {
  try {
    const status = await getJson('/status');
    statusLine.textContent = `Milestone ${status.latestSolidMilestoneIndex} (latest ${status.latestMilestoneIndex}) · `
      + `${status.transactions} transactions · ${status.tips} tip${status.tips === 1 ? '' : 's'}`;
  } catch (error) {
    statusLine.textContent = `Node status unavailable: ${error.message}`;
  }
}

document.getElementById('search').addEventListener('submit', event => {
  event.preventDefault();
  lookUp(new FormData(event.target).get('value')).catch(showError);
});

document.getElementById('mam').addEventListener('submit', event => {
  event.preventDefault();
  const form = new FormData(event.target);
  const query = new URLSearchParams({ mode: form.get('mode') });
  if (form.get('sideKey')) query.set('sideKey', form.get('sideKey'));
  location.hash = `#/mam/${form.get('root')}?${query}`;
});

window.addEventListener('hashchange', route);
refreshStatus();
setInterval(refreshStatus, 10000);
route();
