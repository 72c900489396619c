#!/usr/bin/env node
// Load generator for `python -m bench`: unary gRPC calls, closed loop (fixed concurrency)
// or open loop (constant arrival rate, latency measured from the intended send time).
//
// Usage: node loadgen.js CONFIG.json OUT.json
// The config and the result are described in bench/loadgen.py (LoadSpec, LoadResult).
'use strict';

const fs = require('node:fs');
const crypto = require('node:crypto');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const NS_PER_MS = 1e6;

function nowNs() {
  return process.hrtime.bigint();
}

function msBetween(fromNs, toNs) {
  return Number(toNs - fromNs) / NS_PER_MS;
}

// ---------------------------------------------------------------- samples

class Samples {
  constructor() {
    this.values = new Float64Array(1 << 16);
    this.length = 0;
  }

  push(value) {
    if (this.length === this.values.length) {
      const grown = new Float64Array(this.values.length * 2);
      grown.set(this.values);
      this.values = grown;
    }
    this.values[this.length++] = value;
  }

  summary() {
    if (this.length === 0) return { count: 0 };
    const sorted = this.values.slice(0, this.length).sort();
    const at = (q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
    let sum = 0;
    for (let i = 0; i < sorted.length; i++) sum += sorted[i];
    return {
      count: sorted.length,
      mean: sum / sorted.length,
      p50: at(0.5),
      p90: at(0.9),
      p99: at(0.99),
      p999: at(0.999),
      max: sorted[sorted.length - 1],
    };
  }
}

// ---------------------------------------------------------------- request templates

// A seeded PRNG (mulberry32) so that choice sequences are reproducible.
function makeRandom(seed) {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// Returns a function () => index into choices, following the distribution.
function makePicker(count, distribution, random) {
  if (count === 0) return () => -1;
  const kind = (distribution && distribution.kind) || 'uniform';
  if (kind === 'uniform') return () => Math.floor(random() * count);
  if (kind === 'zipf') {
    // P(i) proportional to 1 / (i + 1)^s: choice 0 is the hottest.
    const s = distribution.s === undefined ? 1.0 : distribution.s;
    const cdf = new Float64Array(count);
    let total = 0;
    for (let i = 0; i < count; i++) {
      total += 1 / Math.pow(i + 1, s);
      cdf[i] = total;
    }
    for (let i = 0; i < count; i++) cdf[i] /= total;
    return () => {
      const r = random();
      let lo = 0;
      let hi = count - 1;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (cdf[mid] < r) lo = mid + 1;
        else hi = mid;
      }
      return lo;
    };
  }
  throw new Error(`unknown distribution kind: ${kind}`);
}

const PLACEHOLDER = /\{\{\s*([a-zA-Z_][\w.]*)\s*\}\}/g;

// Resolves one placeholder name for the current call.
function resolve(name, call) {
  if (name === 'uuid') return crypto.randomUUID();
  if (name === 'seq') return call.seq;
  if (name.startsWith('choice.')) {
    const value = call.choice === undefined ? undefined : call.choice[name.slice(7)];
    if (value === undefined) throw new Error(`template: no ${name} in the chosen item`);
    return value;
  }
  throw new Error(`template: unknown placeholder {{${name}}}`);
}

// Compiles a JSON template into (call) => request object. Strings that are exactly one
// placeholder take the value (any type); other strings interpolate.
function compileTemplate(node) {
  if (typeof node === 'string') {
    const names = [...node.matchAll(PLACEHOLDER)].map((m) => m[1]);
    if (names.length === 0) return () => node;
    const whole = node.match(/^\{\{\s*([a-zA-Z_][\w.]*)\s*\}\}$/);
    if (whole) return (call) => resolve(whole[1], call);
    return (call) => node.replace(PLACEHOLDER, (_, name) => String(resolve(name, call)));
  }
  if (Array.isArray(node)) {
    const items = node.map(compileTemplate);
    return (call) => items.map((item) => item(call));
  }
  if (node !== null && typeof node === 'object') {
    const entries = Object.entries(node).map(([key, value]) => [key, compileTemplate(value)]);
    return (call) => {
      const out = {};
      for (const [key, build] of entries) out[key] = build(call);
      return out;
    };
  }
  return () => node;
}

// Returns (response) => list of strings found at a dotted path ("units.unit_id"); arrays
// along the path are flattened.
function compileExtractor(path) {
  const keys = path.split('.');
  return (response) => {
    let level = [response];
    for (const key of keys) {
      const next = [];
      for (const item of level) {
        const value = item == null ? undefined : item[key];
        if (Array.isArray(value)) next.push(...value);
        else if (value !== undefined && value !== null) next.push(value);
      }
      level = next;
    }
    return level.map(String);
  };
}

// ---------------------------------------------------------------- errors

// Reads google.rpc.Status from grpc-status-details-bin and returns ErrorInfo.reason.
function readVarint(buf, pos) {
  let result = 0;
  let shift = 0;
  for (;;) {
    const byte = buf[pos++];
    result += (byte & 0x7f) * Math.pow(2, shift);
    if ((byte & 0x80) === 0) return [result, pos];
    shift += 7;
  }
}

function fields(buf) {
  const out = [];
  let pos = 0;
  while (pos < buf.length) {
    let key;
    [key, pos] = readVarint(buf, pos);
    const number = Math.floor(key / 8);
    const wire = key & 7;
    if (wire === 0) {
      [, pos] = readVarint(buf, pos);
    } else if (wire === 1) {
      pos += 8;
    } else if (wire === 5) {
      pos += 4;
    } else if (wire === 2) {
      let length;
      [length, pos] = readVarint(buf, pos);
      out.push([number, buf.subarray(pos, pos + length)]);
      pos += length;
    } else {
      break;
    }
  }
  return out;
}

function errorReason(error) {
  try {
    const raw = error.metadata && error.metadata.get('grpc-status-details-bin')[0];
    if (!raw) return '';
    for (const [number, any] of fields(Buffer.from(raw))) {
      if (number !== 3) continue; // Status.details
      let typeUrl = '';
      let value = null;
      for (const [n, bytes] of fields(any)) {
        if (n === 1) typeUrl = bytes.toString('utf8');
        if (n === 2) value = bytes;
      }
      if (typeUrl.endsWith('google.rpc.ErrorInfo') && value) {
        for (const [n, bytes] of fields(value)) if (n === 1) return bytes.toString('utf8');
      }
    }
  } catch (_) {
    // Undecodable details: keep the code alone.
  }
  return '';
}

const CODE_NAMES = Object.fromEntries(Object.entries(grpc.status).map(([k, v]) => [v, k]));

class ErrorTally {
  constructor() {
    this.byKey = new Map();
  }

