/** Typed calls of the REST routes in nbserve/jupyter/handlers.py. */
import { IDriftFeature } from './format';
import { ISnapshot } from './metrics';
import { requestAPI } from './request';
import { IStage } from './stages';

/** A runtime as nbserve/runtimes/__init__.py declares it (the one list of runtimes). */
export interface IRuntime {
  name: string;
  description: string;
  proves_registration: boolean;
  builds_images: boolean;
  replicas: boolean;
  auto: boolean;
}

export interface IRuntimes {
  /** what the start form offers: "auto", then each runtime's name */
  choices: string[];
  runtimes: IRuntime[];
}

export interface IModel {
  id: string;
  name: string;
  version: number;
  versions: number[];
  methods: string[];
  requirements: string[];
  created: number;
  kind?: string;
  object_type?: string;
  /** "chat" or "embeddings": a text function, served on OpenAI's routes too */
  text_kind?: string | null;
  /** the methods that stream their items (they return a generator) */
  streams?: string[];
  /** who registered this version (user and host; empty for versions older than registry schema 2) */
  registered_by?: string;
  registered_host?: string;
  /** where this version runs, as the workspaces of the registry's users report it */
  running?: IPlacement[];
}

export interface IPlacement {
  machine: string;
  instance: string;
  runtime: string;
  url?: string | null;
  status: string;
  registered_by: string;
}

/** An instance (from the registry, status from its runtime) or a start in flight (`job: true`). */
export interface IEntry {
  id: string;
  model: string;
  runtime: string;
  status: string;
  url?: string | null;
  port?: number | null;
  started?: number | null;
  /** the masked bearer token when the instance requires one */
  auth?: string | null;
  /** `{base_url}proxy/{port}/` through the Jupyter server (jupyter-server-proxy), for a remote browser */
  browser_url?: string | null;
  /** its adaptive batching limits when it batches concurrent requests (serve(..., batch=True)) */
  batching?: IBatching | null;
  job?: boolean;
  message?: string;
  fraction?: number | null;
  error?: { type: string; message: string } | null;
  /** the versions it served before, oldest first (rollback returns to the last) */
  history?: string[];
  /** {"diabetes:1": 90, "diabetes:2": 10} while it splits its traffic */
  split?: { [version: string]: number } | null;
  /** the candidate a share of its requests is copied to */
  shadow?: { instance: string; model: string; share: number } | null;
  /** the instance this one shadows (it gets copies of its requests) */
  candidate_of?: string | null;
  /** the notebook variable a kernel follows into it (%serve lr --follow) */
  following?: string | null;
}

export interface IBatching {
  max_batch: number;
  max_latency_ms: number;
}

export interface IStartRequest {
  model: string;
  version?: number;
  runtime?: string;
  port?: number;
  /** adaptive batching, as serve() takes it (the limits apply with batch: true) */
  batch?: boolean;
  max_batch?: number;
  max_latency_ms?: number;
}

const json = (method: string, body?: unknown): RequestInit => ({
  method,
  body: body === undefined ? undefined : JSON.stringify(body),
  headers: { 'Content-Type': 'application/json' }
});

/** Everything the sidebar lists, in one reading the server shares between sidebars (GET overview). */
export interface IOverview {
  models: IModel[];
  /** starts in flight or failed (jobs), then instances */
  instances: IEntry[];
  runtimes: IRuntimes;
  /** how to reach instances from this browser, when it is on another machine and the server has no proxy */
  hint: string | null;
  time: number;
}

export async function overview(): Promise<IOverview> {
  return await requestAPI<IOverview>('overview');
}

/** Ask for a new instance; the server answers 202 at once with a job to poll. */
export async function startNew(request: IStartRequest): Promise<IEntry> {
  return (await requestAPI<{ job: IEntry }>('instances', json('POST', request))).job;
}

export async function act(id: string, action: 'stop' | 'start'): Promise<IEntry> {
  const path = `instances/${encodeURIComponent(id)}/${action}`;
  return (await requestAPI<{ instance: IEntry }>(path, json('POST'))).instance;
}

/** The notebook loop's verbs on an instance (nbserve/jupyter/handlers.py: LoopActionHandler). */
export async function loopAction(
  id: string,
  action: 'rollback' | 'promote' | 'discard' | 'split',
  body: { weights?: { [version: string]: number } | null; to?: string } = {}
): Promise<IEntry> {
  const path = `instances/${encodeURIComponent(id)}/${action}`;
  return (await requestAPI<{ instance: IEntry }>(path, json('POST', body))).instance;
}

/** A shadow's comparison: Instance.comparison(summary=True), and what the sidebar plots. */
export interface IComparisonSummary {
  live: string;
  candidate: string;
  requests: number;
  rows: number;
  agreement: number | null;
  errors: {
    [output: string]: { mean_abs: number | null; max_abs: number | null; rmse: number | null };
  };
  latency_ms: {
    live: { p50: number | null; p99: number | null };
    candidate: { p50: number | null; p99: number | null };
  };
  candidate_failures: number;
  copies?: { sent: number; dropped: number; failed: number; share: number } | null;
}

