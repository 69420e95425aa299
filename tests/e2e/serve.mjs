// A built site served on 127.0.0.1 and a headless Chromium for it: shared by
// the browser tests (harness.mjs) and the web bench (tests/perf). Takes
// playwright-core's `chromium` from the caller, whose node_modules hold it.
import { spawn } from 'node:child_process';

// Flags for Debian's Chromium headless: WebGPU (SwiftShader here), and
// nothing that talks to the network on its own.
const FLAGS = ['--no-sandbox', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--enable-unsafe-webgpu'];

export async function serveAndLaunch(chromium, site, port, extraFlags = []) {
  const origin = `http://127.0.0.1:${port}`;
  const server = spawn('python3', ['-m', 'http.server', String(port), '--bind', '127.0.0.1', '--directory', site], { stdio: 'ignore' });
  for (let i = 0; i < 100; i++) {
    try { if ((await fetch(origin)).ok) break; } catch { await new Promise((r) => setTimeout(r, 100)); }
  }
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: [...FLAGS, ...extraFlags] });
  return {
    origin,
    browser,
    async stop() {
      await browser.close();
      server.kill();
    },
  };
}
