/** Typed calls of the REST routes in nbserve/jupyter/handlers.py. */
import { requestAPI } from './request';

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
  /** how to get a browser link when the Jupyter server has no proxy */
  browser_hint?: string | null;
  /** its adaptive batching limits when it batches concurrent requests (serve(..., batch=True)) */
  batching?: IBatching | null;
  job?: boolean;
  message?: string;
  fraction?: number | null;
  error?: { type: string; message: string } | null;
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

export async function listModels(): Promise<IModel[]> {
  return (await requestAPI<{ models: IModel[] }>('models')).models;
}

export async function listRuntimes(): Promise<IRuntimes> {
  return await requestAPI<IRuntimes>('runtimes');
}

export async function listInstances(): Promise<IEntry[]> {
  return (await requestAPI<{ instances: IEntry[] }>('instances')).instances;
}

/** Ask for a new instance; the server answers 202 at once with a job to poll. */
export async function startNew(request: IStartRequest): Promise<IEntry> {
  return (await requestAPI<{ job: IEntry }>('instances', json('POST', request))).job;
}

export async function act(id: string, action: 'stop' | 'start'): Promise<IEntry> {
  const path = `instances/${encodeURIComponent(id)}/${action}`;
  return (await requestAPI<{ instance: IEntry }>(path, json('POST'))).instance;
}

export async function remove(id: string): Promise<void> {
  await requestAPI(`instances/${encodeURIComponent(id)}`, { method: 'DELETE' });
}

export async function logs(id: string, tail = 500): Promise<string> {
  const path = `instances/${encodeURIComponent(id)}/logs?tail=${tail}`;
  return (await requestAPI<{ logs: string }>(path)).logs;
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
}

export async function listDeployments(): Promise<IDeployment[]> {
  return (await requestAPI<{ deployments: IDeployment[] }>('deployments')).deployments;
}

export async function deploymentAction(
  name: string,
  action: 'scale' | 'update' | 'rollback',
  body: { replicas?: number; model?: string } = {}
): Promise<IDeployment> {
  const path = `deployments/${encodeURIComponent(name)}/${action}`;
  return (await requestAPI<{ deployment: IDeployment }>(path, json('POST', body))).deployment;
}

export async function removeDeployment(name: string): Promise<void> {
  await requestAPI(`deployments/${encodeURIComponent(name)}`, {
    method: 'DELETE'
  });
}

/** One reading of an instance's /metrics (cumulative; nbserve/monitoring.py: snapshot). */
export interface ISnapshot {
  time: number;
  in_progress: number;
  methods: {
    [method: string]: {
      requests: number;
      errors: number;
      sum: number;
      buckets: [number | null, number][];
    };
  };
}

/** An instance's /drift report (nbserve/server/drift.py). */
export interface IDriftReport {
  available: boolean;
  reason?: string;
  drift: boolean;
  drifted_features: string[];
  window: { rows: number; size: number; workers: number };
  features: {
    name: string;
    role: string;
    method: string | null;
    kind: string;
    psi: number | null;
    status: string;
    reference: { shares: number[] };
    live: { shares: number[] };
  }[];
}

export async function metricsOf(id: string): Promise<ISnapshot> {
  return (await requestAPI<{ snapshot: ISnapshot }>(`instances/${encodeURIComponent(id)}/metrics`))
    .snapshot;
}

export async function driftOf(id: string): Promise<IDriftReport> {
  return (await requestAPI<{ drift: IDriftReport }>(`instances/${encodeURIComponent(id)}/drift`))
    .drift;
}
