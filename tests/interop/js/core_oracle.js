// Oracle for the crypto and bundle tests: runs the real @iota/* 1.0.0-beta.30 libraries
// (and the Curl-P-27 ISS of @iota/mam.js) on a batch of calls.
// stdin:  {"calls": [{"op": "...", ...arguments}, ...]}
// stdout: {"results": [result | {"error": "message"}, ...]} in the same order.
'use strict'

const { trytesToTrits, tritsToTrytes } = require('@iota/converter')
const Kerl = require('@iota/kerl').default
const Signing = require('@iota/signing')
const Checksum = require('@iota/checksum')
const { createPrepareTransfers, generateAddress } = require('@iota/core')
const isBundle = require('@iota/bundle-validator').default
const { asTransactionObject, asTransactionTrytes } = require('@iota/transaction-converter')
const IssP27 = require('@iota/mam.js/es/signing/iss-p27')

const kerlHash = (trytes, length) => {
    const sponge = new Kerl()
    const input = trytesToTrits(trytes)
    sponge.absorb(input, 0, input.length)
    const output = new Int8Array(length)
    sponge.squeeze(output, 0, length)
    return tritsToTrytes(output)
}

const handlers = {
    kerl: ({ trytes, length }) => kerlHash(trytes, length),
    subseed: ({ seed, index }) => tritsToTrytes(Signing.subseed(trytesToTrits(seed), index)),
    key: ({ subseed, security }) => tritsToTrytes(Signing.key(trytesToTrits(subseed), security)),
    digests: ({ key }) => tritsToTrytes(Signing.digests(trytesToTrits(key))),
    address: ({ digests }) => tritsToTrytes(Signing.address(trytesToTrits(digests))),
    generate_address: ({ seed, index, security, checksum }) =>
        generateAddress(seed, index, security, checksum),
    normalized_bundle: ({ hash }) => Array.from(Signing.normalizedBundle(trytesToTrits(hash))),
    signature_fragments: async ({ seed, index, security, bundle }) =>
        tritsToTrytes(
            await Signing.signatureFragments(trytesToTrits(seed), index, security, trytesToTrits(bundle))
        ),
    validate_signatures: ({ address, fragments, bundle }) =>
        Signing.validateSignatures(trytesToTrits(address), fragments.map(trytesToTrits), trytesToTrits(bundle)),
    iss_p27_subseed: ({ seed, index }) => tritsToTrytes(IssP27.subseed(trytesToTrits(seed), index)),
    iss_p27_private_key: ({ subseed, security }) =>
        tritsToTrytes(IssP27.privateKeyFromSubseed(trytesToTrits(subseed), security)),
    iss_p27_digest_from_subseed: ({ subseed, security }) =>
        tritsToTrytes(IssP27.digestFromSubseed(trytesToTrits(subseed), security)),
    iss_p27_address: ({ digest }) => tritsToTrytes(IssP27.address(trytesToTrits(digest))),
    iss_p27_signature: ({ hash, key }) =>
        tritsToTrytes(IssP27.signature(trytesToTrits(hash), trytesToTrits(key))),
    iss_p27_digest_from_signature: ({ hash, signature }) =>
        tritsToTrytes(IssP27.digestFromSignature(trytesToTrits(hash), trytesToTrits(signature))),
    add_checksum: ({ address }) => Checksum.addChecksum(address),
    is_valid_checksum: ({ address }) => Checksum.isValidChecksum(address),
    prepare_transfers: ({ seed, transfers, options, now }) =>
        createPrepareTransfers(undefined, () => now)(seed, transfers, options),
    is_bundle: ({ trytes }) => isBundle(trytes.map(t => asTransactionObject(t))),
    transaction_object: ({ trytes }) => asTransactionObject(trytes),
    transaction_trytes: ({ transaction }) => asTransactionTrytes(transaction),
}

const main = async () => {
    const chunks = []
    for await (const chunk of process.stdin) {
        chunks.push(chunk)
    }
    const { calls } = JSON.parse(Buffer.concat(chunks).toString('utf8'))
    const results = []
    for (const { op, ...args } of calls) {
        const handler = handlers[op]
        if (!handler) {
            throw new Error(`unknown op ${op}`)
        }
        try {
            results.push(await handler(args))
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
