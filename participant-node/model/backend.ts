/**
 * TensorFlow.js backend selection (DESIGN §5, STACK.md).
 *
 * Choices: `auto | gpu | webgpu | node | wasm | cpu`.
 *   gpu     @tensorflow/tfjs-node-gpu (CUDA libtensorflow), only if it loads AND a CUDA GPU is visible
 *   webgpu  @tensorflow/tfjs-backend-webgpu on Dawn (npm `webgpu`), only with a hardware adapter
 *           (software adapters such as lavapipe/llvmpipe/SwiftShader are refused unless
 *           FEDBRIDGE_ALLOW_SOFTWARE_WEBGPU=1: they are slower than wasm and say nothing about a GPU).
 *           tfjs-backend-webgpu 4.22 cannot read tensors synchronously in Node (its readSync needs
 *           the browser's OffscreenCanvas); training, evaluation and serving then read with `data()`
 *           (reads.ts `run`).
 *   node    @tensorflow/tfjs-node (CPU libtensorflow)
 *   wasm    @tensorflow/tfjs-backend-wasm (SIMD; single-threaded on Node)
 *   cpu     plain-JS reference backend
 * `auto` tries them in that order and takes the first that works. On the backend it activates, a probe
 * read decides whether computations read synchronously or asynchronously (reads.ts), and the log says which. An explicit choice that is not
 * available is an error naming the reason, never a silent fallback. The choice, the adapter and
 * every refused candidate are logged.
 *
 * The optional packages are loaded through `BackendDeps.require`, so the selection logic is tested
 * with the packages absent, present-but-broken, or present.
 */
import * as fs from 'node:fs';
import { UserError } from '../../shared/cli/errors';
import { probeReadMode, type ReadMode } from './reads';

export const BACKEND_CHOICES = ['auto', 'gpu', 'webgpu', 'node', 'wasm', 'cpu'] as const;
export type BackendChoice = (typeof BACKEND_CHOICES)[number];
export type ConcreteBackend = Exclude<BackendChoice, 'auto'>;

type Tf = typeof import('@tensorflow/tfjs');

export interface BackendDeps {
  /** require() of an optional module; throws MODULE_NOT_FOUND when absent */
  require(id: string): unknown;
  /** is a CUDA device visible to this process? */
  cudaVisible(): boolean;
  log(msg: string): void;
  /** accept a software WebGPU adapter (lavapipe, SwiftShader): only for checking the WebGPU code path */
  allowSoftwareAdapter?: boolean;
}

export interface Attempt {
  backend: ConcreteBackend;
  ok: boolean;
  reason?: string;
}

export interface BackendSelection {
  /** our name of the chosen backend */
  backend: ConcreteBackend;
  /** tfjs's registered backend name (tensorflow, webgpu, wasm, cpu) */
  tfBackend: string;
  adapter?: string;
  /** how computations read tensors on it (reads.ts): 'async' where a synchronous read fails (webgpu in Node) */
  reads: ReadMode;
  attempts: Attempt[];
}

interface DawnGpu {
  requestAdapter(): Promise<null | { info?: Record<string, string>; isFallbackAdapter?: boolean; requestAdapterInfo?: () => Promise<Record<string, string>> }>;
}
interface DawnModule {
  create(opts: string[]): unknown;
  globals: Record<string, unknown>;
}
const dawnInstances = new WeakMap<DawnModule, DawnGpu>();

const SOFTWARE_ADAPTER = /llvmpipe|lavapipe|swiftshader|software|softpipe/i;

export const defaultBackendDeps: BackendDeps = {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  require: (id) => require(id),
  cudaVisible: () => {
    if (process.env.CUDA_VISIBLE_DEVICES === '' || process.env.CUDA_VISIBLE_DEVICES === '-1') return false;
    return fs.existsSync('/proc/driver/nvidia/version') || fs.existsSync('/dev/nvidia0');
  },
  log: (msg) => process.stderr.write(`[backend] ${msg}\n`),
  get allowSoftwareAdapter() {
    return process.env.FEDBRIDGE_ALLOW_SOFTWARE_WEBGPU === '1';
  },
};

function errMsg(e: unknown): string {
  const err = e as { code?: string; message?: string };
  if (err?.code === 'MODULE_NOT_FOUND') return `${(err.message ?? '').split('\n')[0]}`;
  return (err?.message ?? String(e)).split('\n')[0];
}

