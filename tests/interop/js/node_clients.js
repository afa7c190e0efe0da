// Drives a running node with the real @iota/core 1.0.0-beta.30 client and the MAM
// libraries (@iota/mam 0.7.3, @iota/mam.js 1.0.0-beta.10), for
// tests/interop/test_node_clients.py. Reads {"action", "url", ...} on stdin and
// writes one JSON answer on stdout.
'use strict'

const { composeAPI } = require('@iota/core')
const { asciiToTrytes, trytesToAscii } = require('@iota/converter')

function readStdin() {
    return new Promise((resolve, reject) => {
        let data = ''
        process.stdin.setEncoding('utf8')
        process.stdin.on('data', chunk => (data += chunk))
        process.stdin.on('end', () => resolve(JSON.parse(data)))
        process.stdin.on('error', reject)
    })
}

async function coreSend(request) {
    const iota = composeAPI({ provider: request.url })
    const transfers = request.transfers.map(t => ({
        address: t.address,
        value: t.value,
        tag: t.tag || '',
        message: t.message ? asciiToTrytes(t.message) : '',
    }))
    const options = {}
    if (request.inputs) {
        options.inputs = request.inputs
        options.remainderAddress = request.remainderAddress
    }
    const trytes = await iota.prepareTransfers(request.seed, transfers, options)
    const bundle = await iota.sendTrytes(trytes, 3, request.mwm)
    return {
        bundle: bundle[0].bundle,
        tail: bundle[0].hash,
        hashes: bundle.map(tx => tx.hash),
        values: bundle.map(tx => tx.value),
    }
}

async function coreQuery(request) {
    const iota = composeAPI({ provider: request.url })
    const info = await iota.getNodeInfo()
    const balances = await iota.getBalances(request.addresses)
    const objects = await iota.findTransactionObjects({ addresses: request.addresses })
    const states = request.tails.length ? await iota.getInclusionStates(request.tails) : []
    const spent = await iota.wereAddressesSpentFrom(request.addresses)
    const tips = await iota.getTransactionsToApprove(3)
    return {
        latestSolidSubtangleMilestoneIndex: info.latestSolidSubtangleMilestoneIndex,
        balances: balances.balances,
        milestoneIndex: balances.milestoneIndex,
        transactions: objects.map(tx => ({
            hash: tx.hash,
            address: tx.address,
            value: tx.value,
            tag: tx.tag,
            message: tx.signatureMessageFragment,
        })),
        states,
        spent,
        trunk: tips.trunkTransaction,
        branch: tips.branchTransaction,
    }
}

async function coreBadRequest(request) {
    const iota = composeAPI({ provider: request.url })
    try {
        await iota.storeTransactions([request.trytes])
        return { error: null }
    } catch (error) {
        return { error: String(error.message || error) }
    }
}

async function mamPublish(request) {
    const Mam = require('@iota/mam')
    let state = Mam.init(request.url, request.seed, 2)
    state = Mam.changeMode(state, 'restricted', request.sideKey)
    const published = []
    for (const text of request.messages) {
        const message = Mam.create(state, asciiToTrytes(text))
        state = message.state
        await Mam.attach(message.payload, message.address, 3, request.mwm)
        published.push({ root: message.root, address: message.address })
    }
    return { published }
}

async function mamFetch(request) {
    const Mam = require('@iota/mam')
    Mam.init(request.url)
    const result = await Mam.fetch(request.root, 'restricted', request.sideKey)
    if (result instanceof Error) {
        throw result
    }
    return { messages: result.messages.map(trytesToAscii), nextRoot: result.nextRoot }
}

async function mamJsFetch(request) {
    const { mamFetch: fetchMessage } = require('@iota/mam.js')
    const iota = composeAPI({ provider: request.url })
    const messages = []
    let root = request.root
    for (;;) {
        const message = await fetchMessage(iota, root, 'restricted', request.sideKey)
        if (!message) {
            break
        }
        messages.push(trytesToAscii(message.message))
        root = message.nextRoot
    }
    return { messages, nextRoot: root }
}

const ACTIONS = {
    coreSend,
    coreQuery,
    coreBadRequest,
    mamPublish,
    mamFetch,
    mamJsFetch,
}

readStdin()
    .then(request => {
        const action = ACTIONS[request.action]
        if (!action) {
            throw new Error(`unknown action ${request.action}`)
        }
        return action(request)
    })
    .then(answer => process.stdout.write(JSON.stringify(answer)))
    .catch(error => {
        process.stderr.write(`${error && error.stack ? error.stack : error}\n`)
        process.exit(1)
    })
