'use strict';
/**
 * Helpers over the engine's built-in functions, shaped like the Python SDK's
 * (`iii_stdio.helpers`): each method is one `worker.trigger()` of a built-in and
 * resolves with the built-in's result as it is.
 *
 *   const state = new State(worker);
 *   await state.set('notes', 'n1', { text: 'hi' });   // state::set
 *   const note = await state.get('notes', 'n1');      // state::get
 */

/** Scoped key/value state: the `state::*` built-ins (modules::state::StateModule). */
class State {
  constructor(worker) {
    this._worker = worker;
  }

  /** The value, or null. */
  get(scope, key) {
    return this._worker.trigger('state::get', { scope, key });
  }

  /** Store `value`; resolves with `{old_value, new_value}`. */
  set(scope, key, value) {
    return this._worker.trigger('state::set', { scope, key, value });
  }

  /** Remove the key; resolves with the old value, or null. */
  delete(scope, key) {
    return this._worker.trigger('state::delete', { scope, key });
  }

  /** Apply update ops atomically; resolves with `{old_value, new_value, errors?}`. */
  update(scope, key, ops) {
    return this._worker.trigger('state::update', { scope, key, ops });
  }

  /** Every value in the scope. */
  list(scope) {
    return this._worker.trigger('state::list', { scope });
  }

  /** Resolves with `{groups: [scope, …]}`. */
  listGroups() {
    return this._worker.trigger('state::list_groups', {});
  }
}

/** Streams of items pushed live to subscribers: the `stream::*` built-ins (modules::stream::StreamModule). */
class Streams {
  constructor(worker) {
    this._worker = worker;
  }

  /** The item, or null. */
  get(streamName, groupId, itemId) {
    return this._worker.trigger('stream::get', { stream_name: streamName, group_id: groupId, item_id: itemId });
  }

  /** Store an item; resolves with `{old_value, new_value}`. */
  set(streamName, groupId, itemId, data) {
    return this._worker.trigger('stream::set', { stream_name: streamName, group_id: groupId, item_id: itemId, data });
  }

  /** Remove an item; resolves with `{old_value}`. */
  delete(streamName, groupId, itemId) {
    return this._worker.trigger('stream::delete', { stream_name: streamName, group_id: groupId, item_id: itemId });
  }

  /** Every item of the group. */
  list(streamName, groupId) {
    return this._worker.trigger('stream::list', { stream_name: streamName, group_id: groupId });
  }

  /** The group ids of a stream. */
  listGroups(streamName) {
    return this._worker.trigger('stream::list_groups', { stream_name: streamName });
  }

  /** Send a custom event `{type, data}` to the group's subscribers (optionally about item `id`). */
  send(streamName, groupId, type, data = null, id = undefined) {
    const input = { stream_name: streamName, group_id: groupId, type, data };
    if (id !== undefined && id !== null) input.id = id;
    return this._worker.trigger('stream::send', input);
  }

  /** Apply update ops atomically; resolves with `{old_value, new_value, errors?}`. */
  update(streamName, groupId, itemId, ops) {
    return this._worker.trigger('stream::update', { stream_name: streamName, group_id: groupId, item_id: itemId, ops });
  }
}

/**
 * Update ops for `state.update` / `streams.update`, e.g.
 * `[ops.increment('visits'), ops.set('seen', true)]`.
 */
const ops = {
  set: (path, value) => ({ type: 'set', path, value }),
  merge: (value, path) => (path === undefined ? { type: 'merge', value } : { type: 'merge', path, value }),
  increment: (path, by = 1) => ({ type: 'increment', path, by }),
  decrement: (path, by = 1) => ({ type: 'decrement', path, by }),
  append: (value, path) => (path === undefined ? { type: 'append', value } : { type: 'append', path, value }),
  remove: (path) => ({ type: 'remove', path }),
};

module.exports = { State, Streams, ops };
