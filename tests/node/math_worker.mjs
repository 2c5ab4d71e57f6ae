// A long-lived Node iii-sdk worker for tests/e2e/test_node_sdk.py (the acceptance script exits
// as soon as it is done, so the HTTP leg, the mixed-language calls and the mid-call disconnect
// need a worker that stays up).
// Usage: node math_worker.mjs <engine ws url>   (falls back to III_URL when supervised)
import { registerWorker } from 'iii-sdk'

const url = process.argv[2] ?? process.env.III_URL
if (!url) {
  console.error('usage: node math_worker.mjs <ws://host:port>')
  process.exit(2)
}

const iii = registerWorker(url, { workerName: process.env.III_WORKER_NAME ?? 'node-math' })

// Section 12 of the protocol reference: the same function, reachable over HTTP.
iii.registerFunction(
  'math.add',
  async (req) => {
    const body = req.body ?? {}
    return { status_code: 200, body: { sum: body.a + body.b } }
  },
  { description: 'Add two numbers' },
)
iii.registerTrigger({
  type: 'http',
  function_id: 'math.add',
  config: { api_path: '/math/add', http_method: 'POST' },
})

// Mixed-language calls: Python calls these, and the second one calls back into Python.
iii.registerFunction('node.square', async (data) => ({ value: data.value * data.value }))
iii.registerFunction('node.square_then_double', async (data) =>
  iii.trigger({ function_id: 'py.double', payload: { value: data.value * data.value } }),
)

// Never answers: the test kills this process while the call is in here.
iii.registerFunction('node.hang', (data) => {
  console.log(`handling node.hang ${JSON.stringify(data)}`)
  return new Promise(() => {})
})

process.on('SIGTERM', async () => {
  await iii.shutdown()
  process.exit(0)
})
