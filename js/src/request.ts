import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

/** The server extension's namespace (nbserve/jupyter/handlers.py: API_PREFIX). */
const API_PREFIX = 'nbserve/api';

/**
 * An error answered by the nbserve server extension: `{"error": {"type", "message"}}`.
 * `message` is the server's own, which says what to do next.
 */
export class NbserveAPIError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly type: string
  ) {
    super(message);
    this.name = 'NbserveAPIError';
  }
}

/**
 * Call the nbserve server extension and return its JSON answer.
 *
 * Network failures and error statuses both throw an `NbserveAPIError`, so callers show one kind of
 * message in place.
 */
export async function requestAPI<T>(
  endPoint: string,
  init: RequestInit = {},
  settings: ServerConnection.ISettings = ServerConnection.makeSettings()
): Promise<T> {
  const url = URLExt.join(settings.baseUrl, API_PREFIX, endPoint);
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, settings);
  } catch (error) {
    throw new NbserveAPIError(
      `cannot reach the Jupyter server (${String(error)})`,
      0,
      'NetworkError'
    );
  }
  const text = await response.text();
  let data: any = null;
  if (text.length > 0) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!response.ok) {
    const error = data && data.error;
    if (error && error.message) {
      throw new NbserveAPIError(error.message, response.status, error.type);
    }
    const hint =
      response.status === 404
        ? ': the nbserve server extension is not loaded; check `jupyter server extension list` and restart Jupyter'
        : '';
    throw new NbserveAPIError(
      `${response.status} ${response.statusText}${hint}`,
      response.status,
      'HTTPError'
    );
  }
  return data as T;
}
