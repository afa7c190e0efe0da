// MAM v0 oracle: runs @iota/mam.js 1.0.0-beta.10 (pure JS) and @iota/mam 0.7.3 (WASM)
// on a batch of requests read as JSON from stdin; answers JSON on stdout.
//
// Request:
//   channels: [{library: "mam.js" | "mam", seed, security, mode, sideKey | null,
//               start?, count?, nextCount?, messages: [trytes]}]
//   parse:    [{library, payload, root, sideKey | null}]
//   text:     [string]   (text -> trytes the way the MAM users did: escape non-ASCII, ASCII -> trytes)
//   json:     [value]    (JSON.stringify, then as text)
//   transfers:[{address, message, tag, timestampMs}]   (zero-value bundle trytes via @iota/core)
// Answer: {channels: [{channelRoot, messages: [{payload, root, address, nextRoot}]}],
//          parse: [{message, nextRoot} | {error}], text: [trytes], json: [trytes],
//          transfers: [[trytes]]}
"use strict";

// The WASM core prints panics with console.log; keep stdout for the answer alone.
console.log = (...args) => process.stderr.write(`${args.join(" ")}\n`);

const MamJs = require("@iota/mam.js");
const Mam = require("@iota/mam");
const { asciiToTrytes } = require("@iota/converter");
const { createPrepareTransfers } = require("@iota/core");

function readStdin() {
    return new Promise((resolve, reject) => {
        const chunks = [];
        process.stdin.on("data", (chunk) => chunks.push(chunk));
        process.stdin.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
        process.stdin.on("error", reject);
    });
}

// The convention of the IOTA proof-of-concept code: \uXXXX for U+007F and above.
function encodeNonAscii(text) {
    return text.replace(/[\u007F-\uFFFF]/g, (chr) => `\\u${`0000${chr.charCodeAt(0).toString(16)}`.slice(-4)}`);
}

function mamJsChannel(request) {
    const channel = MamJs.createChannel(
        request.seed, request.security, request.mode, request.sideKey === null ? undefined : request.sideKey);
    channel.start = request.start ?? 0;
    channel.count = request.count ?? 1;
    channel.nextCount = request.nextCount ?? channel.count;
    const channelRoot = MamJs.channelRoot(channel);
    const messages = request.messages.map((message) => {
        const created = MamJs.createMessage(channel, message);
        return { payload: created.payload, root: created.root, address: created.address, nextRoot: channel.nextRoot };
    });
    return { channelRoot, messages };
}

function wasmChannel(request) {
    let state = Mam.init({ provider: "http://127.0.0.1:1" }, request.seed, request.security);
    state = Mam.changeMode(state, request.mode, request.sideKey === null ? undefined : request.sideKey);
    state.channel.start = request.start ?? 0;
    state.channel.count = request.count ?? 1;
    state.channel.next_count = request.nextCount ?? state.channel.count;
    const channelRoot = Mam.getRoot(state);
    const messages = request.messages.map((message) => {
        const created = Mam.create(state, message);
        state = created.state;
        return {
            payload: created.payload, root: created.root, address: created.address, nextRoot: state.channel.next_root,
        };
    });
    return { channelRoot, messages };
}

function parse(request) {
    try {
        if (request.library === "mam.js") {
            const key = request.sideKey === null ? undefined : request.sideKey.padEnd(81, "9");
            const parsed = MamJs.parseMessage(request.payload, request.root, key);
            return { message: parsed.message, nextRoot: parsed.nextRoot };
        }
        const decoded = Mam.decode(request.payload, request.sideKey, request.root);
        return { message: decoded.payload, nextRoot: decoded.next_root };
    } catch (error) {
        return { error: String(error && error.message ? error.message : error) };
    }
}

async function transfers(requests) {
    const answers = [];
    for (const request of requests) {
        const prepare = createPrepareTransfers(undefined, () => request.timestampMs);
        answers.push(await prepare("9".repeat(81), [
            { address: request.address, value: 0, message: request.message, tag: request.tag },
        ]));
    }
    return answers;
}

async function main() {
    const request = JSON.parse(await readStdin());
    const answer = {
        channels: (request.channels ?? []).map((channel) =>
            channel.library === "mam.js" ? mamJsChannel(channel) : wasmChannel(channel)),
        parse: (request.parse ?? []).map(parse),
        text: (request.text ?? []).map((text) => asciiToTrytes(encodeNonAscii(text))),
        json: (request.json ?? []).map((value) => asciiToTrytes(encodeNonAscii(JSON.stringify(value)))),
        transfers: await transfers(request.transfers ?? []),
    };
    process.stdout.write(JSON.stringify(answer));
}

main().catch((error) => {
    process.stderr.write(`${error && error.stack ? error.stack : error}\n`);
    process.exit(1);
});
