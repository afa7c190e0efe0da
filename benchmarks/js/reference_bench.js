// JavaScript side of benchmarks/protocol_bench.py: times the npm reference
// libraries on the inputs the Python script sends as JSON on stdin and answers
// JSON on stdout. Uses the packages installed in tests/interop/js.
//
// Request: {curl: {seconds}, mam: {seed, security, sideKey, message, count},
//           pow: {minWeightMagnitude, transactions: [trytes]}}
// Answer:  {curl: {transforms, seconds},
//           mam: {mam: {createMs, parseMs, firstPayload}, mamJs: {...}},
//           pow: {runs: [{seconds, candidates}]}}
'use strict'

const path = require('path')
const { createRequire } = require('module')

const requireReference = createRequire(path.join(__dirname, '..', '..', 'tests', 'interop', 'js', 'package.json'))
// The WASM MAM core prints with console.log; stdout carries only the answer.
console.log = (...args) => process.stderr.write(`${args.join(' ')}\n`)

const converter = requireReference('@iota/converter')
const Curl = requireReference('@iota/curl').default
const Mam = requireReference('@iota/mam')
const MamJs = requireReference('@iota/mam.js')

const HASH_LENGTH = 243
const TRANSACTION_LENGTH = 8019
const NONCE_OFFSET = HASH_LENGTH - 81

const now = () => Number(process.hrtime.bigint()) / 1e6

function benchCurl({ seconds }) {
    const sponge = new Curl(81)
    const block = Int8Array.from({ length: HASH_LENGTH }, (_, i) => ((i * 7) % 3) - 1)
    let transforms = 0
    const start = now()
    let elapsed = 0
    while (elapsed < seconds * 1000) {
        for (let i = 0; i < 50; i++) {
            sponge.absorb(block, 0, HASH_LENGTH) // one transform per 243 trits
        }
        transforms += 50
        elapsed = now() - start
    }
    return { transforms, seconds: elapsed / 1000 }
}

function timeEach(items, action) {
    const times = []
    const results = []
    for (const item of items) {
        const start = now()
        results.push(action(item))
        times.push(now() - start)
    }
    return { times, results }
}

function benchMamWasm({ seed, security, sideKey, message, count }) {
    let state = Mam.init({ provider: 'http://127.0.0.1:1' }, seed, security)
    state = Mam.changeMode(state, 'restricted', sideKey)
    const created = timeEach(Array.from({ length: count }), () => {
        const result = Mam.create(state, message)
        state = result.state
        return result
    })
    const parsed = timeEach(created.results, result => Mam.decode(result.payload, sideKey, result.root))
    parsed.results.forEach(result => {
        if (result.payload !== message) throw new Error('@iota/mam decoded a different message')
    })
    return { createMs: created.times, parseMs: parsed.times, firstPayload: created.results[0].payload }
}

function benchMamJs({ seed, security, sideKey, message, count }) {
    const channel = MamJs.createChannel(seed, security, 'restricted', sideKey)
    const created = timeEach(Array.from({ length: count }), () => MamJs.createMessage(channel, message))
    const parsed = timeEach(created.results, result => MamJs.parseMessage(result.payload, result.root, sideKey))
    parsed.results.forEach(result => {
        if (result.message !== message) throw new Error('@iota/mam.js parsed a different message')
    })
    return { createMs: created.times, parseMs: parsed.times, firstPayload: created.results[0].payload }
}

// The straightforward search a JS client would write on @iota/curl: absorb the
// first 32 blocks once, then one transform per nonce candidate.
function searchNonce(trytes, minWeightMagnitude) {
    const trits = converter.trytesToTrits(trytes)
    const sponge = new Curl(81)
    sponge.absorb(trits, 0, TRANSACTION_LENGTH - HASH_LENGTH)
    const midState = sponge.state.slice()
    const block = trits.slice(TRANSACTION_LENGTH - HASH_LENGTH)
    block.fill(0, NONCE_OFFSET)
    let candidates = 0
    for (;;) {
        candidates++
        sponge.state.set(midState)
        sponge.absorb(block, 0, HASH_LENGTH)
        let weight = 0
        while (weight < minWeightMagnitude && sponge.state[HASH_LENGTH - 1 - weight] === 0) weight++
        if (weight >= minWeightMagnitude) {
            return { nonce: converter.tritsToTrytes(block.slice(NONCE_OFFSET)), candidates }
        }
        for (let i = NONCE_OFFSET; i < HASH_LENGTH; i++) {
            // balanced-ternary increment
            if (block[i] < 1) {
                block[i]++
                break
            }
            block[i] = -1
        }
    }
}

function benchPow({ minWeightMagnitude, transactions }) {
    return {
        runs: transactions.map(trytes => {
            const start = now()
            const { nonce, candidates } = searchNonce(trytes, minWeightMagnitude)
            return { seconds: (now() - start) / 1000, candidates, nonce }
        }),
    }
}

async function main() {
    const chunks = []
    for await (const chunk of process.stdin) chunks.push(chunk)
    const request = JSON.parse(Buffer.concat(chunks).toString('utf8'))
    const answer = {}
    if (request.curl) answer.curl = benchCurl(request.curl)
    if (request.mam) answer.mam = { mam: benchMamWasm(request.mam), mamJs: benchMamJs(request.mam) }
    if (request.pow) answer.pow = benchPow(request.pow)
    process.stdout.write(JSON.stringify(answer))
}

main().catch(error => {
    process.stderr.write(String(error && error.stack ? error.stack : error))
    process.exit(1)
})
