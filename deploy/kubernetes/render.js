#!/usr/bin/env node
// Renders a kustomization directory the way `kustomize build` does, for
// exactly the kustomize features Varan's manifests use, so the manifests can
// be rendered and tested offline where no kubectl/kustomize binary exists
// (Debian has none). With kubectl, `kubectl kustomize DIR` gives the same
// objects (and `kubectl apply -k DIR` applies them).
//
// Supported in kustomization.yaml (anything else is refused by name, never
// ignored):
//   apiVersion: kustomize.config.k8s.io/v1beta1, kind: Kustomization
//   resources: files (one or more YAML documents) and directories holding a
//              kustomization.yaml (rendered recursively), in order
//   patches:   JSON 6902 patches (`op` add, replace, remove, test), inline
//              (`patch: |-`) or from a file (`path:`), each with a `target`
//              selecting by kind and name (and optionally group, version,
//              namespace). A patch whose target matches nothing is an error
//              (kustomize ignores it silently, which hides typos).
// Output: the objects in kustomize's default ("legacy") order: Namespace,
// ServiceAccount, ConfigMap, Service, ... StatefulSet, PodDisruptionBudget
// first (ORDER_FIRST below), webhook configurations last, every other kind
// in between by group, version and kind; then by namespace and name.
//
// Usage: node render.js [--json] DIR    (YAML documents, or a JSON array)
// Needs the npm package `yaml` (package.json beside this file: npm ci).
'use strict';

const fs = require('fs');
const path = require('path');
const YAML = require('yaml');

// kustomize's legacy order (api/resource/ordering: orderFirst, orderLast).
const ORDER_FIRST = [
  'Namespace', 'ResourceQuota', 'StorageClass', 'CustomResourceDefinition',
  'ServiceAccount', 'PodSecurityPolicy', 'Role', 'ClusterRole', 'RoleBinding',
  'ClusterRoleBinding', 'ConfigMap', 'Secret', 'Endpoints', 'Service',
  'LimitRange', 'PriorityClass', 'PersistentVolume', 'PersistentVolumeClaim',
  'Deployment', 'StatefulSet', 'CronJob', 'PodDisruptionBudget',
];
const ORDER_LAST = ['MutatingWebhookConfiguration',
                    'ValidatingWebhookConfiguration'];

const KUSTOMIZATION_KEYS = new Set(['apiVersion', 'kind', 'resources',
                                    'patches']);
const PATCH_KEYS = new Set(['patch', 'path', 'target']);
const TARGET_KEYS = new Set(['kind', 'name', 'group', 'version',
                             'namespace']);

class RenderError extends Error {}

function fail(where, message) {
  throw new RenderError(`${where}: ${message}`);
}

function parseDocuments(text, where) {
  // YAML 1.1, as Kubernetes and kustomize read it (0440 is octal).
  const docs = YAML.parseAllDocuments(text, {version: '1.1'});
  const out = [];
  for (const doc of docs) {
    if (doc.errors.length > 0) fail(where, doc.errors[0].message);
    const value = doc.toJS();
    if (value === null || value === undefined) continue;  // empty document
    out.push(value);
  }
  return out;
}

function splitApiVersion(apiVersion) {
  const slash = apiVersion.indexOf('/');
  return slash < 0 ? {group: '', version: apiVersion}
                   : {group: apiVersion.slice(0, slash),
                      version: apiVersion.slice(slash + 1)};
}

function resourceId(obj) {
  const md = obj.metadata || {};
  return `${obj.kind}/${md.namespace || ''}/${md.name}`;
}

function checkObject(obj, where) {
  if (typeof obj !== 'object' || Array.isArray(obj)) {
    fail(where, 'a resource must be a mapping');
  }
  for (const key of ['apiVersion', 'kind']) {
    if (typeof obj[key] !== 'string' || obj[key] === '') {
      fail(where, `a resource has no ${key}`);
    }
  }
  if (!obj.metadata || typeof obj.metadata.name !== 'string' ||
      obj.metadata.name === '') {
    fail(where, `a ${obj.kind} has no metadata.name`);
  }
}

// JSON pointer (RFC 6901) into tokens.
function pointerTokens(pointer, where) {
  if (pointer === '') return [];
  if (!pointer.startsWith('/')) fail(where, `bad JSON pointer "${pointer}"`);
  return pointer.slice(1).split('/').map(
      (t) => t.replace(/~1/g, '/').replace(/~0/g, '~'));
}

