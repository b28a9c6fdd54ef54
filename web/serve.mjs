// Serves web/dist/ (or --dir DIR) on 127.0.0.1 (--host, --port; default 8080). Any static web
// server works as well: the site needs no special headers (no COOP/COEP: it uses no
// SharedArrayBuffer). This one only makes sure `.wasm` and `.mjs` get the right MIME types.
//
//   node web/serve.mjs [--port 8080] [--host 127.0.0.1] [--dir web/dist]

import { createServer } from 'node:http';
import { createReadStream, statSync } from 'node:fs';
import { extname, join, normalize, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.wasm': 'application/wasm',
  '.gguf': 'application/octet-stream',
  '.png': 'image/png',
  '.svg': 'image/svg+xml',
};

/** Starts a static server for `dir`; resolves to {server, url}. Port 0 picks a free one. */
export function serve(dir, { host = '127.0.0.1', port = 0, log = false } = {}) {
  const root = resolve(dir);
  const server = createServer((req, res) => {
    let path = decodeURIComponent(new URL(req.url, 'http://x').pathname);
    if (path.endsWith('/')) path += 'index.html';
    const file = normalize(join(root, path));
    if (file !== root && !file.startsWith(root + sep)) {
      res.writeHead(403).end();
      return;
    }
    let st;
    try {
      st = statSync(file);
    } catch {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
      return;
    }
    if (st.isDirectory()) {
      res.writeHead(301, { location: path + '/' }).end();
      return;
    }
    if (log) console.error(`${req.method} ${path}`);
    res.writeHead(200, {
      'content-type': TYPES[extname(file)] || 'application/octet-stream',
      'content-length': st.size,
      'cache-control': 'no-cache',
    });
    createReadStream(file).pipe(res);
  });
  return new Promise((ok, fail) => {
    server.once('error', fail);
    server.listen(port, host, () => {
      const a = server.address();
      ok({ server, url: `http://${host}:${a.port}/` });
    });
  });
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const arg = (name, dflt) => {
    const i = process.argv.indexOf(name);
    return i > 0 ? process.argv[i + 1] : dflt;
  };
  const here = fileURLToPath(new URL('.', import.meta.url));
  const dir = arg('--dir', join(here, 'dist'));
  try {
    statSync(join(dir, 'index.html'));
  } catch {
    console.error(`${dir}/index.html is missing: run web/build.sh first`);
    process.exit(1);
  }
  const { url } = await serve(dir, { host: arg('--host', '127.0.0.1'), port: Number(arg('--port', 8080)), log: true });
  console.log(`serving ${dir} at ${url}`);
}
