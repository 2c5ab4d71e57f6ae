// Type declarations for iii-stdio (kept in sync with lib/*.js by hand; see docs/sdk-node.md).

/** Any JSON value. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** What the engine told us about the call being handled. */
export declare class Invocation {
  /** The JSON-RPC id of the `invoke` request. */
  readonly invocationId: string | number | null;
  readonly functionId: string;
  readonly traceparent: string | null;
  readonly baggage: string | null;
  readonly metadata: any;
}

/** A handler: sync or async, gets the call's `data` and the invocation. */
export type Handler<In = any, Out = any> = (data: In, invocation: Invocation) => Out | Promise<Out>;

/** A failed call, with the iii error code callers branch on ("timeout", "function_not_found", ...). */
export declare class InvocationError extends Error {
  constructor(code: string, message: string, stacktrace?: string);
  readonly name: 'InvocationError';
  readonly code: string;
  readonly stacktrace: string | undefined;
  static fromErrorObject(error: unknown): InvocationError;
}

export interface FunctionOptions {
  description?: string;
  /** E.g. a JSON Schema of `data`. */
  requestFormat?: Json;
  responseFormat?: Json;
  metadata?: { [key: string]: Json };
}

export interface TriggerOptions {
  /** The trigger id; the engine makes one up when absent. */
  id?: string;
  metadata?: { [key: string]: Json };
}

export interface CallOptions {
  /** The engine answers with `timeout` after this long. */
  timeoutMs?: number;
  /** Defaults to the current invocation's. */
  traceparent?: string;
  /** Defaults to the current invocation's. */
  baggage?: string;
}

export interface HttpRequest<Body = any> {
  path_params: { [name: string]: string };
  query_params: { [name: string]: string };
  headers: { [name: string]: string };
  method: string;
  /** The registered path pattern, e.g. "/users/:id". */
  path: string;
  /** Parsed JSON for JSON requests, else null or the text. */
  body: Body;
  [extra: string]: any;
}

export interface HttpResponse<Body = any> {
  status_code?: number;
  headers?: { [name: string]: string } | string[];
  body?: Body;
}

export interface HttpOptions {
  /** Default "http::<METHOD> <path>". */
  functionId?: string;
  description?: string;
  metadata?: { [key: string]: Json };
}

/** The trigger the engine sends a trigger type's provider. */
export interface TriggerConfig {
  id: string;
  type: string;
  function_id?: string;
  config?: any;
  metadata?: any;
}

export interface TriggerTypeOptions {
  description?: string;
  /** Throw (or reject) to refuse the trigger. */
  onRegister?: (trigger: TriggerConfig) => unknown;
  onUnregister?: (trigger: TriggerConfig) => unknown;
}

export type LogLevel = 'debug' | 'info' | 'warn' | 'warning' | 'error';

/** For tests: a transport other than the process's stdin/stdout. */
export interface Transport {
  /** Write whole frames (each with its newline). */
  output(text: string): void;
  /** Start delivering input: each line without its newline, oversized ones by size, then EOF. */
  start(onLine: (line: Buffer) => void, onOversized: (size: number) => void, onEof: () => void): void;
  exit(code: number): void;
  warn?(text: string): void;
}

export interface WorkerOptions {
  /** Defaults to $III_MAX_FRAME_BYTES or 64 MiB. */
  maxFrameBytes?: number;
  transport?: Transport;
}

export declare class Logger {
  debug(message: string, data?: unknown): void;
  info(message: string, data?: unknown): void;
  warn(message: string, data?: unknown): void;
  warning(message: string, data?: unknown): void;
  error(message: string, data?: unknown): void;
}

/** A process that offers functions to the iii engine over stdin/stdout; one per process. */
export declare class Worker {
  constructor(options?: WorkerOptions);
  /** $III_WORKER_NAME. */
  readonly name: string;
  readonly logger: Logger;

  registerFunction<In = any, Out = any>(id: string, handler: Handler<In, Out>, options?: FunctionOptions): Promise<void>;
  unregisterFunction(id: string): Promise<void>;

