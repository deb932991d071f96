/**
 * Mutation fuzzing of valid streams: flip, insert, delete and overwrite bytes (including length
 * fields with huge values), then decode+verify. Only StreamErrors may come out; decoding must end
 * (bounded by input size) and never allocate beyond the cap. Used by decoder.test.ts (short) and
 * `npm run fuzz:stream` (long: FUZZ_ITERATIONS, default 200000).
 */
import { StreamError } from "../../src/stream/errors.ts";
import { StreamVerifier, type VerifyOptions } from "../../src/stream/verify.ts";

/** Deterministic PRNG (mulberry32). */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function mutate(input: Uint8Array, rand: () => number): Uint8Array {
  const b = Array.from(input);
  const n = 1 + Math.floor(rand() * 4);
  for (let k = 0; k < n; k++) {
    const at = Math.floor(rand() * Math.max(1, b.length));
    switch (Math.floor(rand() * 5)) {
      case 0:
        b[at] = (b[at] ?? 0) ^ (1 << Math.floor(rand() * 8));
        break;
      case 1:
        b.splice(at, 0, Math.floor(rand() * 256));
        break;
      case 2:
        b.splice(at, 1 + Math.floor(rand() * 8));
        break;
      case 3: // a large length-like value on an 8-byte boundary + 4
        b.splice((at & ~7) + 4, 4, 0xff, 0xff, 0xff, Math.floor(rand() * 256));
        break;
      default:
        b[at] = Math.floor(rand() * 256);
    }
  }
  return Uint8Array.from(b.slice(0, input.length + 64));
}

/** Decodes `bytes` in random splits; returns the error code, or "ok". Throws on a non-StreamError. */
export function runOne(bytes: Uint8Array, options: VerifyOptions, rand: () => number): string {
  const v = new StreamVerifier(options);
  try {
    let i = 0;
    while (i < bytes.length) {
      const n = 1 + Math.floor(rand() * 700);
      v.push(bytes.subarray(i, i + n));
      i += n;
    }
    v.end();
    return "ok";
  } catch (e) {
    if (e instanceof StreamError) return e.code;
    throw e;
  }
}

export function campaign(
  corpus: readonly { bytes: Uint8Array; options: VerifyOptions }[],
  iterations: number,
  seed: number,
): Map<string, number> {
  const rand = rng(seed);
  const codes = new Map<string, number>();
  for (let i = 0; i < iterations; i++) {
    const c = corpus[i % corpus.length]!;
    const code = runOne(mutate(c.bytes, rand), c.options, rand);
    codes.set(code, (codes.get(code) ?? 0) + 1);
  }
  return codes;
}

if (import.meta.main) {
  const { FIXTURES } = await import("../fixtures/make-fixtures.ts");
  const corpus = FIXTURES.filter((f) => f.error === undefined).map((f) => ({
    bytes: f.make(),
    options: {
      backChannel: f.flags.includes("--back-channel"),
      ...(f.flags.includes("plain") ? { mode: "plain" as const } : {}),
    },
  }));
  const iterations = Number(process.env.FUZZ_ITERATIONS ?? 200_000);
  const seed = Number(process.env.FUZZ_SEED ?? Date.now() % 1e9);
  const t0 = performance.now();
  const codes = campaign(corpus, iterations, seed);
  process.stdout.write(
    `fuzz:stream seed ${seed}: ${iterations} mutated streams in ${((performance.now() - t0) / 1000).toFixed(1)} s, only StreamErrors\n`,
  );
  for (const [code, n] of [...codes].sort((a, b) => b[1] - a[1]))
    process.stdout.write(`  ${code.padEnd(20)} ${n}\n`);
}