async function tryBackend(tf: Tf, b: ConcreteBackend, deps: BackendDeps): Promise<{ tfBackend: string; adapter?: string }> {
  switch (b) {
    case 'gpu': {
      deps.require('@tensorflow/tfjs-node-gpu');
      if (!deps.cudaVisible()) throw new Error('tfjs-node-gpu loaded but no CUDA GPU is visible');
      if (!(await tf.setBackend('tensorflow'))) throw new Error("tfjs-node-gpu did not register the 'tensorflow' backend");
      return { tfBackend: 'tensorflow', adapter: 'CUDA (libtensorflow)' };
    }
    case 'webgpu': {
      const webgpu = deps.require('webgpu') as DawnModule;
      // one Dawn instance per process: tfjs's webgpu backend keeps the device it made from the first
      // one, and a second instance (a later selection, e.g. the demo's trainings) hangs its reads
      let gpu = dawnInstances.get(webgpu);
      if (!gpu) {
        Object.assign(globalThis, webgpu.globals);
        gpu = webgpu.create([]) as DawnGpu;
        dawnInstances.set(webgpu, gpu);
      }
      if (!(globalThis as { navigator?: unknown }).navigator) {
        Object.defineProperty(globalThis, 'navigator', { value: { gpu }, configurable: true, writable: true });
      } else {
        Object.defineProperty((globalThis as unknown as { navigator: object }).navigator, 'gpu', { value: gpu, configurable: true });
      }
      const adapter = await gpu.requestAdapter();
      if (!adapter) throw new Error('no WebGPU adapter (is a Vulkan driver installed?)');
      const info = adapter.info ?? (adapter.requestAdapterInfo ? await adapter.requestAdapterInfo() : {});
      const desc = [info.vendor, info.architecture, info.device, info.description].filter(Boolean).join(' ') || 'unknown adapter';
      if ((adapter.isFallbackAdapter || SOFTWARE_ADAPTER.test(desc)) && !deps.allowSoftwareAdapter) throw new Error(`only a software WebGPU adapter is available (${desc})`);
      deps.require('@tensorflow/tfjs-backend-webgpu');
      if (!(await tf.setBackend('webgpu'))) throw new Error("tfjs-backend-webgpu did not initialise the 'webgpu' backend");
      return { tfBackend: 'webgpu', adapter: desc };
    }
    case 'node': {
      deps.require('@tensorflow/tfjs-node');
      if (!(await tf.setBackend('tensorflow'))) throw new Error("tfjs-node did not register the 'tensorflow' backend");
      return { tfBackend: 'tensorflow', adapter: 'CPU (libtensorflow)' };
    }
    case 'wasm': {
      deps.require('@tensorflow/tfjs-backend-wasm');
      if (!(await tf.setBackend('wasm'))) throw new Error("the 'wasm' backend failed to initialise");
      return { tfBackend: 'wasm', adapter: 'CPU (WebAssembly SIMD)' };
    }
    case 'cpu': {
      if (!(await tf.setBackend('cpu'))) throw new Error("the 'cpu' backend failed to initialise");
      return { tfBackend: 'cpu', adapter: 'CPU (plain JavaScript)' };
    }
  }
}

/** The order `auto` tries. */
export const AUTO_ORDER: ConcreteBackend[] = ['gpu', 'webgpu', 'node', 'wasm', 'cpu'];

/**
 * Selects and activates a tfjs backend. Env FEDBRIDGE_BACKEND overrides `choice` when choice is auto.
 */
export async function selectBackend(tf: Tf, choice: BackendChoice = 'auto', deps: BackendDeps = defaultBackendDeps): Promise<BackendSelection> {
  if (!BACKEND_CHOICES.includes(choice)) {
    throw new UserError(`--backend must be one of ${BACKEND_CHOICES.join('|')}, got "${choice}"`);
  }
  const env = process.env.FEDBRIDGE_BACKEND as BackendChoice | undefined;
  if (choice === 'auto' && env && env !== 'auto') {
    if (!BACKEND_CHOICES.includes(env)) throw new UserError(`FEDBRIDGE_BACKEND must be one of ${BACKEND_CHOICES.join('|')}, got "${env}"`);
    choice = env;
  }
  const candidates = choice === 'auto' ? AUTO_ORDER : [choice];
  const attempts: Attempt[] = [];
  for (const b of candidates) {
    try {
      const r = await tryBackend(tf, b, deps);
      await tf.ready();
      const probe = probeReadMode();
      attempts.push({ backend: b, ok: true });
      const reads = probe.mode === 'sync' ? 'synchronous reads' : `asynchronous reads (a synchronous read fails: ${probe.reason})`;
      deps.log(`using ${b} (tfjs '${r.tfBackend}', ${r.adapter ?? 'no adapter info'}; ${reads})` + (attempts.length > 1 ? `; skipped: ${attempts.filter((a) => !a.ok).map((a) => `${a.backend} (${a.reason})`).join(', ')}` : ''));
      return { backend: b, tfBackend: r.tfBackend, adapter: r.adapter, reads: probe.mode, attempts };
    } catch (e) {
      attempts.push({ backend: b, ok: false, reason: errMsg(e) });
    }
  }
  const why = attempts.map((a) => `${a.backend}: ${a.reason}`).join('; ');
  if (choice !== 'auto') {
    const missing = attempts.some((a) => /Cannot find module/.test(a.reason ?? ''));
    const hint =
      choice === 'webgpu'
        ? missing
          ? " (install with 'npm install --no-save webgpu@0.6.2 @tensorflow/tfjs-backend-webgpu@4.22.0')"
          : ''
        : choice === 'gpu'
          ? ' (needs @tensorflow/tfjs-node-gpu installed with CUDA libraries and an NVIDIA GPU)'
          : '';
    throw new UserError(`backend "${choice}" is not available: ${why}${hint}`, 1);
  }
  throw new UserError(`no TensorFlow.js backend could be initialised: ${why}`, 1);
}
