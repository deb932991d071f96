/**
 * Run the transform in a worker thread. binaryen's passes take seconds on a large module and
 * block whatever thread runs them; the main thread carries heartbeats, the proxy and the
 * control socket (architecture: Threads), so a transform there could make a healthy peer look
 * dead. The worker runs `transform()` and posts the result back; GuestErrors keep their code.
 */
import { isMainThread, parentPort, Worker, workerData } from "node:worker_threads";
import { GuestError, type GuestErrorCode } from "./errors.ts";
import { type Instrumented, type TransformOptions, type TransformSettings, transform } from "./transform.ts";

interface Job {
  readonly input: Uint8Array;
  readonly options: TransformOptions | undefined;
  readonly settings: TransformSettings | undefined;
}

type Reply =
  | { readonly ok: true; readonly result: Instrumented }
  | {
      readonly ok: false;
      readonly code: GuestErrorCode | undefined;
      readonly message: string;
      readonly details: Readonly<Record<string, string | number>>;
    };

/** transform() on a worker thread; resolves with the same result, rejects with the same GuestError code. */
export function transformOffThread(
  input: Uint8Array,
  options?: TransformOptions,
  settings?: TransformSettings,
): Promise<Instrumented> {
  const job: Job = { input, options, settings };
  return new Promise((resolve, reject) => {
    const worker = new Worker(new URL(import.meta.url), { workerData: job });
    let settled = false;
    worker.once("message", (reply: Reply) => {
      settled = true;
      if (reply.ok) resolve(reply.result);
      else if (reply.code !== undefined) {
        const prefix = `${reply.code}: `;
        const text = reply.message.startsWith(prefix) ? reply.message.slice(prefix.length) : reply.message;
        reject(new GuestError(reply.code, text, reply.details));
      } else reject(new GuestError("transform-failed", reply.message));
    });
    worker.once("error", (err) => {
      if (!settled)
        reject(
          new GuestError("transform-failed", `transform worker failed: ${err.message}`, {}, { cause: err }),
        );
      settled = true;
    });
    worker.once("exit", (code) => {
      if (!settled) reject(new GuestError("transform-failed", `transform worker exited with ${code}`));
    });
  });
}

if (
  !isMainThread &&
  parentPort !== null &&
  (workerData as { input?: unknown } | null)?.input instanceof Uint8Array
) {
  const job = workerData as Job;
  let reply: Reply;
  try {
    reply = { ok: true, result: transform(job.input, job.options, job.settings) };
  } catch (e) {
    reply =
      e instanceof GuestError
        ? { ok: false, code: e.code, message: e.message, details: e.details }
        : { ok: false, code: undefined, message: e instanceof Error ? e.message : String(e), details: {} };
  }
  parentPort.postMessage(reply);
}
