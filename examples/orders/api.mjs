// The orders HTTP API, in Node with the stdio SDK (sdk/node). `iii run` starts it (config.yaml).
//
//   POST /orders                       validate, price (remote pricing worker), store, enqueue -> 202
//   GET  /orders/:id                   the order as the worker last wrote it
//   GET  /orders                       every order
//   GET  /reports/latest               the cron report (orders by status)
//   GET  /admin/dead-letters           orders whose processing failed for good
//   POST /admin/dead-letters/redrive   put them back on the queue
//
// The SDK is imported by a relative path, so nothing needs `npm install`. In your own app use
// `npm install /path/to/iii-engine/sdk/node` and `import ... from "iii-stdio"`.
import { State, Streams, Worker, ops } from '../../sdk/node/index.mjs';

const worker = new Worker();
const state = new State(worker);
const streams = new Streams(worker);

const ACCEPTED = 'order accepted';
const CARD = /^\d{16}$/;
const TEST_CARD = '4242424242424242';

/** Everything wrong with an order body, as "field: problem" lines (empty when it is fine). */
function problemsOf(body) {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    return ['body: send a JSON object like {"customer": "ada", "items": [{"sku": "tea", "qty": 2}]}'];
  }
  const problems = [];
  if (typeof body.customer !== 'string' || !/^[a-z0-9_-]{1,40}$/i.test(body.customer)) {
    problems.push('customer: required, 1-40 letters, digits, "-" or "_"');
  }
  if (!Array.isArray(body.items) || body.items.length === 0) {
    problems.push('items: required, a non-empty list of {"sku": string, "qty": number}');
  } else {
    body.items.forEach((item, i) => {
      if (item === null || typeof item !== 'object') {
        problems.push(`items[${i}]: must be an object {"sku": string, "qty": number}`);
        return;
      }
      if (typeof item.sku !== 'string' || item.sku === '') problems.push(`items[${i}].sku: required, a string`);
      if (!Number.isInteger(item.qty) || item.qty < 1 || item.qty > 100) {
        problems.push(`items[${i}].qty: must be a whole number from 1 to 100`);
      }
    });
  }
  if (body.card !== undefined && (typeof body.card !== 'string' || !CARD.test(body.card))) {
    problems.push('card: must be 16 digits as a string');
  }
  return problems;
}

function invalid(problems) {
  return { status_code: 400, body: { error: 'invalid order', problems } };
}

worker.http('POST', '/orders', async (req) => {
  let body = req.body;
  if (typeof body === 'string') {  // curl -d without a JSON content type: still try
    try { body = JSON.parse(body); } catch { /* reported below */ }
  }
  const problems = problemsOf(body);
  if (problems.length) return invalid(problems);

  const items = body.items.map(({ sku, qty }) => ({ sku, qty }));
  let quote;
  try {
    quote = await worker.trigger('pricing::quote', { items }, { timeoutMs: 5000 });
  } catch (err) {
    worker.logger.warn('pricing is not available', { code: err.code, message: err.message });
    return { status_code: 503, body: { error: 'pricing is not available, try again', detail: err.message } };
  }
  if (quote.unknown.length) {
    const selling = quote.catalogue.join(', ');
    return invalid(quote.unknown.map((sku) => `items: unknown sku ${JSON.stringify(sku)} (we sell: ${selling})`));
  }

  const seq = await state.update('counters', 'orders', [ops.increment('next')]);
  const id = `ord-${seq.new_value.next}`;
  const order = {
    id,
    customer: body.customer,
    items: quote.lines,
    total_cents: quote.total_cents,
    card: body.card ?? TEST_CARD,
    status: 'pending',
    created_at: new Date().toISOString(),
  };
  await state.set('orders', id, order);
  const { card, ...visible } = order;  // never push card numbers to browsers
  await Promise.all([order.customer, 'all'].map((group) => streams.set('orders', group, id, visible)));
  await worker.enqueue('orders', 'orders::process', { id });
  worker.logger.info(`${ACCEPTED}: ${id}`, { customer: order.customer, total_cents: order.total_cents });
  return { status_code: 202, body: { id, status: 'pending', total_cents: order.total_cents, message: ACCEPTED } };
}, { functionId: 'orders::create' });

worker.http('GET', '/orders/:id', async (req) => {
  const order = await state.get('orders', req.path_params.id);
  if (order === null) return { status_code: 404, body: { error: `no order ${req.path_params.id}` } };
  const { card, ...visible } = order;
  return { body: { ...visible, card: `**** ${card.slice(-4)}` } };
}, { functionId: 'orders::get' });

worker.http('GET', '/orders', async () => {
  const orders = await state.list('orders');
  return { body: orders.map(({ card, ...o }) => o).sort((a, b) => a.created_at.localeCompare(b.created_at)) };
}, { functionId: 'orders::list' });

worker.http('GET', '/reports/latest', async () => {
  const report = await state.get('reports', 'latest');
  return report === null ? { status_code: 404, body: { error: 'no report yet' } } : { body: report };
}, { functionId: 'reports::latest' });

worker.http('GET', '/admin/dead-letters', async () => {
  const dead = await worker.trigger('engine::queue::dlq_messages', { topic: 'orders' });
  return {
    body: dead.map((m) => ({
      order: m.payload.id,
      attempts: m.retries,
      error: m.error.message,
      failed_at: new Date(m.failed_at * 1000).toISOString(),
      message_id: m.id,
    })),
  };
}, { functionId: 'orders::dead_letters' });

worker.http('POST', '/admin/dead-letters/redrive', async () => {
  const result = await worker.trigger('iii::queue::redrive', { queue: 'orders' });
  return { body: result };
}, { functionId: 'orders::redrive' });

await worker.run();
