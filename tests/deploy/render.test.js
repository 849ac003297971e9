// deploy/kubernetes/render.js, the offline stand-in for `kustomize build`:
// each kustomize feature it supports behaves as kustomize's does, and what it
// does not support is refused by name rather than ignored.
'use strict';

const assert = require('node:assert/strict');
const fs = require('fs');
const os = require('os');
const path = require('path');
const {after, test} = require('node:test');
const {K8S_DIR} = require('./k8s.js');
const {render, toYaml, RenderError} = require(path.join(K8S_DIR, 'render.js'));
const YAML = require('yaml');

const dirs = [];
after(() => dirs.forEach((d) => fs.rmSync(d, {recursive: true, force: true})));

// Writes `files` ({relative path: content}) under a fresh directory.
function tree(files) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'varan-render-'));
  dirs.push(dir);
  for (const [name, content] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, name)), {recursive: true});
    fs.writeFileSync(path.join(dir, name), content);
  }
  return dir;
}

const CM = (name, extra = '') => `apiVersion: v1
kind: ConfigMap
metadata:
  name: ${name}
  namespace: ns
data:
  a: "1"
${extra}`;

const KUST = (body) =>
  `apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n${body}`;

function renderError(dir) {
  try {
    render(dir);
  } catch (e) {
    assert.ok(e instanceof RenderError, e.stack);
    return e.message;
  }
  assert.fail('rendered without error');
}

test('resources: files with several documents and nested kustomizations',
     () => {
       const dir = tree({
         'base/kustomization.yaml': KUST('resources:\n  - cms.yaml\n'),
         'base/cms.yaml': `${CM('one')}---\n${CM('two')}---\n`,
         'overlay/kustomization.yaml':
             KUST('resources:\n  - ../base\n  - extra.yaml\n'),
         'overlay/extra.yaml': CM('three'),
       });
       const names = render(path.join(dir, 'overlay'))
                         .map((o) => o.metadata.name);
       assert.deepEqual(names, ['one', 'three', 'two']);
     });

test('output is in kustomize\'s legacy order (as kubectl kustomize v5.5.0 sorts it)',
     () => {
  const obj = (kind, name, apiVersion = 'v1') =>
    `apiVersion: ${apiVersion}\nkind: ${kind}\nmetadata:\n  name: ${name}\n`;
  const dir = tree({
    'kustomization.yaml': KUST('resources:\n  - all.yaml\n'),
    'all.yaml': [
      obj('NetworkPolicy', 'np', 'networking.k8s.io/v1'),
      obj('DaemonSet', 'ds', 'apps/v1'),
      obj('PodDisruptionBudget', 'pdb', 'policy/v1'),
      obj('StatefulSet', 'sts', 'apps/v1'),
      obj('Service', 'svc'),
      obj('ConfigMap', 'b'),
      obj('ConfigMap', 'a'),
      obj('ServiceAccount', 'sa'),
      obj('ValidatingWebhookConfiguration', 'vwc',
          'admissionregistration.k8s.io/v1'),
      obj('Namespace', 'ns'),
      obj('Pod', 'pod'),
      obj('Job', 'job', 'batch/v1'),
    ].join('---\n'),
  });
  assert.deepEqual(render(dir).map((o) => `${o.kind}/${o.metadata.name}`), [
    'Namespace/ns', 'ServiceAccount/sa', 'ConfigMap/a', 'ConfigMap/b',
    'Service/svc', 'StatefulSet/sts', 'PodDisruptionBudget/pdb',
    // Other kinds by "group_version_kind", the core group as "~G" (last).
    'DaemonSet/ds', 'Job/job', 'NetworkPolicy/np', 'Pod/pod',
    'ValidatingWebhookConfiguration/vwc',
  ]);
});

test('YAML 1.1 as Kubernetes reads it: 0440 is octal', () => {
  const dir = tree({
    'kustomization.yaml': KUST('resources:\n  - cm.yaml\n'),
    'cm.yaml': 'apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\n' +
               'mode: 0440\n',
  });
  assert.equal(render(dir)[0].mode, 0o440);
});