function arrayIndex(token, length, allowEnd, where) {
  if (allowEnd && token === '-') return length;
  if (!/^(0|[1-9][0-9]*)$/.test(token)) {
    fail(where, `"${token}" is not an array index`);
  }
  const i = Number(token);
  if (i > length || (!allowEnd && i === length)) {
    fail(where, `array index ${i} is out of range`);
  }
  return i;
}

// Applies one RFC 6902 operation to `doc` in place.
function applyOperation(doc, op, where) {
  if (typeof op !== 'object' || op === null || typeof op.op !== 'string' ||
      typeof op.path !== 'string') {
    fail(where, 'each operation needs "op" and "path"');
  }
  where = `${where}: ${op.op} ${op.path}`;
  const tokens = pointerTokens(op.path, where);
  if (tokens.length === 0) fail(where, 'the whole document cannot be patched');
  let parent = doc;
  for (const token of tokens.slice(0, -1)) {
    if (Array.isArray(parent)) {
      parent = parent[arrayIndex(token, parent.length, false, where)];
    } else if (typeof parent === 'object' && parent !== null &&
               Object.prototype.hasOwnProperty.call(parent, token)) {
      parent = parent[token];
    } else {
      fail(where, `no "${token}" on the way`);
    }
    if (typeof parent !== 'object' || parent === null) {
      fail(where, `"${token}" is not a mapping or a list`);
    }
  }
  const last = tokens[tokens.length - 1];
  const isArray = Array.isArray(parent);
  const exists = isArray
      ? /^(0|[1-9][0-9]*)$/.test(last) && Number(last) < parent.length
      : Object.prototype.hasOwnProperty.call(parent, last);
  switch (op.op) {
    case 'add':
      if (!('value' in op)) fail(where, 'needs a value');
      if (isArray) {
        parent.splice(arrayIndex(last, parent.length, true, where), 0,
                      op.value);
      } else {
        parent[last] = op.value;
      }
      break;
    case 'replace':
      if (!('value' in op)) fail(where, 'needs a value');
      if (!exists) fail(where, 'nothing there to replace');
      parent[isArray ? Number(last) : last] = op.value;
      break;
    case 'remove':
      if (!exists) fail(where, 'nothing there to remove');
      if (isArray) {
        parent.splice(Number(last), 1);
      } else {
        delete parent[last];
      }
      break;
    case 'test':
      if (!exists ||
          JSON.stringify(parent[isArray ? Number(last) : last]) !==
              JSON.stringify(op.value)) {
        fail(where, 'test failed');
      }
      break;
    default:
      fail(where, `unsupported operation "${op.op}" (add, replace, remove, ` +
                      'test are supported)');
  }
}

function matchesTarget(obj, target) {
  const {group, version} = splitApiVersion(obj.apiVersion);
  const md = obj.metadata;
  return (target.kind === undefined || target.kind === obj.kind) &&
         (target.name === undefined || target.name === md.name) &&
         (target.group === undefined || target.group === group) &&
         (target.version === undefined || target.version === version) &&
         (target.namespace === undefined ||
          target.namespace === (md.namespace || ''));
}

function applyPatch(objects, entry, dir, where) {
  if (typeof entry !== 'object' || entry === null) {
    fail(where, 'a patch must be a mapping');
  }
  for (const key of Object.keys(entry)) {
    if (!PATCH_KEYS.has(key)) fail(where, `unsupported patch field "${key}"`);
  }
  if (!entry.target || typeof entry.target !== 'object') {
    fail(where, 'a patch needs a target (only JSON 6902 patches are ' +
                    'supported)');
  }
  for (const key of Object.keys(entry.target)) {
    if (!TARGET_KEYS.has(key)) {
      fail(where, `unsupported target field "${key}"`);
    }
  }
  if (('patch' in entry) === ('path' in entry)) {
    fail(where, 'a patch needs exactly one of "patch" and "path"');
  }
  let text = entry.patch;
  if ('path' in entry) {
    where = `${where} (${entry.path})`;
    text = readFile(path.join(dir, entry.path), where);
  }
  const ops = YAML.parse(text);
  if (!Array.isArray(ops)) {
    fail(where, 'the patch is not a list of JSON 6902 operations ' +
                    '(strategic merge patches are not supported)');
  }
  const matched = objects.filter((o) => matchesTarget(o, entry.target));
  if (matched.length === 0) {
    fail(where, `the target ${JSON.stringify(entry.target)} matches ` +
                    'no resource');
  }
  for (const obj of matched) {
    for (const op of ops) applyOperation(obj, op, `${where}: ${obj.kind} ` +
                                                      obj.metadata.name);
  }
}