export interface IComparison {
  id: string;
  summary: IComparisonSummary;
  /** [live answer, candidate answer, agree] of the last rows */
  points: [number | null, number | null, boolean][];
  latency: { live: number[]; candidate: number[] };
}

export async function comparisonOf(id: string): Promise<IComparison> {
  return await requestAPI<IComparison>(`instances/${encodeURIComponent(id)}/comparison`);
}

/** Serve another registered version of one stage of a graph instance, swapped in place. */
export async function updateStage(id: string, stage: string, model: string): Promise<IEntry> {
  const path = `instances/${encodeURIComponent(id)}/update-stage`;
  return (await requestAPI<{ instance: IEntry }>(path, json('POST', { stage, model }))).instance;
}

export async function remove(id: string): Promise<void> {
  await requestAPI(`instances/${encodeURIComponent(id)}`, { method: 'DELETE' });
}

/** One line of an instance's log as a table row (nbserve/monitoring.py: log_entries). */
export interface ILogEntry {
  kind: 'request' | 'server';
  raw: string;
  /** a failure of the server: a 5xx answer, or a server line that reports an error */
  error: boolean;
  time?: string | null;
  status?: number;
  latency_ms?: number | null;
  rows?: number | null;
  request_id?: string;
  method?: string;
  path?: string;
  text?: string;
}

export interface ILogs {
  id: string;
  logs: string;
  entries?: ILogEntry[];
}

export async function logs(id: string, tail = 500): Promise<ILogs> {
  const path = `instances/${encodeURIComponent(id)}/logs?tail=${tail}`;
  return await requestAPI<ILogs>(path);
}

/** A deployment (nbserve.deploy): N replicas on Docker Swarm, or Kubernetes manifests. */
export interface IDeployment {
  name: string;
  target: string;
  model: string;
  status: string;
  replicas: number;
  ready: number;
  endpoints: string[];
  directory?: string | null;
  notes?: string;
  /** {"diabetes:1": 90, "diabetes:2": 10} while every replica serves a split (dep.split) */
  split?: { [version: string]: number } | null;
}

export async function listDeployments(): Promise<IDeployment[]> {
  return (await requestAPI<{ deployments: IDeployment[] }>('deployments')).deployments;
}

export async function deploymentAction(
  name: string,
  action: 'scale' | 'update' | 'rollback' | 'split',
  body: { replicas?: number; model?: string; weights?: { [version: string]: number } | null } = {}
): Promise<IDeployment> {
  const path = `deployments/${encodeURIComponent(name)}/${action}`;
  return (await requestAPI<{ deployment: IDeployment }>(path, json('POST', body))).deployment;
}

export async function removeDeployment(name: string): Promise<void> {
  await requestAPI(`deployments/${encodeURIComponent(name)}`, {
    method: 'DELETE'
  });
}

/** An instance's /drift report (nbserve/server/drift.py). */
export interface IDriftReport {
  available: boolean;
  reason?: string;
  drift: boolean;
  drifted_features: string[];
  window: { rows: number; size: number; workers: number };
  thresholds?: { min_rows: number };
  features: IDriftFeature[];
}

/** A job of a served model (POST /<method>?async=1, client.submit): nbserve/server/jobs.py. */
export interface IJob {
  id: string;
  method: string;
  status: 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled';
  created: number;
  started?: number;
  finished?: number;
  /** jobs ahead of it while it is queued */
  position?: number | null;
  /** what the method reported: fraction, message, items (a streaming method) */
  progress?: { fraction?: number; message?: string; items?: number } | null;
  error?: { type: string; message: string } | null;
}

/** Metrics, drift and jobs of an instance while it runs; nulls (and its status) once it does not. */
export interface IMonitor {
  id: string;
  status: string;
  snapshot: ISnapshot | null;
  drift: IDriftReport | null;
  /** its jobs, newest first; null when it serves none (jobs off) */
  jobs?: IJob[] | null;
  /** "chat" or "embeddings" for a text function: its items per second are tokens per second */
  text_kind?: string | null;
  /** a graph's stages (the version each runs, p50, errors); null for a single model */
  stages?: IStage[] | null;
}

/** Cancel a queued or running job of an instance (a finished one is forgotten). */
export async function cancelJob(id: string, job: string): Promise<IJob> {
  const path = `instances/${encodeURIComponent(id)}/jobs/${encodeURIComponent(job)}`;
  return (await requestAPI<{ job: IJob }>(path, { method: 'DELETE' })).job;
}

export async function monitorOf(id: string): Promise<IMonitor> {
  return await requestAPI<IMonitor>(`instances/${encodeURIComponent(id)}/monitor`);
}