  add(error) {
    const code = CODE_NAMES[error.code] || String(error.code);
    const reason = errorReason(error);
    const key = reason ? `${code} ${reason}` : code;
    const entry = this.byKey.get(key);
    if (entry) entry.count++;
    else {
      const sample = String(error.details || '').slice(0, 200);
      this.byKey.set(key, { count: 1, code, reason, sample });
    }
  }

  toJSON() {
    return Object.fromEntries(this.byKey);
  }

  get total() {
    let n = 0;
    for (const entry of this.byKey.values()) n += entry.count;
    return n;
  }
}

// ---------------------------------------------------------------- the run

function loadMethod(config) {
  const definition = protoLoader.loadSync(config.proto_file, {
    keepCase: true,
    longs: String,
    enums: String,
    defaults: false,
    oneofs: true,
    includeDirs: config.include_dirs || [],
  });
  const [service, method] = config.method.split('/');
  const serviceDef = definition[service];
  if (!serviceDef || !serviceDef[method]) throw new Error(`no method ${config.method}`);
  const def = serviceDef[method];
  if (def.requestStream || def.responseStream) throw new Error('only unary methods');
  return def;
}

function makeClients(config) {
  const clients = [];
  for (let i = 0; i < Math.max(1, config.channels || 1); i++) {
    // A local subchannel pool gives every client its own HTTP/2 connection.
    clients.push(
      new grpc.Client(config.target, grpc.credentials.createInsecure(), {
        'grpc.use_local_subchannel_pool': 1,
        'grpc.max_receive_message_length': 64 * 1024 * 1024,
      }),
    );
  }
  return clients;
}

async function waitReady(clients, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  await Promise.all(
    clients.map(
      (client) =>
        new Promise((resolve, reject) =>
          client.waitForReady(deadline, (err) => (err ? reject(err) : resolve())),
        ),
    ),
  );
}

class Run {
  constructor(config) {
    this.config = config;
    this.def = loadMethod(config);
    this.clients = makeClients(config);
    this.build = compileTemplate(config.template || {});
    const choices = config.choices || [];
    this.choices = choices;
    this.pick = makePicker(choices.length, config.distribution, makeRandom(config.seed || 1));
    this.extract = config.collect ? compileExtractor(config.collect.path) : null;
    this.collectStream = config.collect ? fs.createWriteStream(config.collect.file) : null;
    this.collected = 0;
    this.seq = 0;
    this.inflight = 0;
    // Measured window only.
    this.ok = 0;
    this.failed = 0;
    this.okLatency = new Samples();
    this.errLatency = new Samples();
    this.errors = new ErrorTally();
    this.sendLag = new Samples();
    // Whole run, for correctness checks.
    this.totalSent = 0;
    this.totalOk = 0;
    this.totalErrors = new ErrorTally();
    this.notSent = 0;
  }

  nextRequest() {
    const index = this.pick();
    const call = { seq: this.seq++, choice: index < 0 ? undefined : this.choices[index] };
    return this.build(call);
  }