function readFile(file, where) {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (e) {
    fail(where, `cannot read ${file}: ${e.message}`);
  }
}

function kustomizationFile(dir) {
  for (const name of ['kustomization.yaml', 'kustomization.yml',
                      'Kustomization']) {
    const file = path.join(dir, name);
    if (fs.existsSync(file)) return file;
  }
  return null;
}

// Renders the kustomization in `dir`; `stack` guards against cycles.
function renderDir(dir, stack = []) {
  dir = path.resolve(dir);
  if (stack.includes(dir)) fail(dir, 'resources form a cycle');
  const file = kustomizationFile(dir);
  if (file === null) fail(dir, 'no kustomization.yaml');
  const docs = parseDocuments(readFile(file, file), file);
  if (docs.length !== 1 || typeof docs[0] !== 'object') {
    fail(file, 'expected one mapping');
  }
  const k = docs[0];
  for (const key of Object.keys(k)) {
    if (!KUSTOMIZATION_KEYS.has(key)) {
      fail(file, `unsupported field "${key}" (this renderer supports ` +
                     `${[...KUSTOMIZATION_KEYS].join(', ')})`);
    }
  }
  if (k.kind !== undefined && k.kind !== 'Kustomization') {
    fail(file, `kind must be Kustomization, not ${k.kind}`);
  }
  const objects = [];
  const seen = new Map();
  for (const entry of k.resources || []) {
    if (typeof entry !== 'string') fail(file, 'resources are paths');
    const target = path.resolve(dir, entry);
    const where = `${file}: resource ${entry}`;
    let found;
    if (fs.existsSync(target) && fs.statSync(target).isDirectory()) {
      found = renderDir(target, [...stack, dir]);
    } else {
      found = parseDocuments(readFile(target, where), target);
      found.forEach((o) => checkObject(o, target));
    }
    for (const obj of found) {
      const id = resourceId(obj);
      if (seen.has(id)) {
        fail(where, `${id} is defined twice (also in ${seen.get(id)})`);
      }
      seen.set(id, entry);
      objects.push(obj);
    }
  }
  (k.patches || []).forEach(
      (entry, i) => applyPatch(objects, entry, dir, `${file}: patches[${i}]`));
  return objects;
}

// kustomize's Gvk.IsLessThan: kinds in ORDER_FIRST, then every other kind,
// then ORDER_LAST; within a tier by "group_version_kind" ("~G" for the core
// group); then by namespace and name.
function sortKey(o) {
  const first = ORDER_FIRST.indexOf(o.kind);
  const last = ORDER_LAST.indexOf(o.kind);
  const rank = first >= 0 ? first - ORDER_FIRST.length : last >= 0 ? last + 1 : 0;
  const {group, version} = splitApiVersion(o.apiVersion);
  return [rank, `${group || '~G'}_${version || '~V'}_${o.kind}`,
          o.metadata.namespace || '', o.metadata.name];
}

function sortObjects(objects) {
  return [...objects].sort((a, b) => {
    const ka = sortKey(a);
    const kb = sortKey(b);
    for (let i = 0; i < ka.length; ++i) {
      if (ka[i] < kb[i]) return -1;
      if (ka[i] > kb[i]) return 1;
    }
    return 0;
  });
}

// The rendered objects of the kustomization in `dir`, in kustomize's order.
function render(dir) {
  return sortObjects(renderDir(dir));
}

function toYaml(objects) {
  return objects.map((o) => YAML.stringify(o, {lineWidth: 0})).join('---\n');
}

module.exports = {render, toYaml, RenderError};

if (require.main === module) {
  const args = process.argv.slice(2);
  const json = args[0] === '--json';
  if (json) args.shift();
  if (args.length !== 1) {
    process.stderr.write('usage: node render.js [--json] KUSTOMIZATION_DIR\n');
    process.exit(2);
  }
  try {
    const objects = render(args[0]);
    process.stdout.write(json ? JSON.stringify(objects, null, 2) + '\n'
                              : toYaml(objects));
  } catch (e) {
    if (!(e instanceof RenderError)) throw e;
    process.stderr.write(`render.js: error: ${e.message}\n`);
    process.exit(1);
  }
}
