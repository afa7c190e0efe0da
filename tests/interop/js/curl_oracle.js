// Oracle for tests/interop/test_curl_converter_oracle.py: answers a batch of
// requests with @iota/converter, @iota/curl, @iota/transaction(-converter),
// @iota/bundle-validator and @iota/core. Reads {"requests": [...]} on stdin,
// writes {"results": [...]} (one entry per request, {"error": msg} on throw).
'use strict'

const converter = require('@iota/converter')
const Curl = require('@iota/curl').default
const transaction = require('@iota/transaction')
const transactionConverter = require('@iota/transaction-converter')
const isBundle = require('@iota/bundle-validator').default
const core = require('@iota/core')

const handlers = {
    trytesToTrits: ({ trytes }) => Array.from(converter.trytesToTrits(trytes)),
    tritsToTrytes: ({ trits }) => converter.tritsToTrytes(Int8Array.from(trits)),
    asciiToTrytes: ({ text }) => converter.asciiToTrytes(text),
    trytesToAscii: ({ trytes }) => converter.trytesToAscii(trytes),
    valueToTrits: ({ value }) => Array.from(converter.valueToTrits(value)),
    tritsToValue: ({ trits }) => converter.tritsToValue(Int8Array.from(trits)),
    curl: ({ trits, rounds, length }) => {
        const sponge = new Curl(rounds)
        const input = Int8Array.from(trits)
        sponge.absorb(input, 0, input.length)
        const output = new Int8Array(length)
        sponge.squeeze(output, 0, length)
        return Array.from(output)
    },
    transactionHash: ({ trytes }) =>
        converter.tritsToTrytes(transaction.transactionHash(converter.trytesToTrits(trytes))),
    isTransaction: ({ trytes, minWeightMagnitude }) =>
        transaction.isTransaction(converter.trytesToTrits(trytes), minWeightMagnitude),
    transactionObject: ({ trytes }) => transactionConverter.asTransactionObject(trytes),
    isBundle: ({ trytes }) => isBundle(trytes.map(t => transactionConverter.asTransactionObject(t))),
    prepareTransfers: async ({ seed, transfers }) => {
        const api = core.composeAPI({})
        return api.prepareTransfers(seed, transfers)
    },
}

const main = async () => {
    const chunks = []
    for await (const chunk of process.stdin) {
        chunks.push(chunk)
    }
    const { requests } = JSON.parse(Buffer.concat(chunks).toString('utf8'))
    const results = []
    for (const request of requests) {
        try {
            results.push({ value: await handlers[request.op](request) })
        } catch (error) {
            results.push({ error: String(error && error.message ? error.message : error) })
        }
    }
    process.stdout.write(JSON.stringify({ results }))
}

main().catch(error => {
    process.stderr.write(String(error && error.stack ? error.stack : error))
    process.exit(1)
})