test('JSON 6902 patches: add, replace, remove, test, escaped pointers', () => {
  const dir = tree({
    'kustomization.yaml': KUST(`resources:
  - cm.yaml
patches:
  - target:
      kind: ConfigMap
      name: one
    patch: |-
      - op: test
        path: /data/a
        value: "1"
      - op: replace
        path: /data/a
        value: "2"
      - op: add
        path: /metadata/labels
        value: {"example.com/x": "y"}
      - op: replace
        path: /metadata/labels/example.com~1x
        value: z
      - op: add
        path: /list/1
        value: inserted
      - op: add
        path: /list/-
        value: last
      - op: remove
        path: /list/0
  - target:
      kind: ConfigMap
      name: two
    path: two.yaml
`),
    'cm.yaml': `${CM('one', 'list: [first, second]\n')}---\n${CM('two')}`,
    'two.yaml': '- op: remove\n  path: /data\n',
  });
  const [one, two] = render(dir);
  assert.equal(one.data.a, '2');
  assert.deepEqual(one.metadata.labels, {'example.com/x': 'z'});
  assert.deepEqual(one.list, ['inserted', 'second', 'last']);
  assert.equal(two.data, undefined);
});

test('a patch applies to every resource its target selects', () => {
  const dir = tree({
    'kustomization.yaml': KUST(`resources:
  - cm.yaml
patches:
  - target:
      kind: ConfigMap
    patch: |-
      - op: add
        path: /data/b
        value: "2"
`),
    'cm.yaml': `${CM('one')}---\n${CM('two')}`,
  });
  assert.deepEqual(render(dir).map((o) => o.data.b), ['2', '2']);
});

test('errors name the problem', () => {
  const cases = [
    [{'kustomization.yaml': KUST('resources:\n  - cm.yaml\nnamespace: x\n'),
      'cm.yaml': CM('one')},
     /unsupported field "namespace"/],
    [{'kustomization.yaml': KUST('resources:\n  - missing.yaml\n')},
     /cannot read .*missing\.yaml/],
    [{'kustomization.yaml': KUST('resources:\n  - a.yaml\n  - b.yaml\n'),
      'a.yaml': CM('one'), 'b.yaml': CM('one')},
     /ConfigMap\/ns\/one is defined twice/],
    [{'kustomization.yaml': KUST('resources:\n  - cm.yaml\npatches:\n' +
                                 '  - target: {kind: ConfigMap, name: nope}\n' +
                                 '    patch: "[]"\n'),
      'cm.yaml': CM('one')},
     /matches no resource/],
    [{'kustomization.yaml': KUST('resources:\n  - cm.yaml\npatches:\n' +
                                 '  - target: {kind: ConfigMap}\n' +
                                 '    patch: "metadata: {name: x}"\n'),
      'cm.yaml': CM('one')},
     /strategic merge patches are not supported/],
    [{'kustomization.yaml': KUST('resources:\n  - cm.yaml\npatches:\n' +
                                 '  - patch: "[]"\n'),
      'cm.yaml': CM('one')},
     /needs a target/],
    [{'kustomization.yaml': KUST('resources:\n  - cm.yaml\npatches:\n' +
                                 '  - target: {kind: ConfigMap}\n' +
                                 '    patch: "[{op: replace, path: /data/zz,' +
                                 ' value: 1}]"\n'),
      'cm.yaml': CM('one')},
     /replace \/data\/zz: nothing there to replace/],
    [{'kustomization.yaml': KUST('resources:\n  - cm.yaml\npatches:\n' +
                                 '  - target: {kind: ConfigMap}\n' +
                                 '    patch: "[{op: test, path: /data/a,' +
                                 ' value: \'2\'}]"\n'),
      'cm.yaml': CM('one')},
     /test \/data\/a: test failed/],
    [{'kustomization.yaml': KUST('resources:\n  - cm.yaml\npatches:\n' +
                                 '  - target: {kind: ConfigMap}\n' +
                                 '    patch: "[{op: move, from: /a,' +
                                 ' path: /b}]"\n'),
      'cm.yaml': CM('one')},
     /unsupported operation "move"/],
    [{'kustomization.yaml': KUST('resources:\n  - cm.yaml\n'),
      'cm.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n'},
     /has no metadata.name/],
    [{'a/kustomization.yaml': KUST('resources:\n  - ../b\n'),
      'b/kustomization.yaml': KUST('resources:\n  - ../a\n'),
      'kustomization.yaml': KUST('resources:\n  - a\n')},
     /cycle/],
    [{'kustomization.yaml': KUST('resources:\n  - cm.yaml\n'),
      'cm.yaml': 'a: b\na: c\n'},
     /unique/],
  ];
  for (const [files, expected] of cases) {
    assert.match(renderError(tree(files)), expected);
  }
});

test('the YAML output parses back to the same objects', () => {
  const objects = render(path.join(K8S_DIR, 'overlays/host'));
  const back = YAML.parseAllDocuments(toYaml(objects)).map((d) => d.toJS());
  assert.deepEqual(back, objects);
});
