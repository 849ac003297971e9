// Where kubectl is installed (it is not a Debian package; CMake registers
// this test only when it finds one), render.js must produce exactly what
// `kubectl kustomize` (kustomize itself) produces for every kustomization
// under deploy/kubernetes/ (the overlays, the base, and the parts they
// include): the same objects, in the same order.
'use strict';

const assert = require('node:assert/strict');
const {execFileSync} = require('child_process');
const path = require('path');
const {test} = require('node:test');
const YAML = require('yaml');
const {K8S_DIR, allKustomizations, renderKustomization} = require('./k8s.js');

const KUBECTL = process.env.VARAN_KUBECTL;

for (const k of allKustomizations()) {
  test(`${k}: render.js and kubectl kustomize agree`, () => {
    assert.ok(KUBECTL, 'VARAN_KUBECTL is set');
    const out = execFileSync(KUBECTL, ['kustomize', path.join(K8S_DIR, k)],
                             {encoding: 'utf8'});
    const theirs = YAML.parseAllDocuments(out, {version: '1.1'})
                       .map((d) => d.toJS());
    assert.deepEqual(renderKustomization(k), theirs);
  });
}
