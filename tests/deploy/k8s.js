// Shared by the deploy tests: the kustomizations under deploy/kubernetes/,
// rendering them, and validating objects against the Kubernetes schemas of
// the npm package kubernetes-models (offline).
'use strict';

const fs = require('fs');
const path = require('path');

const SOURCE_DIR = path.resolve(__dirname, '../..');
const K8S_DIR = path.join(SOURCE_DIR, 'deploy/kubernetes');
const {render} = require(path.join(K8S_DIR, 'render.js'));

// Every kustomization users may deploy, and the base the first three
// overlays share.
const KUSTOMIZATIONS = ['base', 'overlays/dual-stack', 'overlays/ipv6-only',
                        'overlays/host', 'overlays/ha'];

function renderKustomization(name) {
  return render(path.join(K8S_DIR, name));
}

// Every directory under deploy/kubernetes/ holding a kustomization.yaml
// (relative, sorted), the parts (common, overlays/ha/postgres) included.
function allKustomizations() {
  const out = [];
  const walk = (rel) => {
    const dir = path.join(K8S_DIR, rel);
    for (const e of fs.readdirSync(dir, {withFileTypes: true})) {
      if (e.isFile() && e.name === 'kustomization.yaml') out.push(rel);
      if (e.isDirectory() && e.name !== 'node_modules') {
        walk(rel ? `${rel}/${e.name}` : e.name);
      }
    }
  };
  walk('');
  return out.sort();
}

function find(objects, kind, name) {
  const found = objects.filter(
      (o) => o.kind === kind && o.metadata.name === name);
  if (found.length !== 1) {
    throw new Error(`expected one ${kind} ${name}, found ${found.length}`);
  }
  return found[0];
}

// The kubernetes-models module of an object's apiVersion and kind, e.g.
// kubernetes-models/apps/v1/StatefulSet, or null when it has none.
function modelFile(obj) {
  const slash = obj.apiVersion.indexOf('/');
  const group = slash < 0 ? '' : obj.apiVersion.slice(0, slash);
  const version = obj.apiVersion.slice(slash + 1);
  try {
    return require.resolve(
        `kubernetes-models/${group ? group + '/' : ''}${version}/${obj.kind}`);
  } catch (e) {
    return null;
  }
}

// Wraps `value` (deeply) in proxies that record which keys a validator reads.
// The schema validators of kubernetes-models read every property their
// schema defines and enumerate the keys of free-form maps (labels, data), so
// a key that was neither read nor enumerated is unknown to the schema — a
// typo the API server would reject (kubectl validates strictly) but the
// schema alone would let through.
function track(value, at, records) {
  if (typeof value !== 'object' || value === null) return value;
  const record = {at, keys: Object.keys(value), read: new Set(),
                  enumerated: false};
  records.push(record);
  const copy = Array.isArray(value) ? [] : {};
  for (const key of Object.keys(value)) {
    copy[key] = track(value[key], `${at}/${key}`, records);
  }
  return new Proxy(copy, {
    get(target, key, receiver) {
      if (typeof key === 'string') record.read.add(key);
      return Reflect.get(target, key, receiver);
    },
    has(target, key) {
      if (typeof key === 'string') record.read.add(key);
      return Reflect.has(target, key);
    },
    ownKeys(target) {
      record.enumerated = true;
      return Reflect.ownKeys(target);
    },
  });
}

// Problems of `obj` against its Kubernetes schema: schema violations and
// fields the schema does not define. Empty when valid.
function validate(obj) {
  const file = modelFile(obj);
  if (file === null) {
    return [`kubernetes-models has no schema for ${obj.apiVersion} ` +
            `${obj.kind}`];
  }
  const Model = require(file)[obj.kind];
  const problems = [];
  try {
    new Model(obj).validate();
  } catch (e) {
    problems.push(e.message);
  }
  // The model's generated validator, called on tracked data.
  const schema = /_schemas\/(\w+)\.js/.exec(fs.readFileSync(file, 'utf8'));
  if (schema === null) return [...problems, `no schema named in ${file}`];
  const schemaFile = path.join(path.dirname(file),
                               obj.apiVersion.includes('/') ? '../..' : '..',
                               '_schemas', `${schema[1]}.js`);
  const records = [];
  require(schemaFile).validate(track(obj, '', records));
  for (const r of records) {
    if (r.enumerated) continue;
    for (const key of r.keys) {
      if (!r.read.has(key)) problems.push(`unknown field ${r.at}/${key}`);
    }
  }
  return problems;
}

// The project's version (CMakeLists.txt), which image tags follow.
function projectVersion() {
  const text = fs.readFileSync(path.join(SOURCE_DIR, 'CMakeLists.txt'),
                               'utf8');
  return /project\(varan VERSION ([0-9.]+)/.exec(text)[1];
}

module.exports = {SOURCE_DIR, K8S_DIR, KUSTOMIZATIONS, allKustomizations,
                  renderKustomization, find, validate, projectVersion};
