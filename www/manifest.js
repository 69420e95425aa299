// The site's model list, models/manifest.json, read strictly: a host's
// mistake there gets a message that names the field, not a TypeError.
// Pure, so tests/e2e/manifest.test.mjs runs (and fuzzes) it in Node.
import { streamToBlob } from './progress.js';

const FILE = 'models/manifest.json';
const OPTIONAL = ['config.json', 'preprocessor_config.json'];
/** The weights files a site may serve, the first listed taken. */
const WEIGHTS = ['model.safetensors', 'pytorch_model.bin'];

/** A relative folder inside models/: no scheme, no leading slash, no `..`. */
function safeFolder(path) {
  return typeof path === 'string' && path.length > 0 && path.length <= 256
    && !/^[a-z][a-z0-9+.-]*:/i.test(path) && !path.startsWith('/') && !path.startsWith('\\')
    && !path.split(/[/\\]/).includes('..');
}

/**
 * Parses the manifest's text: `{default, models: [{name, path, files?}]}`.
 * Returns `{ default, models }` with each path ending in `/` and its
 * `weights` file named; throws an Error saying what is wrong otherwise.
 */
export function parseManifest(text) {
  const fail = (why) => { throw new Error(`${FILE}: ${why}`); };
  let json;
  try {
    json = JSON.parse(text);
  } catch (e) {
    fail(`not valid JSON (${e.message})`);
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) fail('must be an object');
  if (!Array.isArray(json.models)) fail('`models` must be a list');
  if (json.models.length > 1000) fail(`\`models\` lists ${json.models.length} entries, more than 1000`);
  const models = json.models.map((m, i) => {
    if (m === null || typeof m !== 'object' || Array.isArray(m)) fail(`models[${i}] must be an object`);
    if (typeof m.name !== 'string' || !m.name || m.name.length > 200) fail(`models[${i}].name must be a non-empty string`);
    if (!safeFolder(m.path)) fail(`models[${i}].path must be a folder inside models/, found ${JSON.stringify(m.path)?.slice(0, 80)}`);
    let files;
    let weights = WEIGHTS[0];
    if (m.files !== undefined) {
      if (!Array.isArray(m.files) || !m.files.every((f) => typeof f === 'string')) fail(`models[${i}].files must be a list of file names`);
      weights = m.files.find((f) => WEIGHTS.includes(f));
      if (!weights) fail(`models[${i}].files must include ${WEIGHTS.join(' or ')}`);
      files = m.files.filter((f) => f === weights || OPTIONAL.includes(f));
    }
    return { name: m.name, path: m.path.endsWith('/') ? m.path : `${m.path}/`, files, weights };
  });
  if (json.default !== undefined && json.default !== null) {
    if (typeof json.default !== 'string') fail('`default` must be a model name');
    if (!models.some((m) => m.name === json.default)) fail(`\`default\` names “${json.default.slice(0, 80)}”, which \`models\` does not list`);
  }
  return { default: json.default ?? null, models };
}

/**
 * Fetches a manifest entry's checkpoint files from models/: the weights
 * (model.safetensors, or pytorch_model.bin where the entry lists that),
 * and config.json and preprocessor_config.json where the entry lists them
 * (or, for an entry without `files`, where the server has them).
 * `onProgress(done, total)` hears the weights' bytes as they arrive.
 */
export async function fetchModelFiles(entry, fetchFn = fetch, onProgress = null) {
  // The weights as a Blob: posted to the worker by reference, where an
  // ArrayBuffer of a big checkpoint would be copied (and one of 1.3 GB
  // fails to clone). Read with progress or without, the browser keeps its
  // bytes, not the page's script.
  const url = (file) => `models/${entry.path}${file}`;
  /** @returns {Promise<ArrayBuffer | undefined>} a file the entry may lack */
  const optional = async (file) => {
    if (entry.files && !entry.files.includes(file)) return undefined;
    const r = await fetchFn(url(file));
    return r.ok ? r.arrayBuffer() : undefined;
  };
  const name = entry.weights ?? WEIGHTS[0];
  // All asked for at once, the weights first: the small files do not wait for them.
  const response = fetchFn(url(name));
  const config = optional('config.json');
  const preprocessor = optional('preprocessor_config.json');
  config.catch(() => {}); // awaited below, after the weights
  preprocessor.catch(() => {});
  const r = await response;
  if (!r.ok) throw new Error(`models/${entry.path}${name}: HTTP ${r.status}`);
  /** @type {Blob} */
  const weights = await (onProgress && r.body
    ? streamToBlob(r.body, Number(r.headers.get('content-length')) || 0, onProgress)
    : r.blob());
  return { name, weights, config: await config, preprocessor: await preprocessor };
}

/**
 * The site's model's files: the one `asked` names (`?model=`; one of the
 * Hub's, `hf:…`, is not the site's) or the manifest's default. Its name,
 * whether it is the default, and its files; `name` null when the site has
 * none. Fetched as soon as the page starts, beside the worker's start.
 * @param {string | null} asked
 * @param {(done: number, total: number) => void} [onProgress]
 */
export async function fetchSiteModel(asked, onProgress) {
  const listing = await fetch(FILE);
  if (!listing.ok) throw new Error(`${FILE}: HTTP ${listing.status}`);
  const manifest = parseManifest(await listing.text());
  const name = asked && !/^hf:/i.test(asked) ? asked : manifest.default;
  if (!name) return { name: null, isDefault: true, files: null };
  const entry = manifest.models.find((m) => m.name === name);
  if (!entry) {
    throw new Error(`there is no model named “${name}” in ${FILE} (it lists ${manifest.models.map((m) => m.name).join(', ') || 'none'})`);
  }
  const files = await fetchModelFiles(entry, fetch, onProgress);
  return { name, isDefault: name === manifest.default, files };
}