  /** Resolves with the trigger id. */
  registerTrigger(type: string, functionId: string, config: Json, options?: TriggerOptions): Promise<string>;
  unregisterTrigger(id: string): Promise<void>;
  /** A function plus an `http` trigger; resolves with the trigger id. */
  http<Body = any>(
    method: string,
    path: string,
    handler: Handler<HttpRequest<Body>, HttpResponse>,
    options?: HttpOptions,
  ): Promise<string>;

  registerTriggerType(id: string, options?: TriggerTypeOptions): Promise<void>;
  unregisterTriggerType(id: string): Promise<void>;

  /** Call a function through the engine; rejects with InvocationError. */
  trigger<Out = any>(functionId: string, payload?: unknown, options?: CallOptions): Promise<Out>;
  /** Fire and forget. */
  triggerVoid(functionId: string, payload?: unknown, options?: Omit<CallOptions, 'timeoutMs'>): void;
  /** Queue a call on a named queue; resolves with the message receipt id. */
  enqueue(queue: string, functionId: string, payload?: unknown): Promise<string>;
  /** Publish to every `subscribe` trigger of the topic. */
  publish(topic: string, data?: unknown): Promise<void>;

  log(level: LogLevel, message: string, data?: unknown): void;
  /** Sends `ready` once the registrations made so far are answered. */
  run(): Promise<void>;
}

/** The invocation being handled by the calling code, or null outside a handler. */
export declare function currentInvocation(): Invocation | null;

export interface SetResult<T = any> {
  old_value: T | null;
  new_value: T;
}

export interface UpdateResult<T = any> {
  old_value: T | null;
  new_value: T | null;
  errors?: { op_index: number; code: string; message: string; doc_url?: string }[];
}

export type UpdateOp =
  | { type: 'set'; path: string; value: Json }
  | { type: 'merge'; path?: string | string[]; value: { [key: string]: Json } }
  | { type: 'increment'; path: string; by: number }
  | { type: 'decrement'; path: string; by: number }
  | { type: 'append'; path?: string | string[]; value: Json }
  | { type: 'remove'; path: string };

/** Scoped key/value state: the `state::*` built-ins. */
export declare class State {
  constructor(worker: Worker);
  get<T = any>(scope: string, key: string): Promise<T | null>;
  set<T = any>(scope: string, key: string, value: T): Promise<SetResult<T>>;
  /** Resolves with the old value, or null. */
  delete<T = any>(scope: string, key: string): Promise<T | null>;
  update<T = any>(scope: string, key: string, ops: UpdateOp[]): Promise<UpdateResult<T>>;
  list<T = any>(scope: string): Promise<T[]>;
  listGroups(): Promise<{ groups: string[] }>;
}

/** Streams of items pushed live to subscribers: the `stream::*` built-ins. */
export declare class Streams {
  constructor(worker: Worker);
  get<T = any>(streamName: string, groupId: string, itemId: string): Promise<T | null>;
  set<T = any>(streamName: string, groupId: string, itemId: string, data: T): Promise<SetResult<T>>;
  delete<T = any>(streamName: string, groupId: string, itemId: string): Promise<{ old_value: T | null }>;
  list<T = any>(streamName: string, groupId: string): Promise<T[]>;
  listGroups(streamName: string): Promise<string[]>;
  send(streamName: string, groupId: string, type: string, data?: unknown, id?: string): Promise<null>;
  update<T = any>(streamName: string, groupId: string, itemId: string, ops: UpdateOp[]): Promise<UpdateResult<T>>;
}

/** Builders of update ops. */
export declare const ops: {
  set(path: string, value: Json): UpdateOp;
  merge(value: { [key: string]: Json }, path?: string | string[]): UpdateOp;
  increment(path: string, by?: number): UpdateOp;
  decrement(path: string, by?: number): UpdateOp;
  append(value: Json, path?: string | string[]): UpdateOp;
  remove(path: string): UpdateOp;
};

export declare const version: string;
