// Compatibility acceptance test for the published Node SDK (npm install iii-sdk@0.22.1)
import assert from 'node:assert/strict'
import { InvocationError, TriggerAction, registerWorker } from 'iii-sdk'

const iii = registerWorker('ws://127.0.0.1:49134', { workerName: 'math-worker-node' })

const fn = iii.registerFunction(
  'math.add',
  async (req) => {
    const body = req.body ?? {}
    return { status_code: 200, body: { sum: body.a + body.b } }
  },
  { description: 'Add two numbers' },
)
const httpTrigger = iii.registerTrigger({
  type: 'http',
  function_id: 'math.add',
  config: { api_path: '/math/add', http_method: 'POST' },
})

const result = await iii.trigger({ function_id: 'math.add', payload: { body: { a: 2, b: 3 } } })
assert.deepEqual(result, { status_code: 200, body: { sum: 5 } })

await assert.rejects(
  iii.trigger({ function_id: 'nope.missing', payload: {}, timeoutMs: 5000 }),
  (err) => err instanceof InvocationError && err.code === 'function_not_found',
)

assert.equal(
  await iii.trigger({ function_id: 'math.add', payload: { body: { a: 1, b: 1 } }, action: TriggerAction.Void() }),
  undefined,
)

await new Promise((r) => setTimeout(r, 200))
httpTrigger.unregister()
fn.unregister()
await iii.shutdown()
console.log('OK')
