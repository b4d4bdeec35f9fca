import * as tf from '@tensorflow/tfjs';
import { defaultBackendDeps, selectBackend, type BackendDeps } from '../../../participant-node/model/backend';
import { readMode } from '../../../participant-node/model/reads';
import { UserError } from '../../../shared/cli/errors';

function deps(over: Partial<BackendDeps> & { present?: Record<string, unknown> } = {}): BackendDeps & { logs: string[] } {
  const logs: string[] = [];
  const present = over.present ?? {};
  return {
    logs,
    require: (id: string) => {
      if (id in present) return present[id];
      if (id === '@tensorflow/tfjs-backend-wasm') return require('@tensorflow/tfjs-backend-wasm');
      const e = new Error(`Cannot find module '${id}'`) as Error & { code: string };
      e.code = 'MODULE_NOT_FOUND';
      throw e;
    },
    cudaVisible: over.cudaVisible ?? (() => false),
    log: (m) => logs.push(m),
  };
}

describe('backend selection', () => {
  const savedEnv = process.env.FEDBRIDGE_BACKEND;
  afterEach(() => {
    if (savedEnv === undefined) delete process.env.FEDBRIDGE_BACKEND;
    else process.env.FEDBRIDGE_BACKEND = savedEnv;
  });

  test('auto with the optional GPU packages absent falls through to wasm and logs why', async () => {
    delete process.env.FEDBRIDGE_BACKEND;
    const d = deps();
    const sel = await selectBackend(tf, 'auto', d);
    expect(sel.backend).toBe('wasm');
    expect(tf.getBackend()).toBe('wasm');
    expect(sel.attempts.map((a) => [a.backend, a.ok])).toEqual([
      ['gpu', false],
      ['webgpu', false],
      ['node', false],
      ['wasm', true],
    ]);
    expect(sel.attempts[0].reason).toMatch(/tfjs-node-gpu/);
    expect(d.logs.join('\n')).toMatch(/using wasm .*skipped: gpu \(.*\), webgpu \(.*\), node \(.*\)/);
  });

  test('tfjs-node-gpu present but no CUDA device is refused, not silently used', async () => {
    const d = deps({ present: { '@tensorflow/tfjs-node-gpu': {} }, cudaVisible: () => false });
    const sel = await selectBackend(tf, 'auto', d);
    expect(sel.attempts[0]).toEqual({ backend: 'gpu', ok: false, reason: 'tfjs-node-gpu loaded but no CUDA GPU is visible' });
  });

  test('a software WebGPU adapter is refused', async () => {
    const fakeWebgpu = {
      globals: {},
      create: () => ({ requestAdapter: async () => ({ info: { vendor: 'mesa', architecture: 'llvmpipe', device: '', description: 'llvmpipe (LLVM 15)' } }) }),
    };
    await expect(selectBackend(tf, 'webgpu', deps({ present: { webgpu: fakeWebgpu } }))).rejects.toThrow(/only a software WebGPU adapter is available \(mesa llvmpipe/);
  });

  describe('a hardware WebGPU adapter whose backend cannot read synchronously (tfjs-backend-webgpu in Node)', () => {
    // A stand-in 'webgpu' backend: the cpu backend and its kernels under that name, with the
    // synchronous read failing the way tfjs-backend-webgpu 4.22 fails in Node.
    const hardware = {
      globals: {},
      create: () => ({ requestAdapter: async () => ({ info: { vendor: 'nvidia', architecture: 'ampere', device: '', description: 'NVIDIA A10G' } }) }),
    };
    let syncReadWorks = false;
    const copied: string[] = [];
    beforeAll(() => {
      const cpuFactory = tf.findBackendFactory('cpu')!;
      tf.registerBackend('webgpu', () => {
        const b = cpuFactory() as tf.KernelBackend;
        const readSync = b.readSync.bind(b);
        b.read = async (dataId: object) => readSync(dataId); // the cpu backend's read() goes through readSync
        b.readSync = (dataId: object) => {
          if (!syncReadWorks) throw new ReferenceError('OffscreenCanvas is not defined');
          return readSync(dataId);
        };
        return b;
      });
      for (const k of tf.getKernelsForBackend('cpu')) {
        tf.registerKernel({ ...k, backendName: 'webgpu' });
        copied.push(k.kernelName);
      }
    });
    afterAll(async () => {
      await tf.setBackend('cpu');
      tf.removeBackend('webgpu');
      for (const name of copied) tf.unregisterKernel(name, 'webgpu');
    });
    const present = { webgpu: hardware, '@tensorflow/tfjs-backend-webgpu': {} };

    test('is used, explicitly and under auto, with asynchronous reads (the probe picks the driver), and the log says why', async () => {
      syncReadWorks = false;
      const d = deps({ present });
      const sel = await selectBackend(tf, 'webgpu', d);
      expect(sel).toMatchObject({ backend: 'webgpu', tfBackend: 'webgpu', adapter: 'nvidia ampere NVIDIA A10G', reads: 'async' });
      expect(readMode()).toBe('async');
      expect(d.logs.join('\n')).toMatch(/using webgpu \(tfjs 'webgpu', nvidia ampere NVIDIA A10G; asynchronous reads \(a synchronous read fails: OffscreenCanvas is not defined\)\)/);
      const auto = await selectBackend(tf, 'auto', deps({ present }));
      expect(auto).toMatchObject({ backend: 'webgpu', reads: 'async' });
      expect(auto.attempts.map((a) => [a.backend, a.ok])).toEqual([
        ['gpu', false],
        ['webgpu', true],
      ]);
    });

    test('one Dawn instance per process: selecting webgpu again reuses it (a second instance hangs tfjs reads)', async () => {
      let created = 0;
      const counting = { globals: {}, create: () => (created++, hardware.create()) };
      const d = deps({ present: { webgpu: counting, '@tensorflow/tfjs-backend-webgpu': {} } });
      syncReadWorks = false;
      for (let k = 0; k < 3; k++) expect(await selectBackend(tf, 'webgpu', d)).toMatchObject({ backend: 'webgpu', reads: 'async' });
      expect(created).toBe(1);
      const x = tf.matMul(tf.ones([64, 64]), tf.ones([64, 64]));
      expect((await x.data())[0]).toBe(64);
      x.dispose();
    });

    test('reads synchronously once a synchronous read works (the probe runs on every selection)', async () => {
      syncReadWorks = false;
      await selectBackend(tf, 'webgpu', deps({ present }));
      expect(readMode()).toBe('async');
      syncReadWorks = true;
      const sel = await selectBackend(tf, 'auto', deps({ present }));
      expect(sel).toMatchObject({ backend: 'webgpu', reads: 'sync' });
      expect(readMode()).toBe('sync');
    });

    test('a software adapter stays opt-in: FEDBRIDGE_ALLOW_SOFTWARE_WEBGPU=1 through the default deps', async () => {
      const software = {
        globals: {},
        create: () => ({ requestAdapter: async () => ({ info: { vendor: 'mesa', architecture: '', device: '', description: 'llvmpipe (LLVM 15, 256 bits)' } }) }),
      };
      const saved = process.env.FEDBRIDGE_ALLOW_SOFTWARE_WEBGPU;
      const swDeps = () => ({ ...deps({ present: { webgpu: software, '@tensorflow/tfjs-backend-webgpu': {} } }), allowSoftwareAdapter: defaultBackendDeps.allowSoftwareAdapter });
      try {
        delete process.env.FEDBRIDGE_ALLOW_SOFTWARE_WEBGPU;
        await expect(selectBackend(tf, 'webgpu', swDeps())).rejects.toThrow(/only a software WebGPU adapter is available \(mesa llvmpipe/);
        process.env.FEDBRIDGE_ALLOW_SOFTWARE_WEBGPU = '1';
        syncReadWorks = false;
        expect(await selectBackend(tf, 'webgpu', swDeps())).toMatchObject({ backend: 'webgpu', adapter: 'mesa llvmpipe (LLVM 15, 256 bits)', reads: 'async' });
      } finally {
        if (saved === undefined) delete process.env.FEDBRIDGE_ALLOW_SOFTWARE_WEBGPU;
        else process.env.FEDBRIDGE_ALLOW_SOFTWARE_WEBGPU = saved;
      }
    });
  });

  test('an explicit backend that is absent is an error with an install hint, not a fallback', async () => {
    await expect(selectBackend(tf, 'webgpu', deps())).rejects.toThrow(UserError);
    await expect(selectBackend(tf, 'webgpu', deps())).rejects.toThrow(/backend "webgpu" is not available: webgpu: Cannot find module 'webgpu'.*npm install --no-save webgpu@0.6.2/);
    await expect(selectBackend(tf, 'gpu', deps())).rejects.toThrow(/backend "gpu" is not available/);
  });

  test('explicit cpu and the FEDBRIDGE_BACKEND override', async () => {
    expect(await selectBackend(tf, 'cpu', deps())).toMatchObject({ backend: 'cpu', reads: 'sync' });
    process.env.FEDBRIDGE_BACKEND = 'wasm';
    expect((await selectBackend(tf, 'auto', deps())).backend).toBe('wasm');
    process.env.FEDBRIDGE_BACKEND = 'tpu';
    await expect(selectBackend(tf, 'auto', deps())).rejects.toThrow(/FEDBRIDGE_BACKEND must be one of auto\|gpu\|webgpu\|node\|wasm\|cpu, got "tpu"/);
    await expect(selectBackend(tf, 'bogus' as never, deps())).rejects.toThrow(/--backend must be one of/);
  });
});