  // Issues one call; `startNs` is when it was meant to start (open loop) or started.
  issue(startNs) {
    const request = this.nextRequest();
    const client = this.clients[this.totalSent % this.clients.length];
    this.totalSent++;
    this.inflight++;
    const deadline = new Date(Date.now() + (this.config.deadline_ms || 5000));
    return new Promise((resolve) => {
      client.makeUnaryRequest(
        this.def.path,
        this.def.requestSerialize,
        this.def.responseDeserialize,
        request,
        new grpc.Metadata(),
        { deadline },
        (error, response) => {
          const endNs = nowNs();
          this.inflight--;
          this.record(startNs, endNs, error, response);
          resolve();
        },
      );
    });
  }

  // Throughput counts completions inside the window; latency and the error tally cover
  // calls started inside it, however late they end (so a slow tail is never dropped).
  record(startNs, endNs, error, response) {
    const started = startNs >= this.windowStartNs && startNs < this.windowEndNs;
    const completed = endNs >= this.windowStartNs && endNs <= this.windowEndNs;
    const latency = msBetween(startNs, endNs);
    if (error) {
      this.totalErrors.add(error);
      if (completed) this.failed++;
      if (started) {
        this.errors.add(error);
        this.errLatency.push(latency);
      }
      return;
    }
    this.totalOk++;
    if (completed) this.ok++;
    if (started) this.okLatency.push(latency);
    if (this.extract) {
      const ids = this.extract(response);
      if (ids.length > 0) {
        this.collected += ids.length;
        this.collectStream.write(ids.join('\n') + '\n');
      }
    }
  }

  async closedLoop() {
    const worker = async () => {
      while (nowNs() < this.windowEndNs) await this.issue(nowNs());
    };
    const workers = [];
    for (let i = 0; i < this.config.concurrency; i++) workers.push(worker());
    await Promise.all(workers);
  }

  async openLoop() {
    const rate = this.config.rate;
    const intervalNs = 1e9 / rate;
    const maxInflight = this.config.max_inflight || 100000;
    const pending = new Set();
    let index = 0;
    await new Promise((done) => {
      const tick = () => {
        const now = nowNs();
        const elapsed = Number(now - this.startNs);
        const due = Math.min(
          Math.floor(elapsed / intervalNs) + 1,
          Math.ceil(Number(this.windowEndNs - this.startNs) / intervalNs),
        );
        for (; index < due; index++) {
          const intended = this.startNs + BigInt(Math.round(index * intervalNs));
          if (intended >= this.windowStartNs) this.sendLag.push(msBetween(intended, now));
          if (this.inflight >= maxInflight) {
            this.notSent++;
            continue;
          }
          const promise = this.issue(intended);
          pending.add(promise);
          promise.then(() => pending.delete(promise));
        }
        if (nowNs() < this.windowEndNs) setTimeout(tick, 1);
        else done();
      };
      tick();
    });
    await Promise.all([...pending]);
  }

  async run() {
    await waitReady(this.clients, 10000);
    const cpuStart = process.cpuUsage();
    this.startNs = nowNs();
    this.windowStartNs = this.startNs + BigInt(Math.round(this.config.warmup_s * 1e9));
    this.windowEndNs = this.windowStartNs + BigInt(Math.round(this.config.duration_s * 1e9));
    if (this.config.mode === 'closed') await this.closedLoop();
    else if (this.config.mode === 'open') await this.openLoop();
    else throw new Error(`unknown mode ${this.config.mode}`);
    const endNs = nowNs();
    const cpu = process.cpuUsage(cpuStart);
    for (const client of this.clients) client.close();
    if (this.collectStream) {
      await new Promise((resolve) => this.collectStream.end(resolve));
    }
    const windowS = this.config.duration_s;
    const completed = this.ok + this.failed;
    return {
      mode: this.config.mode,
      concurrency: this.config.mode === 'closed' ? this.config.concurrency : null,
      target_rate: this.config.mode === 'open' ? this.config.rate : null,
      window_s: windowS,
      ok: this.ok,
      failed: this.failed,
      errors: this.errors.toJSON(),
      rps: this.ok / windowS,
      completed_rps: completed / windowS,
      latency_ms: this.okLatency.summary(),
      error_latency_ms: this.errLatency.summary(),
      send_lag_ms: this.sendLag.summary(),
      total: {
        sent: this.totalSent,
        ok: this.totalOk,
        failed: this.totalErrors.total,
        not_sent: this.notSent,
        errors: this.totalErrors.toJSON(),
      },
      collected: this.collected,
      cpu: {
        user_s: cpu.user / 1e6,
        system_s: cpu.system / 1e6,
        total_s: (cpu.user + cpu.system) / 1e6,
        wall_s: msBetween(this.startNs, endNs) / 1000,
      },
    };
  }
}

async function main() {
  const [configPath, outPath] = process.argv.slice(2);
  if (!configPath || !outPath) {
    process.stderr.write('usage: node loadgen.js CONFIG.json OUT.json\n');
    process.exit(2);
  }
  const config = JSON.parse(fs.readFileSync(configPath, 'utf8'));
  const result = await new Run(config).run();
  fs.writeFileSync(outPath, JSON.stringify(result, null, 2));
}

main().catch((error) => {
  process.stderr.write(`loadgen: ${error && error.stack ? error.stack : error}\n`);
  process.exit(1);
});
